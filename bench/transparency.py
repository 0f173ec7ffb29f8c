"""Benchmark: the transparency figures at a large town's scale, on a fresh SQLite file (or the
database in HUZHU_BENCH_DATABASE_URL).

    python bench/transparency.py [MEMBERS] [PAID_CLAIMS_A_MONTH] [GROUPS]
        (default 200,000 members in 50 villages, 3,000 subsidies paid in the month, 50 groups)

Times: building the month's disclosure and splitting its markdown; queueing it to every group
(publish); /统计's participation per village and claims by status; the year report; a
villager's 基金公示 and 查询余额. Zhangjiagang (600,000 members, ~6% claiming a year) pays about
3,000 subsidies a month.
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select  # noqa: E402

from core import disclosure, ledger  # noqa: E402
from core.bootstrap import ensure_demo  # noqa: E402
from core.db import Database  # noqa: E402
from core.groups import add_group  # noqa: E402
from core.models import (Claim, Enrolment, Household, Member, PayoutBatch,  # noqa: E402
                         PayoutLine, Pool, SchemeYear, Village)
from core.stats import (claims_by_status, fund_overview, household_balance,  # noqa: E402
                        participation, year_report)


def timed(label: str, fn):
    t0 = time.perf_counter()
    result = fn()
    print(f"{label:<48} {time.perf_counter() - t0:8.3f} s")
    return result


def populate(db: Database, members: int, paid: int, groups: int) -> tuple[int, str]:
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    with db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "demo"))
        year = s.scalar(select(SchemeYear).where(SchemeYear.pool_id == pool.id))
        for i in range(50 - len(pool.villages)):
            s.add(Village(pool_id=pool.id, town="示范镇", name=f"第{i + 1}村",
                          full_name=f"示范镇/第{i + 1}村"))
        s.flush()
        villages = list(s.scalars(select(Village).where(Village.pool_id == pool.id)))
        for i in range(groups):
            add_group(s, villages[i % len(villages)], f"bench-group-{i:04d}", "bench")
        pool_id, year_id, start = pool.id, year.id, year.start
    month = f"{date.today():%Y-%m}"
    hh_rows, m_rows, e_rows = [], [], []
    member_id = 0
    hh_id = 0
    while member_id < members:
        hh_id += 1
        v = villages[hh_id % len(villages)]
        hh_rows.append({"id": hh_id, "number": f"H{hh_id:08d}", "pool_id": pool_id,
                        "village_id": v.id, "status": "active", "created_at": now})
        for r in range(rng.choice((1, 2, 3, 3, 4, 5))):
            member_id += 1
            m_rows.append({"id": member_id, "household_id": hh_id, "name": f"王{member_id}明",
                           "id_number_enc": "x", "id_number_hash": f"h{member_id}",
                           "id_number_masked": "320*************00",
                           "birth_year": 1960, "relation": "head" if r == 0
                           else "child", "insurance": "resident", "created_at": now})
            if rng.random() < 0.9:
                e_rows.append({"member_id": member_id, "scheme_year_id": year_id,
                               "id_number_hash": f"h{member_id}", "status": "paid",
                               "created_at": now})
    with db.session() as s:
        for table, rows in ((Household, hh_rows), (Member, m_rows), (Enrolment, e_rows)):
            for i in range(0, len(rows), 5000):
                s.execute(insert(table), rows[i:i + 5000])
        ledger.post(s, pool_id, "contribution", "bench-income",
                    {"fund:cash": 100 * 5000 * len(e_rows) // 100,
                     "income:personal": -100 * 5000 * len(e_rows) // 100}, start)
        batch = PayoutBatch(number="B-bench", pool_id=pool_id, month=month, status="confirmed",
                            confirmed_at=now)
        s.add(batch)
        s.flush()
        codes = ["FC19", "FM19", "BR21", "GB29"]
        claims, lines = [], []
        for i in range(paid):
            m = m_rows[rng.randrange(len(m_rows))]
            claims.append({"id": i + 1, "number": f"C{90000000 + i}", "household_id":
                           m["household_id"], "member_id": m["id"], "scheme_year_id": year_id,
                           "status": "paid", "drg_code": rng.choice(codes),
                           "amount_fen": rng.randrange(30000, 5000000),
                           "out_of_pocket_fen": rng.randrange(300000, 9000000),
                           "stated": {}, "ocr": {}, "flags": {}, "reasons": [], "trace": [],
                           "created_at": now, "updated_at": now})
            lines.append({"batch_id": batch.id, "claim_id": i + 1,
                          "amount_fen": claims[-1]["amount_fen"], "card_bank": "农业银行",
                          "card_holder": "x", "card_number_enc": "x",
                          "card_number_masked": "****", "status": "paid"})
        s.execute(insert(Claim), claims)
        s.execute(insert(PayoutLine), lines)
        total = sum(c["amount_fen"] for c in claims)
        ledger.post(s, pool_id, "payout", "bench-payout", {"expense:subsidy": total,
                                                           "fund:cash": -total}, date.today())
        # rows written in bulk beside the services: the summary tables counted from them
        from core.stats import recount_all
        recount_all(s)
    return pool_id, month


def main() -> None:
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    paid = int(sys.argv[2]) if len(sys.argv) > 2 else 3_000
    groups = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    url = os.environ.get("HUZHU_BENCH_DATABASE_URL")
    tmp = tempfile.mkdtemp(prefix="huzhu-bench-")
    db = Database(url or f"sqlite:///{tmp}/bench.db")
    db.upgrade()
    ensure_demo(db)
    print(f"{members:,} members in 50 villages, {paid:,} subsidies paid this month, "
          f"{groups} group chats ({db.engine.dialect.name})")
    pool_id, month = timed("populate (not part of the figures)",
                           lambda: populate(db, members, paid, groups))
    today = date.today()
    with db.session() as s:
        data = timed("disclosure.build (month)", lambda: disclosure.build(s, pool_id, month))
        parts = timed("markdown_parts, the whole pool's list",
                      lambda: disclosure.markdown_parts(data))
    print(f"{'':<48} {len(parts)} messages of ≤ 4096 bytes")
    with db.session() as s:
        r = timed(f"publish to {groups} groups (outbox rows, paced)",
                  lambda: disclosure.publish(s, pool_id, month))
    print(f"{'':<48} {r['messages']:,} outbox rows (each group: its village's list + poster)")
    with db.session() as s:
        year = s.scalar(select(SchemeYear).where(SchemeYear.pool_id == pool_id))
        timed("/统计 participation per village", lambda: participation(s, pool_id, year.id))
        timed("/统计 claims by status", lambda: claims_by_status(s, pool_id, year.id))
        timed("year report figures", lambda: year_report(s, pool_id, year))
        timed("基金公示 (fund_overview)", lambda: fund_overview(s, pool_id, today))
        hh = s.get(Household, 1)
        timed("查询余额 (household_balance)", lambda: household_balance(s, hh, year))
    db.dispose()


if __name__ == "__main__":
    main()

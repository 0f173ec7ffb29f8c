"""Benchmark: the five chat answers at province scale, through the webhook, on PostgreSQL.

    HUZHU_BENCH_DATABASE_URL=postgresql+psycopg://… python bench/scale_answers.py \
        [--pools 3] [--members 100000] [--province-claims] [--repeats 40] [--keep]

Builds several pools in bulk (households, members, enrolments, the ledger's contribution and
payout entries, claims in every status over this scheme year and the one before: about 2,000
claims a pool a month, 100,000 a month over 50 pools), then `measure_answers` times, from a
member of the largest pool and from its pool administrator, each answer through the real path:
a signed message POSTed over loopback HTTP to `/wechat` of the web app under gunicorn (2
workers × 16 threads, the deployment of DESIGN.md), one message at a time, and the core
function alone in this process:

    5 查询余额 (household balance)      6 基金公示 (fund overview)     4 查询进度 (claim progress)
    /统计 (participation per village + claims by status)          /待审 (claims waiting for review)

`--province-claims` adds to the other pools the claims of the 50-pool province (every pool's
rows deepen the claim indexes and /待审's queue). The database named is wiped first.
Target: p99 < 200 ms each. `measure_answers(db_url, pool_id, repeats)` is also called by
bench/scale.py on the database it built; it adds one household link and one administrator
grant (openids `o_scaleq_member`, `o_scaleq_admin`) if they are missing.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402

from scale import wipe  # noqa: E402

MEMBER_OPENID, ADMIN_OPENID = "o_scaleq_member", "o_scaleq_admin"
TOKEN, APP_ID = "bench-token", "wxbench000000000"
CLAIMS_A_POOL_MONTH = 2_000  # 100,000 a month over 50 pools
VILLAGES = 50
# a claim's status by its age: decided and paid long ago, the month's still moving
OLD_MIX = (("paid", 84), ("rejected", 9), ("recovered", 1), ("payout_failed", 1),
           ("appealed", 1), ("need_documents", 1), ("collecting", 3))
NEW_MIX = (("submitted", 20), ("in_review", 10), ("need_documents", 6), ("approved", 25),
           ("in_payout", 10), ("paid", 12), ("rejected", 8), ("appealed", 2), ("collecting", 7))


def percentile(times: list[float], q: float) -> float:
    times = sorted(times)
    return times[min(len(times) - 1, int(round(q * (len(times) - 1))))]


# -- the data ------------------------------------------------------------------------------

def _pick(rng: random.Random, mix) -> str:
    r = rng.randrange(sum(w for _, w in mix))
    for status, w in mix:
        if r < w:
            return status
        r -= w
    return mix[-1][0]


def build(db, pools: int, members: int, province_claims: bool = False,
          seed: int = 7) -> int:
    """`pools` pools of `members` members each (the first one is the demo pool, the one to
    measure), two scheme years each; returns the first pool's id."""
    from core.bootstrap import ensure_demo
    from core.models import (Claim, Enrolment, Household, JournalEntry, JournalLine, Member,
                             Pool, PoolLevel, SchemeYear, Village)

    ensure_demo(db)
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with db.session() as s:
        demo = s.scalar(select(Pool).where(Pool.code == "demo"))
        year = s.scalar(select(SchemeYear).where(SchemeYear.pool_id == demo.id))
        rules, start, end = year.rules, year.start, year.end
        pool_rows = [demo]
        for p in range(1, pools):
            pool = Pool(code=f"bench{p:02d}", name=f"第{p}统筹区", level=PoolLevel.town)
            s.add(pool)
            pool_rows.append(pool)
        s.flush()
        years = {}  # pool id -> (this year id, last year id)
        for pool in pool_rows:
            if pool is not demo:
                s.add(SchemeYear(pool_id=pool.id, start=start, end=end,
                                 enrolment_opens=year.enrolment_opens,
                                 enrolment_closes=year.enrolment_closes, rules=rules))
            s.add(SchemeYear(pool_id=pool.id, start=start - timedelta(days=365),
                             end=start - timedelta(days=1),
                             enrolment_opens=year.enrolment_opens - timedelta(days=365),
                             enrolment_closes=year.enrolment_closes - timedelta(days=365),
                             rules=rules))
            for i in range(VILLAGES - len(pool.villages)):
                s.add(Village(pool_id=pool.id, town=f"{pool.code}镇", name=f"第{i + 1}村",
                              full_name=f"{pool.code}镇/第{i + 1}村"))
        s.flush()
        for pool in pool_rows:
            ys = sorted(s.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool.id)),
                        key=lambda y: y.start, reverse=True)
            years[pool.id] = (ys[0].id, ys[1].id, ys[0].start)
        villages = {pool.id: [v.id for v in s.scalars(select(Village).where(
            Village.pool_id == pool.id).order_by(Village.id))] for pool in pool_rows}
        pool_ids = [p.id for p in pool_rows]
        next_ids = {t: (s.scalar(select(func.max(t.id))) or 0) + 1
                    for t in (Household, Member, Enrolment, Claim, JournalEntry, JournalLine)}

    def chunks(table, rows):
        with db.session() as s:
            for i in range(0, len(rows), 10_000):
                s.execute(insert(table), rows[i:i + 10_000])

    hh_id, m_id, e_id = next_ids[Household], next_ids[Member], next_ids[Enrolment]
    c_id, je_id, jl_id = next_ids[Claim], next_ids[JournalEntry], next_ids[JournalLine]
    per_person = rules.get("contribution", {}).get("personal_fen", 10_000) \
        if isinstance(rules.get("contribution"), dict) else 10_000
    per_person = per_person if isinstance(per_person, int) else 10_000
    claim_pools = {pid: 1 for pid in pool_ids}
    if province_claims and pools > 1:  # the other pools carry the province's other claims
        others = pool_ids[1:]
        for k in range(50 - 1):
            claim_pools[others[k % len(others)]] += 1
        claim_pools[pool_ids[0]] = 1
    for pool_id in pool_ids:
        this_y, last_y, y_start = years[pool_id]
        hh, mm, ee, je, jl, cl = [], [], [], [], [], []

        def book(je_id: int, jl_id: int, day, kind: str, ref: str, debit: str, credit: str,
                 fen: int) -> tuple[int, int]:
            """One balanced journal entry of the pool; the next entry and line ids."""
            je.append({"id": je_id, "pool_id": pool_id, "booked_on": day, "kind": kind,
                       "memo": "", "ref": ref, "created_at": now})
            jl.extend(({"id": jl_id, "entry_id": je_id, "account": debit, "amount_fen": fen},
                       {"id": jl_id + 1, "entry_id": je_id, "account": credit,
                        "amount_fen": -fen}))
            return je_id + 1, jl_id + 2
        people = []  # (household id, member id)
        count = 0
        while count < members:
            vid = villages[pool_id][hh_id % VILLAGES]
            hh.append({"id": hh_id, "number": f"H{hh_id:08d}", "pool_id": pool_id,
                       "village_id": vid, "status": "active", "created_at": now,
                       "awaits_village": False})
            paying = {this_y: rng.random() < 0.92, last_y: rng.random() < 0.88}
            paid_persons = {this_y: 0, last_y: 0}
            for r in range(rng.choice((1, 2, 3, 3, 4, 5))):
                count += 1
                mm.append({"id": m_id, "household_id": hh_id, "name": f"王{m_id}明",
                           "id_number_enc": "x", "id_number_hash": f"h{m_id}",
                           "id_number_masked": "320*************00", "birth_year": 1960,
                           "relation": "head" if r == 0 else "child", "insurance": "resident",
                           "created_at": now})
                people.append((hh_id, m_id))
                for y in (this_y, last_y):
                    ee.append({"id": e_id, "member_id": m_id, "scheme_year_id": y,
                               "id_number_hash": f"h{m_id}",
                               "status": "paid" if paying[y] else "pending",
                               "paid_at": now if paying[y] else None, "created_at": now,
                               "newborn": False})
                    e_id += 1
                    paid_persons[y] += paying[y]
                m_id += 1
            for y, booked in ((this_y, y_start - timedelta(days=20)),
                              (last_y, y_start - timedelta(days=385))):
                if paid_persons[y]:
                    je_id, jl_id = book(je_id, jl_id, booked, "contribution",
                                        f"bench-pay-{je_id}", "fund:cash", "income:personal",
                                        per_person * paid_persons[y])
            hh_id += 1
        # claims: 15 months at 2,000 a month (× the pools this one stands for)
        n_claims = CLAIMS_A_POOL_MONTH * 15 * claim_pools[pool_id]
        for i in range(n_claims):
            h, m = people[rng.randrange(len(people))]
            age = rng.randrange(0, 450)  # days
            created = now - timedelta(days=age, minutes=rng.randrange(1440))
            y = this_y if created.date() >= y_start else last_y
            status = _pick(rng, NEW_MIX if age < 30 else OLD_MIX)
            decided = status not in ("collecting", "submitted", "in_review", "need_documents")
            amount = rng.randrange(30_000, 5_000_000) if decided and status != "rejected" \
                else None
            cl.append({"id": c_id, "number": f"C{c_id:09d}", "household_id": h, "member_id": m,
                       "scheme_year_id": y, "status": status,
                       "submitted_at": None if status == "collecting" else created,
                       "due_date": (created + timedelta(days=10)).date(),
                       "drg_code": rng.choice(("FC19", "FM19", "BR21", "GB29")),
                       "amount_fen": amount,
                       "out_of_pocket_fen": rng.randrange(300_000, 9_000_000),
                       "stated": {}, "ocr": {}, "flags": {},
                       "reasons": ["R01"] if status == "rejected" else [], "trace": [],
                       "awaits_village": False, "created_at": created, "updated_at": created})
            if status in ("paid", "recovered") and amount:
                je_id, jl_id = book(je_id, jl_id, created.date(), "payout",
                                    f"bench-payout-{c_id}", "expense:subsidy", "fund:cash",
                                    amount)
            c_id += 1
        for table, rows in ((Household, hh), (Member, mm), (Enrolment, ee), (Claim, cl),
                            (JournalEntry, je), (JournalLine, jl)):
            chunks(table, rows)
        print(f"  pool {pool_id}: {len(hh):,} households, {len(mm):,} members, "
              f"{len(cl):,} claims, {len(je):,} journal entries", flush=True)
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as c:
            for t in ("household", "member", "enrolment", "claim", "journal_entry",
                      "journal_line"):
                c.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                               f"(SELECT max(id) FROM {t}))"))
    refill_summaries(db)
    return pool_ids[0]


def refill_summaries(db) -> None:
    """Bulk rows bypass the services: fill the summary tables as the backfill migration does."""
    from core.stats import recount_all

    with db.session() as s:
        recount_all(s)


# -- the answers ---------------------------------------------------------------------------

def _ensure_users(db, pool_id: int) -> int:
    """A head of a household of the pool with claims in it, and a pool administrator."""
    from core.models import AdminGrant, AdminRole, Claim, Household, HouseholdLink, LinkRole

    with db.session() as s:
        link = s.scalar(select(HouseholdLink).where(HouseholdLink.openid == MEMBER_OPENID))
        if link is None or s.get(Household, link.household_id).pool_id != pool_id:
            if link is not None:
                s.delete(link)
            household_id = s.scalar(
                select(Claim.household_id).join(Household, Household.id == Claim.household_id)
                .where(Household.pool_id == pool_id).order_by(Claim.id.desc()).limit(1)) \
                or s.scalar(select(Household.id).where(Household.pool_id == pool_id).limit(1))
            link = HouseholdLink(household_id=household_id, openid=MEMBER_OPENID,
                                 role=LinkRole.head)
            s.add(link)
        s.flush()
        if s.scalar(select(AdminGrant.id).where(AdminGrant.openid == ADMIN_OPENID,
                                                AdminGrant.pool_id == pool_id)) is None:
            s.add(AdminGrant(openid=ADMIN_OPENID, role=AdminRole.pool_admin, pool_id=pool_id))
        return link.household_id


def _core_answers(db, pool_id: int, household_id: int):
    """{label: function of a session}: each answer's core work, as its handler calls it."""
    from core import claims, ledger, scheme_years
    from core.admins import scope_of
    from core.confirmations import waiting
    from core.models import Household
    from core.review.queue import queue
    from core.stats import claims_by_status, fund_overview, household_balance, participation

    today = date.today()

    def balance(s):
        hh = s.get(Household, household_id)
        return household_balance(s, hh, scheme_years.for_report(s, pool_id, today))

    def stats(s):
        year = scheme_years.for_report(s, pool_id, today)
        return (participation(s, pool_id, year.id), claims_by_status(s, pool_id, year.id),
                ledger.balance(s, pool_id))

    def pending(s):
        scope = scope_of(s, ADMIN_OPENID)
        return queue(s, scope, limit=10), waiting(s, scope)

    return {"5 查询余额": balance,
            "6 基金公示": lambda s: fund_overview(s, pool_id, today),
            "4 查询进度": lambda s: claims.progress(s, s.get(Household, household_id)),
            "/统计": stats, "/待审": pending}


MESSAGES = (("5 查询余额", MEMBER_OPENID, "5"), ("6 基金公示", MEMBER_OPENID, "6"),
            ("4 查询进度", MEMBER_OPENID, "4"), ("/统计", ADMIN_OPENID, "/统计"),
            ("/待审", ADMIN_OPENID, "/待审"))


def _start_web(db_url: str, data: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATABASE_URL=db_url, HUZHU_DATA_DIR=str(data), HUZHU_WECHAT_TOKEN=TOKEN,
               HUZHU_WECHAT_APP_ID=APP_ID, HUZHU_WECHAT_AES_KEY="",
               HUZHU_WECHAT_API_BASE="http://127.0.0.1:9", HUZHU_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-k",
                             "bot.web.balanced_worker.BalancedWorker", "--threads", "16", "-b", f"127.0.0.1:{port}", "--log-level",
                             "warning", "bot.web.app:create_app()"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL)


def measure_answers(db_url: str, pool_id: int, repeats: int = 40) -> float:
    """Time the five answers for a member and the administrator of `pool_id`: the core
    function alone, then the signed message through the webhook over loopback HTTP. Prints
    p50/p99 of each; returns the worst p99 (ms) of the HTTP figures."""
    from webhook import free_port, wait_up

    from bot.devtools.chat import Villager
    from core.db import Database

    db = Database(db_url)
    household_id = _ensure_users(db, pool_id)
    worst = 0.0
    print(f"pool {pool_id}, household {household_id}; {repeats} times each, one at a time; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    core = _core_answers(db, pool_id, household_id)
    core_p99 = {}
    for label, fn in core.items():
        times = []
        for i in range(repeats + 2):
            with db.session() as s:
                t0 = time.perf_counter()
                fn(s)
                if i >= 2:  # the first two warm the caches
                    times.append((time.perf_counter() - t0) * 1000)
                s.rollback()  # /待审's audit row and the like: not kept
        core_p99[label] = (statistics.median(times), percentile(times, 0.99))
    db.dispose()

    data = Path(tempfile.mkdtemp(prefix="huzhu-scaleq-"))
    port = free_port()
    web = _start_web(db_url, data, port)
    try:
        wait_up(port)
        v = Villager(f"http://127.0.0.1:{port}", TOKEN, APP_ID)
        msg_id = int(time.time() * 1000) * 1000
        for label, openid, body in MESSAGES:
            times, first = [], None
            for i in range(repeats + 2):
                msg_id += 1
                t0 = time.perf_counter()
                r = v.post(openid, v.text_xml(openid, body, msg_id=msg_id))
                ms = (time.perf_counter() - t0) * 1000
                if r.status != 200:
                    raise RuntimeError(f"{label}: HTTP {r.status}: {r.body[:200]}")
                first = first or r.reply
                if i >= 2:
                    times.append(ms)
            p50, p99 = statistics.median(times), percentile(times, 0.99)
            worst = max(worst, p99)
            c50, c99 = core_p99[label]
            print(f"{label:<10} webhook p50 {p50:7.1f} ms p99 {p99:7.1f} ms | core alone "
                  f"p50 {c50:7.1f} ms p99 {c99:7.1f} ms  {'ok' if p99 < 200 else 'OVER 200 ms'}"
                  f"  [{(first or '(no passive reply)').splitlines()[0][:40]}]", flush=True)
    finally:
        web.terminate()
        web.wait(15)
        shutil.rmtree(data, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    return worst


def sizes(db_url: str, members: int) -> None:
    """pg_database_size and the largest tables (with their indexes), per million members."""
    eng = create_engine(db_url)
    with eng.begin() as c:
        total = c.execute(text("SELECT pg_database_size(current_database())")).scalar()
        rows = c.execute(text(
            "SELECT relname, pg_total_relation_size(c.oid), pg_indexes_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' "
            "ORDER BY 2 DESC LIMIT 14")).all()
    eng.dispose()
    per = 1e6 / members / 2**20
    print(f"database {total / 2**20:,.0f} MB for {members:,} members: "
          f"{total * per:,.0f} MB per million members")
    for name, size, idx in rows:
        print(f"  {name:<22} {size / 2**20:8.1f} MB (indexes {idx / 2**20:7.1f} MB)"
              f"  {size * per:8.1f} MB per million members")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pools", type=int, default=3)
    ap.add_argument("--members", type=int, default=100_000, help="members a pool")
    ap.add_argument("--province-claims", action="store_true")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--keep", action="store_true", help="measure the database as it is")
    ap.add_argument("--build-only", action="store_true", help="build, measure nothing")
    args = ap.parse_args()
    url = os.environ.get("HUZHU_BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        print("set HUZHU_BENCH_DATABASE_URL to a PostgreSQL database (it is wiped)")
        return 2
    from core.db import Database

    if not args.keep:
        wipe(url)
        db = Database(url)
        db.upgrade()
        t0 = time.perf_counter()
        pool_id = build(db, args.pools, args.members, args.province_claims)
        with db.engine.begin() as c:
            c.execute(text("ANALYZE"))
        print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
        db.dispose()
    else:
        from core.models import Pool

        db = Database(url)
        with db.session() as s:
            pool_id = s.scalar(select(Pool.id).where(Pool.code == "demo"))
        db.dispose()
    sizes(url, args.pools * args.members)
    if args.build_only:
        return 0
    worst = measure_answers(url, pool_id, args.repeats)
    return 0 if worst < 200 else 1


if __name__ == "__main__":
    sys.exit(main())

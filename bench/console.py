"""Benchmark: the web console's claims queue and claim page with 100,000 claims and 600,000
members in the database.

    python bench/console.py [--claims 100000] [--members 600000] [--requests 200]

The data is built in bulk (Core inserts of 10,000 rows): 200,000 households of three members in
300 villages of the demo pool (some 2,000 members a village), 100,000 claims (a fifth waiting for review, the rest decided, approved,
paid or rejected), each with its three documents, an OCR read-out and, once recorded, a trace.
The real app (`bot.server.Running`, waitress, the same as `huzhu serve`) is started on a free
loopback port, a super administrator signs in with a one-time link, and the pages are fetched
over HTTP one after the other: the queue (first page, a village's filter, a later page) and the
claim page of claims picked at random from the queue. Target: p95 < 150 ms
for each. SQLite in a temporary directory unless HUZHU_BENCH_DATABASE_URL names a PostgreSQL
database (which is wiped).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select, text  # noqa: E402

TARGET_MS = 150.0
VILLAGES = 300
CHUNK = 10_000


def build(db, vault, members: int, claims: int) -> None:
    from core.bootstrap import ensure_demo
    from core.models import (Claim, ClaimDocument, ClaimStatus as S, DocumentKind, Household,
                             InsuranceType, Member, Pool, Relation, SchemeYear, Village, utcnow)

    if db.is_postgres:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    ensure_demo(db)
    now = utcnow()
    today = date.today()
    with db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "demo"))
        have = list(s.scalars(select(Village).where(Village.pool_id == pool.id)))
        for i in range(len(have), VILLAGES):  # a county's pool: some 2,000 members a village
            s.add(Village(pool_id=pool.id, town=f"第{i // 20 + 1}镇",
                          name=f"第{i + 1}村", full_name=f"第{i // 20 + 1}镇/第{i + 1}村"))
        s.flush()
        villages = [v.id for v in s.scalars(select(Village).where(Village.pool_id == pool.id))]
        year = s.scalar(select(SchemeYear).where(SchemeYear.pool_id == pool.id))
        pool_id, year_id = pool.id, year.id
    enc = vault.encrypt("320582196005171236")  # the pages never decrypt a member's ID
    households = members // 3
    surnames = "王李张刘陈杨赵黄周吴"
    given = "大山小花建国秀英志强桂兰"
    t = time.perf_counter()
    for start in range(0, households, CHUNK):
        hh, mem = [], []
        for k in range(start + 1, min(households, start + CHUNK) + 1):
            hh.append({"id": k, "number": f"H{k:08d}", "pool_id": pool_id,
                       "village_id": villages[k % len(villages)], "phone_masked": "138****0000",
                       "status": "active", "created_at": now})
            for j, rel in enumerate((Relation.head, Relation.spouse, Relation.child)):
                m = 3 * (k - 1) + j + 1
                mem.append({"id": m, "household_id": k,
                            "name": surnames[m % 10] + given[m % 12] + given[(m // 12) % 12],
                            "id_number_enc": enc, "id_number_hash": f"h{m:063d}",
                            "id_number_masked": "320*************36", "birth_year": 1960 + m % 50,
                            "relation": rel, "insurance": InsuranceType.resident,
                            "created_at": now})
        with db.session() as s:
            s.execute(insert(Household), hh)
            s.execute(insert(Member), mem)
    print(f"households and members: {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    rng = random.Random(7)
    waiting = claims // 5
    kinds = (DocumentKind.discharge_record, DocumentKind.itemized_bill,
             DocumentKind.settlement_sheet)
    ocr = {"fields": {"out_of_pocket_fen": {"value": 1200000, "confidence": 0.97},
                      "admission_date": {"value": (today - timedelta(days=20)).isoformat(),
                                         "confidence": 0.95},
                      "discharge_date": {"value": (today - timedelta(days=12)).isoformat(),
                                         "confidence": 0.93}},
           "consistent": True, "documents": {}}
    trace = [{"step": "quota", "text": "病种 FM19 定额 8,000.00 元"},
             {"step": "decision", "text": "核定补助 8,000.00 元"}]
    for start in range(0, claims, CHUNK):
        rows, docs = [], []
        for c in range(start + 1, min(claims, start + CHUNK) + 1):
            member = rng.randint(1, households * 3)
            status = (S.submitted if c % 10 < 1 else S.in_review) if c > claims - waiting else \
                rng.choice((S.approved, S.paid, S.paid, S.rejected))
            decided = status is not S.submitted
            submitted = now - timedelta(days=(claims - c) // 300, minutes=c % 600)
            rows.append({"id": c, "number": f"C{c:08d}", "household_id": (member - 1) // 3 + 1,
                         "member_id": member, "scheme_year_id": year_id, "status": status,
                         "submitted_at": submitted,
                         "due_date": submitted.date() + timedelta(days=7),
                         "drg_code": "FM19" if decided else None,
                         "amount_fen": 800000 if decided and status is not S.rejected else None,
                         "reasons": ["below_threshold"] if status is S.rejected else [],
                         "trace": trace if decided else [], "ocr": ocr, "stated": {},
                         "flags": {"possible_duplicate": [f"C{c - 1:08d}"]} if c % 97 == 0
                         else {}, "created_at": submitted, "updated_at": now})
            for i, kind in enumerate(kinds):
                docs.append({"claim_id": c, "kind": kind, "media_id": f"m{c}-{i}",
                             "sha256": f"{c:060d}{i:04d}", "size": 100_000,
                             "content_type": "image/jpeg", "source_key": f"b:{c}:{i}",
                             "created_at": submitted})
        with db.session() as s:
            s.execute(insert(Claim), rows)
            s.execute(insert(ClaimDocument), docs)
    if db.is_postgres:
        with db.engine.begin() as conn:
            for table in ("household", "member", "claim", "claim_document"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
        # what autovacuum does after a bulk load: the visibility map lets the queue's count and
        # page be index-only scans
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    print(f"claims and documents: {time.perf_counter() - t:.1f} s", flush=True)


def measure(session, url: str, n: int) -> dict:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url() if callable(url) else url, timeout=30)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (r.status_code, r.text[:300])
    times.sort()
    return {"n": n, "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(0.95 * (n - 1))], 1), "max_ms": round(times[-1], 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=600_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--reuse", action="store_true",
                    help="PostgreSQL: the data of the last run is still there; measure only")
    args = ap.parse_args()

    import requests

    from bot.devtools.demo import demo_config
    from bot.server import Running
    from bot.web.app import AppContext
    from core.admins import create_invite, bind
    from core.console import issue_link
    from core.db import Database
    from core.models import Claim, ClaimStatus as S

    work = Path(tempfile.mkdtemp(prefix="huzhu-bench-console-"))
    url = os.environ.get("HUZHU_BENCH_DATABASE_URL") or f"sqlite:///{work}/bench.db"
    cfg = demo_config(work / "data", "http://127.0.0.1:9", DATABASE_URL=url)
    db = Database(url)
    x = AppContext(cfg=cfg, db=db)
    try:
        if not (args.reuse and db.is_postgres):
            build(db, x.vault, args.members, args.claims)
        with db.session() as s:
            bind(s, "o_bench_super", create_invite(s, "super", "bench"))
            bind(s, "o_bench_pool", create_invite(s, "pool_admin", "bench", pool="demo"))
            token = issue_link(s, "o_bench_super")
            pool_token = issue_link(s, "o_bench_pool")
            waiting = list(s.scalars(select(Claim.number).where(
                Claim.status.in_((S.submitted, S.in_review)))))
        running = Running(x, worker=False, scheduler=False, threads=4).start()
        try:
            web = requests.Session()
            assert web.get(f"{running.url}/admin/login/{token}", timeout=30).status_code == 200
            pool_web = requests.Session()
            assert pool_web.get(f"{running.url}/admin/login/{pool_token}",
                                timeout=30).status_code == 200
            rng = random.Random(11)
            results = {
                "queue": measure(web, f"{running.url}/admin/claims", args.requests),
                "queue_village": measure(web, f"{running.url}/admin/claims?village=2",
                                         args.requests),
                "queue_page_5": measure(web, f"{running.url}/admin/claims?offset=200",
                                        args.requests),
                "queue_pool_admin": measure(pool_web, f"{running.url}/admin/claims",
                                            args.requests),
                "claim_page": measure(
                    web, lambda: f"{running.url}/admin/claims/{rng.choice(waiting)}",
                    args.requests),
            }
        finally:
            running.stop()
    finally:
        db.dispose()
        shutil.rmtree(work, ignore_errors=True)
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    ok = all(r["p95_ms"] < TARGET_MS for r in results.values())
    print(json.dumps({"database": database, "server": "waitress (huzhu serve), 4 threads",
                      "claims": args.claims, "members": args.members, "waiting": len(waiting),
                      **results, "target_p95_ms": TARGET_MS, "pass": ok},
                     ensure_ascii=False, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

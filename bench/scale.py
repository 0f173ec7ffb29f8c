"""Benchmark: the per-pool answers at province scale, on PostgreSQL.

    HUZHU_BENCH_DATABASE_URL=postgresql+psycopg://… python bench/scale.py [MEMBERS] [REPEATS]
        (default 100,000 members: one pool's share of 5 million members in 50 pools)

Builds one pool in bulk (bench/transparency.py's `populate`: households, members and
enrolments by multi-row INSERT, 3,000 paid claims; the real import and claim path would take
hours at this size), then times each answer REPEATS times (default 20) and prints p50 and p99:
`/统计` (participation per village + claims by status), `6 基金公示` (fund_overview),
`5 查询余额` (household_balance), `4 查询进度` (claims.progress), the year report. Every query
of these answers is filtered by its pool (or household), so at 5 million members in 50 pools
the figure that matters is one pool's size; the other pools' rows only deepen the indexes.
Target: p99 < 200 ms each. The database named is wiped.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import create_engine, select, text  # noqa: E402

from core import claims  # noqa: E402
from core.bootstrap import ensure_demo  # noqa: E402
from core.db import Database  # noqa: E402
from core.models import Household, SchemeYear  # noqa: E402
from core.stats import (claims_by_status, fund_overview, household_balance,  # noqa: E402
                        participation, year_report)
from transparency import populate  # noqa: E402


def wipe(url: str) -> None:
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()


def measure(label: str, fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    print(f"{label:<40} p50 {statistics.median(times):8.1f} ms  p99 {p99:8.1f} ms"
          f"  {'ok' if p99 < 200 else 'OVER 200 ms'}")
    return p99


def main() -> int:
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    url = os.environ.get("HUZHU_BENCH_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        print("set HUZHU_BENCH_DATABASE_URL to an empty PostgreSQL database (it is wiped)")
        return 2
    wipe(url)
    db = Database(url)
    db.upgrade()
    ensure_demo(db)
    t0 = time.perf_counter()
    pool_id, _month = populate(db, members, 3_000, 50)
    with db.engine.begin() as c:
        c.execute(text("ANALYZE"))
        size = c.execute(text("SELECT pg_database_size(current_database())")).scalar()
    print(f"built {members:,} members in {time.perf_counter() - t0:.0f} s; database "
          f"{size / 2**20:,.0f} MB ({size / 2**20 / members * 1e6:,.0f} MB per million members)"
          f"; load average {os.getloadavg()[0]:.1f} (shared machine)")
    today = date.today()
    worst = 0.0
    with db.session() as s:
        year = s.scalar(select(SchemeYear).where(SchemeYear.pool_id == pool_id))
        hh = s.get(Household, 1)
        worst = max(worst, measure("/统计 (participation + claims by status)",
                                   lambda: (participation(s, pool_id, year.id),
                                            claims_by_status(s, pool_id, year.id)), repeats))
        worst = max(worst, measure("6 基金公示 (fund_overview)",
                                   lambda: fund_overview(s, pool_id, today), repeats))
        worst = max(worst, measure("5 查询余额 (household_balance)",
                                   lambda: household_balance(s, hh, year), repeats))
        worst = max(worst, measure("4 查询进度 (claims.progress)",
                                   lambda: claims.progress(s, hh), repeats))
        measure("report year figures (year_report)", lambda: year_report(s, pool_id, year),
                max(3, repeats // 5))
    print(f"load average {os.getloadavg()[0]:.1f}")
    db.dispose()
    return 0 if worst < 200 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the quota designer (测算).

    python bench/design.py [--members 600000] [--years 10000]

Times, with the Anji 2024 preset (two strata of continuing members, a 100,000-yuan annual cap)
and the built-in weights:
1. the design of the 628-group table (solving the scale, the rule's amounts per group)
   — target ≤ 1 s;
2. the simulation of YEARS years for a pool of MEMBERS — target ≤ 10 s for 10,000 years of
   600,000 members;
both as core calls and as the command a county runs (`huzhu scheme design --scheme FILE
--members N [--simulate YEARS] --json`, a fresh process, no database: the scheme file form).
With --pool-form, also the stored-pool form on SQLite: a pool `bench` of MEMBERS paid members
(three to a household, 30 villages, the demo scheme) is written to a fresh SQLite file (not
timed), then `huzhu scheme design --pool bench [--simulate YEARS] --json` is timed.
Also prints how close the simulated mean payout is to the expected one (a test keeps it
within 2%).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import SCHEMES_DIR  # noqa: E402
from core.design import design, simulate  # noqa: E402
from core.design.fit import DEFAULT_INSURANCE_MIX  # noqa: E402
from core.design.service import quoted_groups  # noqa: E402
from core.design.weights import default_weights  # noqa: E402
from core.scheme import load_scheme  # noqa: E402


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=600_000)
    parser.add_argument("--years", type=int, default=10_000)
    parser.add_argument("--pool-form", action="store_true",
                        help="also time --pool on a SQLite pool of MEMBERS paid members")
    args = parser.parse_args()
    scheme_file = SCHEMES_DIR / "anji-2024.yaml"
    scheme = load_scheme(scheme_file)
    codes = quoted_groups(scheme)
    weights = default_weights(codes)
    funds = args.members * scheme.contribution.per_person_fen

    def run_design():
        return design(scheme, weights, codes, args.members, funds, Decimal("0.10"),
                      DEFAULT_INSURANCE_MIX, 0.6, scheme.benefit.quota_excluded)

    run_design()  # warm: templates, Φ table, imports
    d, t_design = timed(run_design)
    sim, t_sim = timed(lambda: simulate(d, args.years, seed=1))
    mean = float(sim.totals_fen.mean())
    print(f"design, core:      {len(d.quotas_fen)} groups in {t_design * 1000:.0f} ms "
          f"(target ≤ 1000 ms)")
    print(f"simulation, core:  {args.years:,} years × {args.members:,} members in {t_sim:.2f} s "
          f"(target ≤ 10 s); {sim.checked} draws checked by adjudicate()")
    print(f"simulated mean payout {mean / 100:,.2f} yuan vs expected "
          f"{d.expected_payout_fen / 100:,.2f} yuan: {100 * (mean / d.expected_payout_fen - 1):+.3f}%")

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    with tempfile.TemporaryDirectory() as tmp:
        env["HUZHU_DATA_DIR"] = tmp
        base = [sys.executable, "-m", "bot.cli", "scheme", "design", "--scheme", str(scheme_file),
                "--members", str(args.members), "--json"]
        for label, extra in (("design, CLI", []),
                             ("design + simulation, CLI", ["--simulate", str(args.years)])):
            out, wall = timed(lambda: subprocess.run(base + extra, capture_output=True, text=True,
                                                     env=env, check=True))
            doc = json.loads(out.stdout)
            print(f"{label + ':':<26} {wall:.2f} s wall (a fresh process, imports included); "
                  f"{doc['groups']} groups"
                  + (f", p_exhaust {doc['simulation']['p_exhaust']}" if doc["simulation"] else ""))
        if args.pool_form:
            env["HUZHU_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
            built = timed(lambda: build_pool(env["HUZHU_DATABASE_URL"], args.members))[1]
            print(f"(SQLite pool of {args.members:,} paid members written in {built:.0f} s)")
            base = [sys.executable, "-m", "bot.cli", "scheme", "design", "--pool", "bench",
                    "--json"]
            for label, extra in (("design, CLI --pool, SQLite", []),
                                 ("+ simulation, CLI --pool", ["--simulate", str(args.years)])):
                out, wall = timed(lambda: subprocess.run(base + extra, capture_output=True,
                                                         text=True, env=env, check=True))
                doc = json.loads(out.stdout)
                print(f"{label + ':':<30} {wall:.2f} s wall; {doc['members']:,} members, "
                      f"{doc['groups']} groups")


def build_pool(url: str, members: int) -> None:
    """Pool `bench` (bench/import_households.py's fresh_pool) with `members` paid members."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from sqlalchemy import insert, select

    from bench.import_households import fresh_pool
    from core.db import Database
    from core.models import (Enrolment, EnrolmentStatus, Household, InsuranceType, Member,
                             Relation, SchemeYear, Village)

    db = Database(url)
    villages = [f"大镇/{i:02d}村" for i in range(30)]
    fresh_pool(db, villages, datetime.now(ZoneInfo("Asia/Shanghai")).date())
    with db.session() as s:
        year_id = s.scalar(select(SchemeYear.id))
        village_ids = list(s.scalars(select(Village.id).order_by(Village.id)))
        pool_id = s.scalar(select(Village.pool_id))
        n_households = (members + 2) // 3
        s.execute(insert(Household), [
            {"number": f"H{900000 + i}", "pool_id": pool_id,
             "village_id": village_ids[i % len(village_ids)]} for i in range(n_households)])
        first = s.scalar(select(Household.id).order_by(Household.id))
        kinds = (InsuranceType.resident, InsuranceType.resident, InsuranceType.employee)
        s.execute(insert(Member), [
            {"household_id": first + i // 3, "name": "某", "id_number_enc": "x",
             "id_number_hash": f"h{i}", "id_number_masked": "3205**********0000",
             "birth_year": 1960, "relation": Relation.head, "insurance": kinds[i % 3]}
            for i in range(members)])
        first_member = s.scalar(select(Member.id).order_by(Member.id))
        s.execute(insert(Enrolment), [
            {"member_id": first_member + i, "scheme_year_id": year_id, "id_number_hash": f"h{i}",
             "status": EnrolmentStatus.paid} for i in range(members)])
    db.dispose()


if __name__ == "__main__":
    main()

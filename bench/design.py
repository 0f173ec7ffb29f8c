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


if __name__ == "__main__":
    main()

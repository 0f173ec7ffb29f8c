"""Benchmark: adjudicate() over a realistic mix of claims; prints decisions per second.

    python bench/adjudication.py [N]        (default 200,000 decisions; target ≥ 50,000/s)

The mix, drawn once with a fixed seed before timing: the Anji 2024 preset's rules; about 70%
approvals (with and without the continuous bonus, some capped by the out-of-pocket amount or the
annual cap), the rest rejections of every kind (below threshold, unknown group, outside the year,
exclusions, not enrolled, overlapping stays); members with 0–6 earlier claims this year.
"""
from __future__ import annotations

import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.adjudication import ClaimFacts, History, OtherClaim, Rules, adjudicate  # noqa: E402
from core.config import SCHEMES_DIR  # noqa: E402
from core.scheme import EXCLUSION_KINDS, load_scheme  # noqa: E402


def make_mix(rules: Rules, n: int, seed: int = 20240801):
    rng = random.Random(seed)
    codes = list(rules.quotas_fen)
    span = (rules.year_end - rules.year_start).days
    statuses = ["approved", "paid", "in_payout", "rejected", "submitted", "in_review"]
    cases = []
    for i in range(n):
        admission = rules.year_start + timedelta(days=rng.randrange(span))
        if rng.random() < 0.03:
            admission = rules.year_start - timedelta(days=rng.randrange(1, 60))
        discharge = admission + timedelta(days=rng.randrange(0, 20))
        insurance = rng.choices(["resident", "employee", "uninsured"], [70, 25, 5])[0]
        threshold = rules.thresholds_fen[insurance]
        out_of_pocket = (rng.randrange(threshold, threshold * 8) if rng.random() < 0.85
                         else rng.randrange(0, threshold))
        code = rng.choice(codes) if rng.random() < 0.97 else "ZZ99"
        exclusion = rng.choice(EXCLUSION_KINDS) if rng.random() < 0.03 else None
        others = []
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3, 6])):
            start = rules.year_start + timedelta(days=rng.randrange(span))
            others.append(OtherClaim(rng.choice(statuses), rng.randrange(30000, 3000000), start,
                                     start + timedelta(days=rng.randrange(0, 10)), f"C{i:08d}"))
        history = History(rng.random() < 0.98, rng.random() < 0.6, tuple(others))
        cases.append((ClaimFacts(i, code, out_of_pocket, admission, discharge, insurance,
                                 exclusion), history))
    return cases


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rules = Rules.from_scheme(load_scheme(SCHEMES_DIR / "anji-2024.yaml", today=date(2024, 8, 1)))
    cases = make_mix(rules, n)
    approved = 0
    started = time.perf_counter()
    for facts, history in cases:
        approved += adjudicate(facts, rules, history).amount_fen is not None
    elapsed = time.perf_counter() - started
    print(f"{n:,} decisions in {elapsed:.2f} s: {n / elapsed:,.0f} decisions/s "
          f"({approved / n:.0%} approved)")


if __name__ == "__main__":
    main()

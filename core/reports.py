"""Reports on a pool's fund, as JSON-able dicts (amounts in fen) for the CLI and the demo.

- `fund_report(session, pool, today)` — SPEC `huzhu report fund --json`: the ledger's figures
  (carried over, income by source, paid, fees, recovered, balance) for the pool's scheme year
  running today, or for all time when none is.
"""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from core import ledger
from core.models import Pool
from core import scheme_years


def fund_report(s: Session, pool: Pool, today: date) -> dict:
    """SPEC `report fund --json` for the pool's scheme year running today (all time when none)."""
    year = scheme_years.running(s, pool.id, today)
    if year is not None:
        figures = ledger.summary(s, pool.id, since=year.start,
                                 until=year.end + timedelta(days=1))
        period = {"start": year.start.isoformat(), "end": year.end.isoformat()}
    else:
        figures = ledger.summary(s, pool.id)
        period = None
    return {"pool": pool.code, **figures, "period": period}

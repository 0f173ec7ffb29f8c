"""The payout calendar: what the daily payout jobs do (bot/jobs/payouts.py only schedules them).

- `run_due_payouts(db, vault, data_dir, today)` — every pool whose scheme's `payout.day` has come
  this month (the month's last day when it is shorter) and whose scheduled run for the month has
  not been done gets its run (core.payouts.run_payout): on the payout day itself, or the next
  morning when the server was down then. The run is idempotent; the marker (an audit row
  `payout.scheduled`) only spares the work. A pool whose run fails is logged and left for the
  next day; the others still run.
- `post_due_service_fees(session, today)` — the service fee of each pool's last period that
  ended (the scheme's `service_fee.every`: quarter in the seeds, so on April 1 for Q1),
  idempotent by its ledger ref, so a day missed is caught up the next.
"""
from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import ledger
from core.audit import audit
from core.crypto import PersonalDataVault
from core.db import Database
from core.models import Pool
from core.payouts import due_pools, last_period, month_of, post_service_fee, run_payout
from core.scheme_years import latest_started

log = logging.getLogger("huzhu.jobs.payouts")

ACTOR = "scheduler"


def run_due_payouts(db: Database, vault: PersonalDataVault, data_dir: Path, today: date,
                    actor: str = ACTOR) -> list:
    """The payout runs due `today`, one per pool, each in transactions of its own; returns
    their results (core.payouts.run_payout's)."""
    month = month_of(today)
    with db.session() as s:
        pools = due_pools(s, today)
    results = []
    for code in pools:
        try:
            r = run_payout(db, vault, data_dir, code, month, actor, today, announce_empty=True)
        except Exception:
            log.exception("payout run for pool %s %s failed; tried again tomorrow", code, month)
            continue
        with db.session() as s:
            audit(s, actor, "payout.scheduled", "pool", f"{code}:{month}", None,
                  {"batch": r.batch, "lines": r.lines, "total_fen": r.total_fen})
        log.info("payout run %s %s: batch %s, %s lines", code, month, r.batch, r.lines)
        results.append(r)
    return results


def post_due_service_fees(session: Session, today: date,
                          actor: str = ACTOR) -> list[tuple[str, str, int]]:
    """The service fee of each pool's last ended period, in the caller's transaction; returns
    (pool, period, fee_fen) for each one posted now."""
    posted = []
    for pool in session.scalars(select(Pool).order_by(Pool.id)):
        year = latest_started(session, pool.id, today)
        if year is None:
            continue
        period = last_period(year.scheme.service_fee.every, today)
        entry = post_service_fee(session, pool.id, period, actor)
        if entry is not None:
            fee = sum(line.amount_fen for line in entry.lines if line.account == ledger.FEE)
            posted.append((pool.code, period, fee))
    return posted

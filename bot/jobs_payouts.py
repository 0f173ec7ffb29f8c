"""Scheduled payout work (APScheduler, bot/scheduler.py):

- `payout.monthly` — every day at 03:00 local time; a pool whose scheme's `payout.day` has come
  this month (the month's last day when it is shorter) and whose scheduled run for the month has
  not been done gets its run (core.payouts.run_payout): on the payout day itself, or the next
  morning when the server was down then. The run is idempotent, the marker (an audit row
  `payout.scheduled`) only spares the work.
- `payout.service_fee` — every day at 04:00; posts the service fee of the last period that
  ended (the scheme's `service_fee.every`: quarter in the seeds, so on April 1 for Q1), idempotent
  by its ledger ref, so a day missed is caught up the next.

Tests call `run_scheduled_payouts(x, now)` and `post_service_fees(x, now)` with the clock moved.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from bot.scheduler import current, job
from core.audit import audit

log = logging.getLogger("huzhu.jobs.payouts")

ACTOR = "scheduler"


def run_scheduled_payouts(x, now: datetime) -> list:
    """The payout runs due at `now` (local time), one per pool; returns their results."""
    from core.payouts import due_pools, month_of, run_payout

    today = now.date()
    month = month_of(today)
    with x.db.session() as s:
        pools = due_pools(s, today)
    results = []
    for code in pools:
        try:
            r = run_payout(x.db, x.vault, x.cfg.data_dir, code, month, ACTOR, today,
                           announce_empty=True)
        except Exception:
            log.exception("payout run for pool %s %s failed; tried again tomorrow", code, month)
            continue
        with x.db.session() as s:
            audit(s, ACTOR, "payout.scheduled", "pool", f"{code}:{month}", None,
                  {"batch": r.batch, "lines": r.lines, "total_fen": r.total_fen})
        log.info("payout run %s %s: batch %s, %s lines", code, month, r.batch, r.lines)
        results.append(r)
    x.wake_outbox()
    return results


def post_service_fees(x, now: datetime) -> list[tuple[str, str, int]]:
    """The service fee of each pool's last ended period; returns (pool, period, fee_fen)."""
    from core import ledger
    from core.models import Pool
    from core.payouts import last_period, post_service_fee
    from core.scheme_years import latest_started

    today = now.date()
    posted = []
    with x.db.session() as s:
        for pool in s.scalars(select(Pool).order_by(Pool.id)):
            year = latest_started(s, pool.id, today)
            if year is None:
                continue
            period = last_period(year.scheme.service_fee.every, today)
            entry = post_service_fee(s, pool.id, period, ACTOR)
            if entry is not None:
                fee = sum(line.amount_fen for line in entry.lines if line.account == ledger.FEE)
                posted.append((pool.code, period, fee))
    return posted


@job("payout.monthly", "cron", hour=3, minute=0)
def payout_monthly() -> None:
    x = current()
    run_scheduled_payouts(x, datetime.now(x.cfg.tz))


@job("payout.service_fee", "cron", hour=4, minute=0)
def service_fee() -> None:
    x = current()
    post_service_fees(x, datetime.now(x.cfg.tz))

"""Scheduled payout work (APScheduler, bot/jobs/scheduler.py); what is due is decided in
core/payout_schedule.py:

- `payout.monthly` — every day at 03:00 local time: the pools' payout runs due today
  (core.payout_schedule.run_due_payouts).
- `payout.service_fee` — every day at 04:00: the service fees of the periods that ended
  (core.payout_schedule.post_due_service_fees).

Tests call `run_scheduled_payouts(x, now)` and `post_service_fees(x, now)` with the clock moved.
"""
from __future__ import annotations

from datetime import datetime

from bot.jobs.scheduler import current, job
from core.payout_schedule import post_due_service_fees, run_due_payouts


def run_scheduled_payouts(x, now: datetime) -> list:
    """The payout runs due at `now` (local time), one per pool; returns their results."""
    results = run_due_payouts(x.db, x.vault, x.cfg.data_dir, now.date())
    x.waker.wake()
    return results


def post_service_fees(x, now: datetime) -> list[tuple[str, str, int]]:
    """The service fee of each pool's last ended period; returns (pool, period, fee_fen)."""
    with x.db.session() as s:
        return post_due_service_fees(s, now.date())


@job("payout.monthly", "cron", hour=3, minute=0)
def payout_monthly() -> None:
    x = current()
    run_scheduled_payouts(x, datetime.now(x.cfg.tz))


@job("payout.service_fee", "cron", hour=4, minute=0)
def service_fee() -> None:
    x = current()
    post_service_fees(x, datetime.now(x.cfg.tz))

"""Scheduled transparency jobs, and `disclose()` for the payout confirmation to call.

- `disclosure.monthly` (daily 08:30 local): for each pool, once the day of the month reaches its
  scheme's `disclosure.day`, the previous month's disclosure is published (once: publishing is
  idempotent per pool and month, so the job may run every day and catches up after a pause;
  the rule is core.disclosure.publish_due).
- `objections.disclose` (daily 09:00 local): where a scheme has `disclosure.objection_days` > 0,
  the claims approved since the last run are posted to the groups and their windows open
  (core.objections.disclose_due).

`disclose(session_or_ctx, pool_id, month)` publishes one month now: the payout engineer calls
it after a batch is confirmed, best in the confirmation's own transaction (pass the handler's
Ctx or the Session), so the disclosure is queued exactly when the payment is recorded.
"""
from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy.orm import Session

from bot.jobs.scheduler import current, job
from core import disclosure, objections

log = logging.getLogger("huzhu.jobs")


def disclose(session_or_ctx, pool_id: int, month: str, *, force: bool = False,
             actor: str = "system", cfg=None) -> dict:
    """Publish the pool's disclosure of `month` (YYYY-MM) to its groups and followers.
    Accepts a handlers Ctx (its transaction), an AppContext (a transaction of its own) or a
    Session (pass `cfg` for the time zone). Idempotent per pool and month."""
    if isinstance(session_or_ctx, Session):
        tz = cfg.tz if cfg is not None else None
        return disclosure.publish(session_or_ctx, pool_id, month, tz=tz, actor=actor,
                                  force=force)
    x = session_or_ctx
    if hasattr(x, "session"):  # handlers.types.Ctx
        return disclosure.publish(x.session, pool_id, month, tz=x.cfg.tz, actor=actor,
                                  force=force)
    with x.db.session() as s:  # bot.web.app.AppContext
        result = disclosure.publish(s, pool_id, month, tz=x.cfg.tz, actor=actor, force=force)
    x.waker.wake()
    return result


def run_monthly(x, today: date | None = None) -> list[dict]:
    """Publish every pool's previous month where its disclosure day has come
    (core.disclosure.publish_due)."""
    today = today or datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        results = disclosure.publish_due(s, today, tz=x.cfg.tz)
    x.waker.wake()
    for r in results:
        if r["posted"]:
            log.info("disclosure %s %s: %s messages to %s groups", r["pool"], r["month"],
                     r["messages"], r["groups"])
    return results


def run_objection_lists(x, today: date | None = None) -> list[dict]:
    """Post every pool's newly approved claims (core.objections.disclose_due)."""
    today = today or datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        results = objections.disclose_due(s, today)
    x.waker.wake()
    return results


@job("disclosure.monthly", "cron", hour=8, minute=30)
def monthly_disclosure() -> None:
    run_monthly(current())


@job("objections.disclose", "cron", hour=9, minute=0)
def objection_lists() -> None:
    run_objection_lists(current())

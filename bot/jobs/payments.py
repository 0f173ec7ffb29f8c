"""Scheduled payment jobs: orders expire after the payment deadline (just after midnight), and
unpaid households are reminded 7 days and 1 day before it (in the morning), through the outbox."""
from __future__ import annotations

import logging
from datetime import datetime

from bot.jobs.scheduler import current, job
from core import payments

log = logging.getLogger("huzhu.jobs.payments")


def expire(x, now: datetime | None = None) -> int:
    now = now or datetime.now(x.cfg.tz)
    with x.db.session() as s:
        n = payments.expire_orders(s, now.date(), x.cfg.tz)
    if n:
        log.info("expired %s open orders after the payment deadline", n)
    return n


def remind(x, now: datetime | None = None) -> int:
    now = now or datetime.now(x.cfg.tz)
    with x.db.session() as s:
        n = payments.send_reminders(s, now.date(), by_sms=bool(x.cfg.values.get("SMS_PROVIDER")))
    if n:
        log.info("payment reminders sent to %s households", n)
        x.waker.wake()
    return n


@job("payments.expire", "cron", hour=0, minute=10)
def expire_job() -> None:
    expire(current())


@job("payments.remind", "cron", hour=9, minute=0)
def remind_job() -> None:
    remind(current())

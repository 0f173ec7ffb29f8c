"""Scheduled job: every morning, claims past their review due date are listed to their pool's
reviewers and administrators (core.review.remind_overdue; once a day per pool)."""
from __future__ import annotations

import logging
from datetime import datetime

from bot.jobs.scheduler import current, job

log = logging.getLogger("huzhu.review")


@job("review.overdue", "cron", hour=8, minute=30)
def remind_overdue_reviews() -> int:
    from core.review import remind_overdue

    x = current()
    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        sent = remind_overdue(s, today)
    if sent:
        log.info("review-due reminders queued: %s", sent)
        x.waker.wake()
    return sent

"""Scheduled job: every night, cached replies older than 30 days are deleted
(core.retention.delete_cached_replies)."""
from __future__ import annotations

import logging

from bot.jobs.scheduler import current, job

log = logging.getLogger("huzhu.retention")


@job("retention.cached_replies", "cron", hour=4, minute=15)
def delete_cached_replies() -> int:
    from core.models import utcnow
    from core.retention import delete_cached_replies as delete

    x = current()
    with x.db.session() as s:
        deleted = delete(s, utcnow())
    if deleted:
        log.info("cached replies deleted: %s", deleted)
    return deleted

"""Scheduled jobs: every night, cached replies older than 30 days are deleted
(core.retention.delete_cached_replies); every ten minutes, the webhook's signed queries whose
timestamps have left its window (core.retention.delete_expired_nonces)."""
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


@job("retention.webhook_nonces", "interval", minutes=10)
def delete_expired_nonces() -> int:
    """The webhook's signed queries, kept only while their timestamp is within its window."""
    from core.models import utcnow
    from core.retention import delete_expired_nonces as delete

    with current().db.session() as s:
        return delete(s, utcnow())

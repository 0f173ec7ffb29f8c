"""One scheduler at a time; the jobs live in the database job store; a standby takes over."""
from __future__ import annotations

from sqlalchemy import select, text

from bot.jobs.scheduler import JOBS, Scheduler


def test_only_one_scheduler_is_active_and_jobs_are_stored(app_ctx, db):
    first, second = Scheduler(app_ctx), Scheduler(app_ctx)
    first.start()
    second.start()
    try:
        assert first.active and not second.active
        assert "outbox.drain" in {j["id"] for j in first.jobs()}
        with db.session() as s:
            stored = set(s.scalars(text("SELECT id FROM scheduler_job")))
        assert set(JOBS) <= stored
        first.shutdown()
        assert second._try_start()  # the standby takes over once the lock is free
        assert second.active
    finally:
        first.shutdown()
        second.shutdown()

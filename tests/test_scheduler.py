"""One scheduler at a time; the jobs live in the database job store; a standby takes over; a
store written before the jobs moved to bot/jobs/ still runs them."""
from __future__ import annotations

import pickle
import threading
from datetime import datetime

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


# Before bot/ was laid out in packages, jobs were stored under these module references.
OLD_REFS = {
    "outbox.drain": "bot.scheduler:drain_outbox",
    "payments.expire": "bot.jobs_payments:expire_job",
    "payments.remind": "bot.jobs_payments:remind_job",
    "payout.monthly": "bot.jobs_payouts:payout_monthly",
    "payout.service_fee": "bot.jobs_payouts:service_fee",
    "review.overdue": "bot.jobs_review:remind_overdue_reviews",
    "disclosure.monthly": "bot.jobs_transparency:monthly_disclosure",
    "objections.disclose": "bot.jobs_transparency:objection_lists",
}


def _stored_refs(db) -> dict[str, str]:
    with db.session() as s:
        rows = s.execute(text("SELECT id, job_state FROM scheduler_job")).all()
    return {row.id: pickle.loads(row.job_state)["func"] for row in rows}


def test_a_job_store_written_under_the_old_module_names_still_runs_its_jobs(app_ctx, db):
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    assert set(OLD_REFS) <= set(JOBS)  # a job added since (backup.*) never had an old name
    # the store as the old version left it: the same jobs, their functions named the old way
    old = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename="scheduler_job")},
        timezone=app_ctx.cfg.tz)
    old.start(paused=True)
    for spec in JOBS.values():
        old.add_job(spec.ref, spec.trigger, id=spec.id, **spec.args)
    old.shutdown(wait=False)
    with db.session() as s:
        for row in s.execute(text("SELECT id, job_state FROM scheduler_job")).all():
            if row.id not in OLD_REFS:
                continue
            state = pickle.loads(row.job_state)
            state["func"] = OLD_REFS[row.id]
            s.execute(text("UPDATE scheduler_job SET job_state = :state WHERE id = :id"),
                      {"state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL), "id": row.id})
    assert {k: v for k, v in _stored_refs(db).items() if k in OLD_REFS} == OLD_REFS

    sched = Scheduler(app_ctx)
    sched.start()
    try:
        assert sched.active
        # every job is stored again under the module it lives in now, none lost or doubled
        assert _stored_refs(db) == {spec.id: spec.ref for spec in JOBS.values()}
        # and each runs from the store
        ran, failed, done = set(), {}, threading.Event()

        def seen(event):
            if event.exception is not None:
                failed[event.job_id] = event.exception
            ran.add(event.job_id)
            if ran >= set(JOBS):
                done.set()

        sched._sched.add_listener(seen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        now = datetime.now(app_ctx.cfg.tz)
        for job_id in JOBS:
            sched._sched.modify_job(job_id, next_run_time=now)
        sched._sched.wakeup()
        assert done.wait(60), f"not run: {set(JOBS) - ran}"
        assert failed == {}
    finally:
        sched.shutdown()

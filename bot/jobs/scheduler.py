"""The scheduler: APScheduler 3 with its SQLAlchemy job store, one active at a time.

On PostgreSQL the active scheduler holds an advisory lock on a connection of its own; the
others stand by and try again every 30 seconds, so another process takes over when it dies.
On SQLite (one host) a file lock in DATA_DIR does the same. Jobs are registered with @job
from any module; their functions take no arguments and find the running app with `current()`.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import text

log = logging.getLogger("huzhu.scheduler")

LOCK_KEY = 0x68757A6875  # "huzhu"


@dataclass(frozen=True)
class JobSpec:
    id: str
    ref: str  # module:function, stored in the job store
    trigger: str
    args: dict


JOBS: dict[str, JobSpec] = {}
_current = None


def job(job_id: str, trigger: str, **trigger_args):
    """Register a module-level function as a scheduled job (cron or interval)."""
    def wrap(fn):
        JOBS[job_id] = JobSpec(job_id, f"{fn.__module__}:{fn.__qualname__}", trigger, trigger_args)
        return fn
    return wrap


def current():
    """The AppContext of the process running the scheduler."""
    if _current is None:
        raise RuntimeError("the scheduler is not running in this process")
    return _current


@job("outbox.drain", "interval", seconds=10)
def drain_outbox() -> None:
    from bot.outbox.worker import drain

    drain(current())


def _log_run(event) -> None:
    """One line per run, in this process's log: which job, for which scheduled time, in which
    process (so runs can be counted across several workers)."""
    log.info("job %s ran for %s in process %s%s", event.job_id,
             event.scheduled_run_time.isoformat(), os.getpid(),
             " with an error" if event.exception else "")


class Scheduler:
    def __init__(self, app_ctx):
        self.x = app_ctx
        self.active = False
        self._sched: BackgroundScheduler | None = None
        self._lock_conn = None
        self._lock_file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        global _current
        _current = self.x
        if not self._try_start():
            self._thread = threading.Thread(target=self._standby, name="huzhu-sched-standby",
                                            daemon=True)
            self._thread.start()

    def _standby(self) -> None:
        while not self._stop.wait(30):
            if self._try_start():
                return

    def _try_lock(self) -> bool:
        db = self.x.db
        if db.is_postgres:
            conn = db.engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            conn.commit()
            if got:
                self._lock_conn = conn
                return True
            conn.close()
            return False
        from core.files import FILE_MODE, private_dir

        private_dir(self.x.cfg.data_dir)
        fh = os.fdopen(os.open(self.x.cfg.data_dir / "scheduler.lock", os.O_WRONLY | os.O_CREAT,
                               FILE_MODE), "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_file = fh
        return True

    def _try_start(self) -> bool:
        from bot.discover import load_jobs

        load_jobs()
        if not self._try_lock():
            log.info("another scheduler is active; standing by")
            return False
        sched = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.x.db.engine,
                                                     tablename="scheduler_job")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
            timezone=self.x.cfg.tz)
        for spec in JOBS.values():
            sched.add_job(spec.ref, spec.trigger, id=spec.id, replace_existing=True, **spec.args)
        sched.add_listener(_log_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        sched.start()
        self._sched = sched
        self.active = True
        log.info("scheduler active with jobs: %s", ", ".join(sorted(JOBS)))
        return True

    def jobs(self) -> list[dict]:
        if self._sched is None:
            return []
        return [{"id": j.id, "next_run": j.next_run_time.isoformat() if j.next_run_time else None}
                for j in self._sched.get_jobs()]

    def shutdown(self) -> None:
        self._stop.set()
        if self._sched is not None:
            self._sched.shutdown(wait=False)
            self._sched = None
        self.active = False
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                self._lock_conn.close()
            except Exception:  # the connection may be gone already
                pass
            self._lock_conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

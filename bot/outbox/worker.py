"""The outbox worker: delivers outbox rows with retries and backoff, outside any request.

Rows are leased in a short transaction, delivered with no transaction open (a slow WeChat never
holds a database lock), then marked sent, or failed with exponential backoff, or dead after the
last attempt. Several workers can run at once (see core.outbox.lease_due).
"""
from __future__ import annotations

import logging
import os
import socket
import threading


from core import ocr, outbox
from core.models import OutboxMessage, OutboxStatus, WorkerHeartbeat, utcnow

log = logging.getLogger("huzhu.worker")


def drain(app_ctx, limit: int = 50) -> int:
    """Deliver what is due now; returns how many rows were attempted."""
    from bot.outbox.deliver import DELIVERERS, PermanentError
    from bot.discover import load_deliverers

    load_deliverers()
    cfg, db = app_ctx.cfg, app_ctx.db
    with db.session() as s:
        rows = outbox.lease_due(s, limit)
        leased = [(r.id, r.kind) for r in rows]
    for row_id, kind in leased:
        with db.session() as s:
            row = s.get(OutboxMessage, row_id)
            if row is None or row.status is not OutboxStatus.pending:
                continue
            s.expunge(row)
        error, retry, result = None, True, None
        try:
            deliver = DELIVERERS.get(kind)
            if deliver is None:
                raise PermanentError(f"no deliverer for kind {kind!r}")
            result = deliver(app_ctx.deliver_context, row)
        except PermanentError as exc:
            error, retry = f"{type(exc).__name__}: {exc}", False
        except Exception as exc:  # retryable: network, WeChat busy, rate limits
            error = f"{type(exc).__name__}: {exc}"
        with db.session() as s:
            fresh = s.get(OutboxMessage, row_id)
            if error is None:
                # a deliverer holds a message it cannot send yet (outside the 48-hour window);
                # a held message woken by the user's next message and now delivered is sent
                if result == "held":
                    outbox.hold(fresh)
                elif getattr(result, "until", None) is not None:
                    outbox.hold(fresh, result.until)
                else:
                    outbox.mark_sent(fresh)
            else:
                outbox.mark_failed(fresh, error, cfg.OUTBOX_MAX_ATTEMPTS,
                                   cfg.OUTBOX_BACKOFF_SECONDS, retry=retry)
                log.warning("outbox id=%s kind=%s attempt=%s failed: %s", row_id, kind,
                            fresh.attempts, error)
    return len(leased)


def heartbeat(app_ctx, scheduler_active: bool) -> None:
    name = f"{socket.gethostname()}:{os.getpid()}"
    with app_ctx.db.session() as s:
        row = s.get(WorkerHeartbeat, name)
        if row is None:
            row = WorkerHeartbeat(name=name)
            s.add(row)
        row.scheduler_active = scheduler_active
        row.seen_at = utcnow()


class OutboxLoop(threading.Thread):
    """Drains the outbox continuously; the app context's waker (`x.waker.wake()`, after a
    commit, in this process or another) makes it look at once, else it looks every
    OUTBOX_IDLE_SECONDS."""

    def __init__(self, app_ctx, idle_seconds: float | None = None, scheduler=None):
        super().__init__(name="huzhu-outbox", daemon=True)
        self.x = app_ctx
        self.idle = (idle_seconds if idle_seconds is not None
                     else app_ctx.cfg.values.get("OUTBOX_IDLE_SECONDS", 1.0))
        self.scheduler = scheduler
        self._halt = threading.Event()

    def stop(self) -> None:
        """Ends the loop (after the row in hand, waiting up to 2 s) and stops listening."""
        self._halt.set()
        self.x.waker.wake_here()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=2)
        self.x.waker.close()

    def run(self) -> None:
        # the OCR models load beside the loop, once per process, before the first photo
        threading.Thread(target=ocr.warm_up, name="huzhu-ocr-warm-up", daemon=True).start()
        self.x.waker.listen()  # rings of other processes (gunicorn's, the command line's)
        try:
            self._loop()
        finally:
            self.x.waker.close()

    def _loop(self) -> None:
        beat_every, since_beat = 15.0, 15.0
        while not self._halt.is_set():
            try:
                n = drain(self.x)
                since_beat += self.idle if n == 0 else 0
                if since_beat >= beat_every:
                    active = bool(self.scheduler and self.scheduler.active)
                    heartbeat(self.x, active)
                    since_beat = 0.0
            except Exception:
                log.exception("outbox drain failed")
                n = 0
            if n == 0:
                self.x.waker.wait(self.idle)

"""Running the pieces in one process: web app (waitress), outbox loop, scheduler.

`Running` is what `huzhu serve`, `huzhu demo`, the benchmarks and the tests use, so all of them
exercise the same path.
"""
from __future__ import annotations

import gc
import logging
import signal
import threading

from waitress import wasyncore
from waitress.server import create_server

from bot.web.app import AppContext, create_app
from bot.jobs.scheduler import Scheduler
from bot.outbox.worker import OutboxLoop

log = logging.getLogger("huzhu.server")


def bootstrap(x: AppContext) -> None:
    """Create or migrate the schema; an empty DRG catalogue gets the packaged CHS-DRG 1.1 list;
    with no pool at all, load the demo pool and scheme."""
    from core.files import secure_data_dir

    secure_data_dir(x.cfg.data_dir)
    x.db.upgrade()
    from core.bootstrap import ensure_catalog, ensure_demo

    ensure_catalog(x.db)
    ensure_demo(x.db)


def settle_memory() -> None:
    """For a long-running server process, once everything is loaded: what exists now (modules,
    the app, mappings, templates) is moved out of the garbage collector's sight
    (`gc.freeze`), and the young generation is collected after 20,000 allocations rather than
    700. A full collection then walks only what came since, instead of pausing every thread for
    tens of milliseconds now and then. Memory is still freed by reference counting as before."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class Running:
    """A server on host:port (port 0: any free one), with the worker and scheduler if asked."""

    def __init__(self, x: AppContext, host: str = "127.0.0.1", port: int = 0,
                 worker: bool = True, scheduler: bool = True, threads: int = 32):
        self.x = x
        self.app = create_app(x)
        self.scheduler = Scheduler(x) if scheduler else None
        self.loop = OutboxLoop(x, scheduler=self.scheduler) if worker else None
        self.server = create_server(self.app, host=host, port=port, threads=threads,
                                    connection_limit=256, channel_timeout=30)
        self.thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._trigger_lock = threading.Lock()
        self._trigger_closed = False

    @property
    def url(self) -> str:
        return f"http://{self.server.effective_host}:{self.server.effective_port}"

    def start(self) -> "Running":
        self.x.db.checkpoint_in_background()
        if self.scheduler is not None:
            self.scheduler.start()
        if self.loop is not None:
            self.loop.start()
        self.thread = threading.Thread(target=self._serve, name="huzhu-http", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.x.db.checkpoint_in_background()
        if self.scheduler is not None:
            self.scheduler.start()
        if self.loop is not None:
            self.loop.start()
        log.info("serving on %s", self.url)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        try:
            self._serve()
        finally:
            self.stop()

    def _serve(self) -> None:
        """waitress's loop, a turn at a time, so stop() can end it cleanly from any thread."""
        s = self.server
        try:
            while not self._stopping.is_set():
                s.asyncore.loop(timeout=0.2, map=s._map, use_poll=True, count=1)
        finally:
            # Requests still in hand finish first (within their reply budget): each wakes the
            # loop through the trigger as it ends, which must still be open then.
            s.task_dispatcher.shutdown(timeout=self.x.cfg.REPLY_BUDGET_SECONDS + 1)
            with self._trigger_lock:
                self._trigger_closed = True
                if s.task_dispatcher.threads:
                    # one still running would write to the trigger's file descriptor after it
                    # closed — by then perhaps another file's: the trigger is left to the
                    # process's end, only the listening socket is closed
                    wasyncore.dispatcher.close(s)
                else:
                    s.close()

    def stop(self) -> None:
        self._stopping.set()
        with self._trigger_lock:
            if not self._trigger_closed:
                self.server.trigger.pull_trigger()  # wake the loop's poll now, not at its timeout
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        if self.loop is not None:
            self.loop.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        self.app.extensions["huzhu.webhook"].close()
        self.x.db.stop_checkpointer()

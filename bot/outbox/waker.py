"""The outbox's doorbell: whoever commits outbox rows rings it, the worker's loop waits on it.

The app context is given one when it is made (bot/web/app.py `make_context`), so every adapter
reaches it the same way: `x.waker.wake()` after a commit that queued messages. Ringing with no
worker listening (a command line run, a test without one) does nothing; the worker then finds
the rows on its next look.
"""
from __future__ import annotations

import threading


class Waker:
    def __init__(self) -> None:
        self._rung = threading.Event()

    def wake(self) -> None:
        """Rows are waiting: the worker looks at once instead of at its next idle tick."""
        self._rung.set()

    def wait(self, timeout: float) -> bool:
        """Wait until rung or `timeout` seconds pass; whether it was rung."""
        rung = self._rung.wait(timeout)
        self._rung.clear()
        return rung

"""Logging: every line, tracebacks included, has ID and bank-card numbers masked."""
from __future__ import annotations

import logging
import sys

from core.crypto import scrub


class ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class StderrHandler(logging.StreamHandler):
    """Writes to standard error as it is when a line is logged, not as it was at `setup`: a
    program that swaps it later (a test capturing it, then closing its capture) keeps logging
    instead of failing on a closed file, with a traceback, at every line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup(level: str = "INFO", stream=None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for h in list(root.handlers):
        if getattr(h, "_huzhu", False):
            root.removeHandler(h)
    handler._huzhu = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    for name in ("apscheduler", "alembic", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)

"""Logging: every line, tracebacks included, has ID and bank-card numbers masked."""
from __future__ import annotations

import logging
import sys

from core.crypto import scrub


class ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup(level: str = "INFO", stream=None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
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

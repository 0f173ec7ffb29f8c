"""Areas plug in by file name, so no shared list needs editing:

- every module in `handlers/` is imported (dialogues and admin commands register themselves);
- `bot/cli_*.py` modules add sub-commands (`register(subparsers)`);
- `bot/web_*.py` modules expose a Flask blueprint `bp`;
- `bot/jobs_*.py` modules register scheduled jobs with `bot.scheduler.job`;
- `bot/deliver_*.py` modules register outbox deliverers with `bot.deliver.deliverer`.
"""
from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module
from types import ModuleType


def modules(package: str, prefix: str = "") -> list[ModuleType]:
    pkg = import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                   if m.name.startswith(prefix) and not m.name.startswith("_"))
    return [import_module(f"{package}.{name}") for name in names]


@cache
def load_handlers() -> None:
    modules("handlers")


@cache
def load_jobs() -> None:
    modules("bot", "jobs_")


@cache
def load_deliverers() -> None:
    modules("bot", "deliver_")

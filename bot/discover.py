"""Areas plug in by the package they are in, so no shared list needs editing:

- every module in `handlers/` is imported (dialogues and admin commands register themselves);
- every module in `bot/cli/` adds sub-commands (`register(subparsers)`);
- every module in `bot/web/` with a Flask blueprint `bp` has it registered by the app;
- every module in `bot/jobs/` registers scheduled jobs with `bot.jobs.scheduler.job`;
- every module in `bot/outbox/` may register outbox deliverers with `bot.outbox.deliver.deliverer`;
- every module in `bot/devtools/scenes/` is a scene of `huzhu demo`.

Modules whose name starts with `_` (`__main__`, private helpers) are left out.
"""
from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module
from types import ModuleType


def modules(package: str) -> list[ModuleType]:
    """The package's modules, imported, in file-name order."""
    pkg = import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                   if not m.name.startswith("_"))
    return [import_module(f"{package}.{name}") for name in names]


@cache
def load_handlers() -> None:
    modules("handlers")


def cli_modules() -> list[ModuleType]:
    return modules("bot.cli")


def blueprints() -> list:
    """The web modules' blueprints, the webhook's first."""
    from bot.web import webhook

    others = [m for m in modules("bot.web") if m is not webhook and hasattr(m, "bp")]
    return [webhook.bp, *(m.bp for m in others)]


@cache
def load_jobs() -> None:
    modules("bot.jobs")


@cache
def load_deliverers() -> None:
    modules("bot.outbox")


def demo_scenes() -> list[ModuleType]:
    return modules("bot.devtools.scenes")

"""The `huzhu` command line. Areas add their sub-commands in the modules of `bot/cli/`, each with
`register(subparsers)`; a command function gets the parsed args and returns an exit code."""
from __future__ import annotations

import argparse
import json
import sys

from core.config import ConfigError, load_config


def print_json(doc) -> None:
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def subcommands(sub, name: str, help: str):
    """The sub-commands of `huzhu <name>`. Several areas add to one group (`report`, `claims`),
    so the group is made by whichever module registers first and found by the others."""
    parser = sub.choices.get(name) or sub.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def app_context(args=None, migrate: bool = True):
    """Configuration, database (migrated), logging: what most commands start with."""
    from bot import logs
    from bot.web.app import make_context

    cfg = load_config()
    logs.setup(cfg.LOG_LEVEL)
    x = make_context(cfg)
    if migrate:
        x.db.upgrade()
    return x


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huzhu", description="乡村公益医疗互助 — huzhu")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from bot.discover import cli_modules

    for module in cli_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"huzhu: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

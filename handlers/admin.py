"""Administrator commands: `/命令 参数…` from a bound administrator.

Commands register with the roles that may use them; anyone else is refused, and every refusal
is written to the audit log. Usage lines and descriptions live in templates/admin_commands.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Callable

import yaml

from core.admins import AdminError, Scope, bind, record_bind_refusal, scope_of
from core.audit import audit
from core.crypto import scrub
from core.config import TEMPLATES_DIR
from core.messages import render
from core.models import AdminRole, Village
from handlers.types import Ctx, Reply

ALL_ROLES = frozenset(AdminRole)


class Refused(Exception):
    """A command cannot run for this admin or these arguments; nothing changes."""

    def __init__(self, template: str, **context):
        super().__init__(template)
        self.template = template
        self.context = context


@dataclass(frozen=True)
class Command:
    name: str  # without the slash: 待审
    roles: frozenset[AdminRole]
    run: Callable[[Ctx, Scope, list[str]], list[Reply]]
    min_args: int = 0


COMMANDS: dict[str, Command] = {}


def command(name: str, roles=ALL_ROLES, min_args: int = 0):
    def wrap(fn):
        COMMANDS[name] = Command(name, frozenset(roles), fn, min_args)
        return fn
    return wrap


@lru_cache(maxsize=1)
def usage_table() -> dict:
    with open(TEMPLATES_DIR / "admin_commands.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def usage(name: str) -> str:
    return usage_table().get(name, {}).get("usage", f"/{name}")


def parse(text: str) -> tuple[str, list[str]]:
    parts = text.strip().lstrip("/／").split()
    return (parts[0] if parts else ""), parts[1:]


def handle(ctx: Ctx, text: str) -> list[Reply]:
    name, args = parse(text)
    if name == "绑定":
        return _bind(ctx, args)
    return dispatch(ctx, name, args)


def dispatch(ctx: Ctx, name: str, args: list[str]) -> list[Reply]:
    """Run the command `name` with its arguments for ctx.openid: the role check, the command,
    and the audit row of a refusal. The chat and the web console (bot/web/console) both come
    through here, so a decision has one code path."""
    scope = scope_of(ctx.session, ctx.openid)
    cmd = COMMANDS.get(name)
    if not scope.is_admin:
        return _refuse(ctx, "not_admin", name, args)
    if cmd is None:
        return [Reply(render("admin_unknown", name=name, commands=_visible(scope)))]
    if not (scope.roles & cmd.roles):
        return _refuse(ctx, "role", name, args)
    if len(args) < cmd.min_args:
        return [Reply(render("admin_usage", usage=usage(name)))]
    try:
        return cmd.run(ctx, scope, args)
    except Refused as r:
        audit(ctx.session, ctx.openid, "admin.refused", "command", name, None,
              {"args": [scrub(a) for a in args], "why": r.template})
        return [Reply(render(r.template, **r.context))]


def _refuse(ctx: Ctx, why: str, name: str, args: list[str]) -> list[Reply]:
    audit(ctx.session, ctx.openid, "admin.refused", "command", name, None,
          {"args": [scrub(a) for a in args], "why": why})
    return [Reply(render("admin_refused", why=why, name=name))]


def _visible(scope: Scope) -> list[dict]:
    table = usage_table()
    rows = [{"usage": "/帮助", "summary": table["帮助"]["summary"]}]
    for name, cmd in COMMANDS.items():
        if name != "帮助" and scope.roles & cmd.roles:
            rows.append({"usage": usage(name), "summary": table.get(name, {}).get("summary", "")})
    return rows


def _bind(ctx: Ctx, args: list[str]) -> list[Reply]:
    if len(args) != 1:
        return [Reply(render("admin_usage", usage=usage("绑定")))]
    try:
        grant = bind(ctx.session, ctx.openid, args[0], ctx.now)
    except AdminError as e:
        # the audit log keeps which (wrong, used, expired); the user hears one answer
        record_bind_refusal(ctx.session, ctx.openid, e, ctx.now)
        until = e.details.get("until")
        if until is not None:  # shown to the minute, rounded up: the lock is over by then
            until = (until + timedelta(seconds=59, microseconds=999999)).replace(
                second=0, microsecond=0)
        return [Reply(render("admin_bind_refused", code=e.code,
                             until=until.astimezone(ctx.now.tzinfo) if until else None,
                             everyone=e.details.get("everyone", False)))]
    scope = scope_of(ctx.session, ctx.openid)
    where = ctx.session.get_one(Village, grant.village_id).full_name if grant.village_id else None
    return [Reply(render("admin_bound", role=grant.role.value, where=where,
                         commands=_visible(scope)))]


@command("帮助")
def _help(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    return [Reply(render("admin_help", commands=_visible(scope)))]

"""`/后台 [退出]`: a one-time link (10 minutes) that signs the administrator in to the web
console at PUBLIC_URL/admin/; `/后台 退出` ends every console session of the administrator.
Every role may use it, the read-only auditor too (core/console.py)."""
from __future__ import annotations

from core.admins import Scope
from core.console import LINK_MINUTES, end_sessions, issue_link
from core.messages import render
from handlers.admin import ALL_ROLES, command, usage
from handlers.types import Ctx, Reply

LOGOUT = "退出"


@command("后台", roles=ALL_ROLES)
def console_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    if args and args != [LOGOUT]:
        return [Reply(render("admin_usage", usage=usage("后台")))]
    if args:
        n = end_sessions(ctx.session, ctx.openid, ctx.openid, "chat")
        return [Reply(render("console_logout", sessions=n))]
    token = issue_link(ctx.session, ctx.openid)
    url = f"{ctx.cfg.PUBLIC_URL.rstrip('/')}/admin/login/{token}"
    return [Reply(render("console_link", url=url, minutes=LINK_MINUTES))]

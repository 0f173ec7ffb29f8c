"""`/待通知`: the households of this administrator's villages not told of a decided claim within
24 hours (core/notify.py `untold`), and the notice channels' refusals of the last week."""
from __future__ import annotations

from core.admins import Scope
from core.audit import audit
from core.messages import render
from core.models import AdminRole
from core.notify import untold
from handlers.admin import command
from handlers.types import Ctx, Reply

ROLES = frozenset({AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super,
                   AdminRole.reviewer})
SHOWN = 20


@command("待通知", roles=ROLES)
def untold_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    found = untold(ctx.session, scope)
    items = found["items"]
    audit(ctx.session, ctx.openid, "notice.untold", "household", None, None,
          {"total": len(items), "shown": [i["household"] for i in items[:SHOWN]]})
    refusals = sorted(found["refusals"].items(), key=lambda kv: -kv[1])
    return [Reply(render("notices_untold", items=items[:SHOWN], total=len(items),
                         refusals=[{"channel": c, "code": code, "count": n}
                                   for (c, code), n in refusals]))]

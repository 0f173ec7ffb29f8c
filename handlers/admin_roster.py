"""`/管理员` (super administrators): the list of administrators, and `/管理员 撤销 <openid>` to
withdraw one's grants. Openids are shown masked; revoking takes the full openid or the masked
form as listed. The listing and every revocation are audited (core/admins.py)."""
from __future__ import annotations

from sqlalchemy import select

from core.admins import (AdminError, Scope, administrators, find_admin, mask_openid,
                         revoke_admin)
from core.audit import audit
from core.messages import render
from core.models import AdminRole, Pool
from handlers.admin import Refused, command, usage
from handlers.types import Ctx, Reply

REVOKE = "撤销"


def _people(ctx: Ctx, rows: list[dict]) -> list[dict]:
    """Grants grouped by administrator, scopes in words."""
    pools = dict(ctx.session.execute(select(Pool.code, Pool.name)).all())
    people: dict[str, dict] = {}
    for r in rows:
        person = people.setdefault(r["openid"], {"masked": mask_openid(r["openid"]),
                                                 "me": r["openid"] == ctx.openid,
                                                 "grants": [], "since": r["bound_at"]})
        scope = r["scope"]
        where = None if scope == "all" else pools.get(scope) or scope.split("/", 1)[-1]
        person["grants"].append({"role": r["role"], "where": where})
        person["since"] = min(person["since"], r["bound_at"])
    return list(people.values())


@command("管理员", roles={AdminRole.super})
def _roster(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    if not args:
        rows = administrators(ctx.session)
        audit(ctx.session, ctx.openid, "admin.list", "admin_grant", None, None,
              {"grants": len(rows), "via": "chat"})
        return [Reply(render("admin_list", people=_people(ctx, rows)))]
    if args[0] != REVOKE or len(args) != 2:
        return [Reply(render("admin_usage", usage=usage("管理员")))]
    try:
        openid = find_admin(ctx.session, args[1])
    except AdminError as e:
        raise Refused("admin_revoke_refused", code=e.code, target=args[1][:40])
    if openid == ctx.openid:
        raise Refused("admin_revoke_refused", code="self", target=args[1][:40])
    removed = revoke_admin(ctx.session, ctx.openid, openid)
    return [Reply(render("admin_revoked", masked=mask_openid(openid),
                         people=_people(ctx, removed)))]

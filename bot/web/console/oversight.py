"""Oversight: the month's disclosure as the groups will see it, before it goes; the audit log,
filterable (super administrators and auditors of every pool); the administrators (super: list,
invite with the code shown once, revoke through the chat's `/管理员 撤销`)."""
from __future__ import annotations

from flask import request
from sqlalchemy import select

from bot.web.console import bp
from bot.web.console.common import db, g, not_found, noted, page, run_command, today
from core import console_queries as cq
from core.admins import AdminError, administrators, create_invite, mask_openid
from core.audit import audit
from core.disclosure import (DisclosureError, build, for_village, last_published,
                             markdown_parts, previous_month)
from core.models import AdminRole, Pool, Village


@bp.get("/disclosure")
def disclosure():
    pools = g.who.scope.pools(db())
    code = request.args.get("pool", "")
    pool = next((p for p in pools if p.code == code), None) if code else \
        (pools[0] if pools else None)
    if pool is None:
        return not_found()
    month = request.args.get("month", "") or previous_month(today())
    villages = [v for v in g.who.scope.villages(db()) if v.pool_id == pool.id]
    try:
        data = build(db(), pool.id, month)
    except (DisclosureError, ValueError):
        return noted("month_bad", 400, link="/admin/disclosure")
    vid = request.args.get("village", "")
    village = next((v for v in villages if str(v.id) == vid), villages[0] if villages else None)
    shown = for_village(data, village.full_name) if village else data
    last = last_published(db(), pool, month)
    return page("disclosure.html", pool=pool, pools=pools, month=month, villages=villages,
                village=village, parts=markdown_parts(shown), data=data, last=last)


@bp.get("/audit")
def audit_log():
    if not g.who.scope.everything or not (g.who.scope.roles & {AdminRole.super,
                                                                AdminRole.auditor}):
        return not_found()
    a = request.args
    try:
        offset = max(int(a.get("offset", 0)), 0)
    except ValueError:
        offset = 0
    listing = cq.audit_log(db(), a.get("actor", "").strip()[:64], a.get("action", "").strip()[:64],
                           a.get("entity_id", "").strip()[:64], offset=offset)
    return page("audit.html", listing=listing, actor=a.get("actor", ""),
                action=a.get("action", ""), entity_id=a.get("entity_id", ""), mask=mask_openid)


def _admins_page(result: str | None = None, code: str | None = None, http: int = 200):
    rows = administrators(db())
    pools = list(db().scalars(select(Pool).order_by(Pool.id)))
    villages = list(db().scalars(select(Village).order_by(Village.id)))
    audit(db(), g.who.openid, "admin.list", "admin_grant", None, None,
          {"grants": len(rows), "via": "console"})
    return page("administrators.html", http=http, rows=rows, pools=pools,
                villages=villages, result=result, code=code, mask=mask_openid)


def _super() -> bool:
    return AdminRole.super in g.who.scope.roles


@bp.get("/administrators")
def admins():
    if not _super():
        return not_found()
    return _admins_page()


@bp.post("/administrators/invite")
def invite():
    if not _super():
        return not_found()
    f = request.form
    role = f.get("role", "")
    where = f.get("where", "")
    pool = village = None
    if where.startswith("pool:"):
        pool = where[5:]
    elif where.startswith("village:"):
        village = where[8:]
    try:
        code = create_invite(db(), role, g.who.openid, village=village, pool=pool)
    except AdminError as e:
        return _admins_page(result=e.code, http=400)
    return _admins_page(code=code)


@bp.post("/administrators/revoke")
def revoke():
    if not _super():
        return not_found()
    target = request.form.get("openid", "").strip()
    return _admins_page(result=run_command("管理员", ["撤销", target]))

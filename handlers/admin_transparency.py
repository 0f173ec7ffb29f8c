"""Administrator commands of the transparency area: `/公告 <text>` (to the sender's villages'
group chats and followers, after a preview and `确认`) and `/统计` (participation per village,
claims by status, fund balance)."""
from __future__ import annotations

from core import ledger
from core.admins import Scope, scope_of
from core.groups import announce, reach
from core.grouptext import plain
from core.messages import render
from core.models import AdminRole
from core import scheme_years
from core.stats import claims_by_status, participation
from handlers.admin import ALL_ROLES, Refused, command
from handlers.dialogue import Dialogue, register, say, start
from handlers.types import Ctx, Incoming, Reply

ANNOUNCE_ROLES = frozenset({AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super})
ANNOUNCE_MAX = 500  # characters
CONFIRM = "确认"
STATS_VILLAGES = 30  # villages listed per pool in /统计


def _signer(ctx: Ctx, scope: Scope) -> str:
    if scope.everything or scope.pool_ids:
        pools = scope.pools(ctx.session)
        return "、".join(p.name for p in pools[:3]) + "互助基金"
    return "、".join(v.name for v in scope.villages(ctx.session)[:3]) + "互助管理员"


def _targets(ctx: Ctx, scope: Scope) -> list[dict]:
    return [r for r in reach(ctx.session, scope.villages(ctx.session))
            if r["groups"] or r["followers"]]


@command("公告", roles=ANNOUNCE_ROLES, min_args=1)
def _announce(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    typed = ctx.route.command_text if ctx.route is not None else ""
    text = (typed or " ".join(args)).strip()
    if len(text) > ANNOUNCE_MAX:
        raise Refused("announce_too_long", length=len(text), limit=ANNOUNCE_MAX)
    typed, text = text, plain(text)  # the preview shows what the groups will read
    if not text:
        raise Refused("announce_empty")
    targets = _targets(ctx, scope)
    if not targets:
        raise Refused("announce_nowhere")
    msg = Incoming(openid=ctx.openid, kind="text", text="/公告")
    return start(ctx, ANNOUNCE, msg, {"text": text, "changed": text != typed})


def _preview(ctx: Ctx, msg: Incoming, data: dict):
    scope = scope_of(ctx.session, ctx.openid)
    return say(render("announce_preview", text=data["text"], changed=data.get("changed", False),
                      targets=_targets(ctx, scope),
                      signer=_signer(ctx, scope)), state="confirm", data=data)


def _confirm(ctx: Ctx, msg: Incoming, data: dict):
    if msg.text.strip() != CONFIRM:
        return say(render("announce_confirm_again"), state="confirm", data=data)
    scope = scope_of(ctx.session, ctx.openid)
    if not scope.roles & ANNOUNCE_ROLES:  # the grant was withdrawn meanwhile
        return say(render("admin_refused", why="role", name="公告"))
    targets = _targets(ctx, scope)
    if not targets:
        return say(render("announce_nowhere"))
    result = announce(ctx.session, ctx.openid, [t["village"] for t in targets], data["text"],
                      _signer(ctx, scope))
    return say(render("announce_sent", r=result, targets=targets))


ANNOUNCE = register(Dialogue("announce", _preview, {"confirm": _confirm}))


@command("统计", roles=ALL_ROLES)
def _stats(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    if AdminRole.auditor in scope.roles:  # reads its pool, or every pool
        from core.console import read_scope

        scope = read_scope(ctx.session, ctx.openid)
    pools = []
    for pool in scope.pools(ctx.session):
        whole = scope.covers_pool(pool.id)
        village_ids = None if whole else scope.village_ids
        year = scheme_years.for_report(ctx.session, pool.id, ctx.today)
        villages = participation(ctx.session, pool.id, year.id if year else None, village_ids)
        claims = claims_by_status(ctx.session, pool.id, year.id if year else None, village_ids)
        pools.append({"pool": pool, "year": year, "villages": villages[:STATS_VILLAGES],
                      "more": max(len(villages) - STATS_VILLAGES, 0),
                      "persons": sum(v["persons"] for v in villages),
                      "paid": sum(v["persons_paid"] for v in villages),
                      "claims": claims, "balance_fen": ledger.balance(ctx.session, pool.id),
                      "whole": whole})
    if not pools:
        raise Refused("announce_nowhere")
    return [Reply(render("fund_admin_stats", pools=pools))]

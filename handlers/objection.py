"""Objections (异议): `异议 <claim> <reason>` from an enrolled member while a claim is in its
objection window, and the reviewer's `/异议处理 <claim> 不成立|成立 <reason_code> [text]`.
The rules are in core/objections.py."""
from __future__ import annotations

from core import objections
from core.adjudication import REASONS
from core.admins import Scope
from core.messages import render
from core.models import AdminRole, Claim
from handlers.admin import Refused, command
from handlers.dialogue import Dialogue, register, say
from handlers.types import Ctx, Incoming, Reply

WORD = "异议"
NOT_UPHELD = ("不成立", "驳回", "维持")  # the objection is unfounded: the claim stands
UPHELD = ("成立",)  # the objection is right: the claim is rejected


def _entry(ctx: Ctx, msg: Incoming, data: dict):
    parts = msg.text.split(maxsplit=2)
    if len(parts) < 2 or parts[0] != WORD:
        return say(render("objection_usage"))
    number = parts[1]
    reason = parts[2] if len(parts) > 2 else ""
    try:
        row = objections.raise_objection(ctx.session, ctx.openid, number, reason, ctx.today)
    except objections.ObjectionError as e:
        return say(render("objection_refused", code=e.code, **{"number": number.upper(),
                                                               **e.details}))
    return say(render("objection_received", claim=ctx.session.get(Claim, row.claim_id)))


register(Dialogue("objection", _entry, {}, words=(WORD,)))


@command("异议处理", roles={AdminRole.reviewer, AdminRole.pool_admin, AdminRole.super},
         min_args=2)
def _resolve(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    number, decision = args[0].upper(), args[1]
    claim = objections.find_claim(ctx.session, number)
    if claim is None:
        raise Refused("objection_admin_refused", code="no_claim", number=number)
    if not scope.covers_pool(claim.household.pool_id):
        raise Refused("objection_admin_refused", code="scope", number=number)
    if decision in UPHELD:
        upheld, code = True, (args[2] if len(args) > 2 else None)
        note = " ".join(args[3:]) or None
    elif decision in NOT_UPHELD:
        upheld, code, note = False, None, " ".join(args[2:]) or None
    else:
        raise Refused("objection_admin_refused", code="bad_decision", number=number)
    try:
        rows = objections.resolve(ctx.session, claim, upheld, ctx.openid, code, note)
    except objections.ObjectionError as e:
        raise Refused("objection_admin_refused", code=e.code, **{"number": number, **e.details})
    return [Reply(render("objection_resolved_admin", claim=claim, count=len(rows),
                         upheld=upheld, reason=REASONS.get(code) if code else None))]

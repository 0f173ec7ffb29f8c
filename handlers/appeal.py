"""Appeals (复核): `复核 <claim> <reason>` from the household, or a plain reply after a rejection
(asked once to confirm: an appeal can be made only once), and the reviewer's
`/复核 <claim> 维持 [说明]` | `/复核 <claim> 改判`. The rules are in core/appeals.py."""
from __future__ import annotations

from core import appeals
from core.admins import Scope
from core.crypto import mask_name
from core.messages import render
from core.models import AdminRole
from core.review import ReviewError, calculation_line, find_claim, reason_title
from handlers.admin import Refused, command, usage
from handlers.dialogue import Dialogue, Step, register, say
from handlers.types import Ctx, Incoming, Reply

DECIDE_ROLES = frozenset({AdminRole.reviewer, AdminRole.pool_admin, AdminRole.super})
YES = ("1", "确认", "是", "申请复核", "复核")


def _file(ctx: Ctx, number: str, reason: str) -> Step:
    try:
        claim = appeals.file_appeal(ctx.session, ctx.openid, number, reason, ctx.today,
                                    ctx.cfg.tz)
    except appeals.AppealError as e:
        return say(render("appeal_refused", code=e.code,
                          **{"number": number.strip().upper(), **e.details}))
    return say(render("appeal_filed", claim=claim, member=mask_name(claim.member.name)))


def _entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    parts = msg.text.split(maxsplit=2)
    if len(parts) < 2 or parts[0] != appeals.WORD:
        return say(render("appeal_refused", code="usage"))
    return _file(ctx, parts[1], parts[2] if len(parts) > 2 else "")


def _confirm(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if msg.kind != "image" and msg.text in YES:
        return _file(ctx, data["claim"], data["reason"])
    if msg.text.startswith(appeals.WORD + " "):  # the full command instead of 1
        return _entry(ctx, msg, {})
    return say(render("appeal_ask_again", claim={"number": data["claim"]}),
               state="confirm", data=data)


def _catch(ctx: Ctx, msg: Incoming, data: dict) -> Step | None:
    """A text the menu does not know, from a household with a rejected claim still open to
    appeal: the reply the rejection message asked for. The household is asked to confirm it
    as the appeal (the text is its reason); None when there is no such claim."""
    if (msg.kind not in ("text", "voice") or len(msg.text) < appeals.REASON_MIN
            or ctx.may_appeal is False):  # the webhook read with the sender: no such claim
        return None
    claim = appeals.answerable_claim(ctx.session, ctx.openid, ctx.today, ctx.cfg.tz)
    if claim is None:
        return None
    try:
        reason = appeals.clean_reason(msg.text)
    except appeals.AppealError:
        return None
    return say(render("appeal_ask", claim=claim, member=mask_name(claim.member.name),
                      reason=reason), state="confirm",
               data={"claim": claim.number, "reason": reason})


register(Dialogue("appeal", _entry, {"confirm": _confirm}, words=(appeals.WORD,),
                  catch=_catch))


# ---------------------------------------------------------------------------------------------
# The reviewer's side

def _refused(code: str, number: str | None = None, **details) -> Refused:
    return Refused("appeal_admin_refused", code=code, number=number, usage=usage("复核"),
                   status=details.pop("status", None), **details)


@command("复核", roles=DECIDE_ROLES, min_args=2)
def decide_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    try:
        claim = find_claim(ctx.session, args[0], lock=True)
    except ReviewError:
        raise Refused("review_unknown_claim", number=args[0].strip().upper(),
                      usage=usage("复核"), name="复核", code="unknown_claim")
    if not scope.covers_pool(claim.household.pool_id):
        raise Refused("review_out_of_scope", number=claim.number)
    word = args[1]
    if word not in appeals.KEEP + appeals.REOPEN:
        raise _refused("usage", claim.number)
    keep = word in appeals.KEEP
    note = " ".join(args[2:]).strip() or None
    try:
        decision = appeals.decide_appeal(ctx.session, claim, keep, note, ctx.openid, ctx.today)
    except appeals.AppealError as e:
        raise _refused(e.code, claim.number, **{k: v for k, v in e.details.items()
                                                 if k != "number"})
    except ReviewError as e:  # the rule could not run (no scheme year for the stay)
        raise _refused(e.code, claim.number)
    return [Reply(render("appeal_admin_done", claim=claim, keep=keep, decision=decision,
                         calculation=calculation_line(claim.trace or []),
                         titles=[reason_title(c) for c in (decision.reasons if decision
                                                           else [])]))]


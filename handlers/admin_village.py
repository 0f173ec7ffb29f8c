"""The village's confirmations: `/确认登记 <户号> [<成员序号> <类别> …]` (a chat sign-up under
enrolment.village_confirms) and `/确认申请 <申请号>` (an uninsured member's claim under
claims.uninsured_via_village). Village administrators for their villages, pool and super
administrators for theirs; a refusal is audited by handlers.admin and changes nothing. The
rules are in core/confirmations.py."""
from __future__ import annotations

from sqlalchemy import select

from core import confirmations
from core.admins import Scope
from core.crypto import mask_name
from core.messages import render
from core.models import AdminRole, Claim, Household
from handlers.admin import Refused, command, usage
from handlers.types import Ctx, Reply

ROLES = frozenset({AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super})


def _refused(name: str, e_or_code, **details) -> Refused:
    if isinstance(e_or_code, confirmations.ConfirmError):
        code, details = e_or_code.code, {**e_or_code.details, **details}
    else:
        code = e_or_code
    return Refused("village_confirm_refused", code=code, usage=usage(name),
                   **{"household": None, "number": None, "allowed": [], "count": 0,
                      "value": "", "status": None, **details})


@command("确认登记", roles=ROLES, min_args=1)
def confirm_household(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    number = args[0].strip().upper()
    household = ctx.session.scalar(select(Household).where(Household.number == number)
                                   .with_for_update())
    if household is None:
        raise _refused("确认登记", "no_household", household=number)
    if not scope.covers_village(household.village):
        raise _refused("确认登记", "scope", household=household.number)
    try:
        done = confirmations.confirm_household(ctx.session, household, args[1:], ctx.openid)
    except confirmations.ConfirmError as e:
        raise _refused("确认登记", e, household=household.number)
    return [Reply(render("village_confirmed_household", household=household, **done))]


@command("确认申请", roles=ROLES, min_args=1)
def confirm_claim(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    number = args[0].strip().upper()
    claim = ctx.session.scalar(select(Claim).where(Claim.number == number).with_for_update())
    if claim is None:
        raise Refused("review_unknown_claim", number=number, usage=usage("确认申请"))
    if not scope.covers_village(claim.household.village):
        raise _refused("确认申请", "claim_scope", number=claim.number)
    try:
        confirmations.confirm_claim(ctx.session, claim, ctx.openid, ctx.today)
    except confirmations.ConfirmError as e:
        raise _refused("确认申请", e)
    return [Reply(render("village_confirmed_claim", claim=claim,
                         member=mask_name(claim.member.name)))]

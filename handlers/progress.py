"""`4 查询进度`: each claim of the household with its status, the amount once decided and the
next step (SPEC "Progress")."""
from __future__ import annotations

from core.claims import progress
from core.households import household_for_user
from core.messages import render
from handlers.dialogue import Dialogue, register, say
from handlers.types import Ctx, Incoming


def _entry(ctx: Ctx, msg: Incoming, data: dict):
    household = household_for_user(ctx.session, ctx.openid)
    if household is None:
        return say(render("claim_progress_no_household"))
    items, total = progress(ctx.session, household)
    return say(render("claim_progress", items=items, total=total))


register(Dialogue("progress", _entry, {}))

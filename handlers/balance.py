"""`5 查询余额`: per member, the enrolment status for the current scheme year and the annual cap
left; the household's subsidies paid this year (SPEC "Villager dialogue")."""
from __future__ import annotations

from core.households import household_for_user
from core.messages import render
from core import scheme_years
from core.stats import household_balance
from handlers.dialogue import Dialogue, register, say
from handlers.types import Ctx, Incoming


def _entry(ctx: Ctx, msg: Incoming, data: dict):
    household = (household_for_user(ctx.session, ctx.openid)
                 if ctx.has_household is not False else None)
    if household is None:
        return say(render("balance_no_household"))
    year = scheme_years.for_report(ctx.session, household.pool_id, ctx.today)
    b = household_balance(ctx.session, household, year)
    return say(render("balance_summary", b=b, year=year, household=household,
                      running=year is not None and year.start <= ctx.today <= year.end))


register(Dialogue("balance", _entry, {}))

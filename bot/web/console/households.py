"""Households: search by household number, village or masked name; a household's members,
enrolments, payments and claims (names and ID numbers masked as in chat)."""
from __future__ import annotations

from flask import request
from sqlalchemy import select

from bot.web.console import bp
from bot.web.console.common import db, g, not_found, page
from core import console_queries as cq
from core.audit import audit
from core.models import (Claim, Enrolment, Household, Member, Payment, PaymentOrder, SchemeYear)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@bp.get("/households")
def households():
    scope = g.who.scope
    villages = cq.village_choices(db(), scope)
    village_id = _int(request.args.get("village"))
    if village_id is not None and village_id not in {v.id for v in villages}:
        return not_found()
    text = request.args.get("q", "").strip()[:32]
    listing = cq.households(db(), scope, text, village_id,
                            offset=max(_int(request.args.get("offset")) or 0, 0))
    return page("households.html", listing=listing, villages=villages, village_id=village_id,
                q=text)


@bp.get("/households/<number>")
def household(number: str):
    hh = db().scalar(select(Household).where(Household.number == number.upper()))
    if hh is None or not g.who.scope.covers_village(hh.village):
        return not_found()
    enrolments = db().execute(
        select(Enrolment, SchemeYear, Member.id)
        .join(SchemeYear, SchemeYear.id == Enrolment.scheme_year_id)
        .join(Member, Member.id == Enrolment.member_id)
        .where(Member.household_id == hh.id).order_by(SchemeYear.start.desc(), Member.id)).all()
    payments = db().execute(
        select(Payment, PaymentOrder).outerjoin(PaymentOrder, PaymentOrder.id == Payment.order_id)
        .where(Payment.household_id == hh.id).order_by(Payment.id.desc())).all()
    claims = list(db().scalars(select(Claim).where(Claim.household_id == hh.id)
                               .order_by(Claim.id.desc())))
    audit(db(), g.who.openid, "household.view", "household", hh.number, None,
          {"via": "console"})
    return page("household.html", hh=hh, enrolments=enrolments, payments=payments,
                claims=claims, names={m.id: m.name for m in hh.members})

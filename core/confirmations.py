"""What waits for the village administrator (Tangqiao: "具体参加人员由各村、居确认"; Anji: the
uninsured "需到所在村（社区）…办理"):

- a household signed up in chat under `enrolment.village_confirms: true` (`Household.
  awaits_village`): it may not pay (core.payments refuses `awaits_village`) until the village
  sends `/确认登记 <户号> [<成员序号> <类别> …]`, which may set members' categories (低保, 特困, …;
  an excluded category leaves that member out of the order, core.payments.quote);
- an uninsured member's claim under `claims.uninsured_via_village: true` (`Claim.
  awaits_village`): submitted, but out of /待审 and the review reminders until the village sends
  `/确认申请 <申请号>`; its review is due in the review working days from then.

The village's administrators are asked (outbox) when something starts to wait; the household is
told when it is confirmed. Each function works in the caller's transaction and raises
`ConfirmError` before changing anything.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox
from core.audit import audit
from core.crypto import mask_name
from core.errors import DomainError
from core.messages import render
from core.models import (AdminGrant, AdminRole, Claim, ClaimStatus as S, Enrolment,
                         EnrolmentStatus, Household, InsuranceType, Member, SchemeYear)
from core.notify import notify_household

NO_CATEGORY = "无"


class ConfirmError(DomainError, ValueError):
    """A refusal with a stable code; templates/messages/village_confirm_refused.j2 words it."""


def village_admins(session: Session, household: Household) -> list[str]:
    """The village's administrators; with none, the pool's administrators and the supers."""
    openids = list(dict.fromkeys(session.scalars(
        select(AdminGrant.openid).where(AdminGrant.role == AdminRole.village_admin,
                                        AdminGrant.village_id == household.village_id)
        .order_by(AdminGrant.id))))
    if openids:
        return openids
    return list(dict.fromkeys(session.scalars(
        select(AdminGrant.openid).where(
            (AdminGrant.role == AdminRole.super)
            | ((AdminGrant.role == AdminRole.pool_admin)
               & (AdminGrant.pool_id == household.pool_id)))
        .order_by(AdminGrant.id))))


def categories(year: SchemeYear) -> list[str]:
    c = year.scheme.contribution
    return [NO_CATEGORY, *c.subsidized, *c.excluded]


def _pending_year(session: Session, household: Household) -> SchemeYear | None:
    """The scheme year of the household's pending enrolments (the newest)."""
    return session.scalar(
        select(SchemeYear).join(Enrolment, Enrolment.scheme_year_id == SchemeYear.id)
        .join(Member, Enrolment.member_id == Member.id)
        .where(Member.household_id == household.id,
               Enrolment.status == EnrolmentStatus.pending)
        .order_by(SchemeYear.start.desc()).limit(1))


def waiting(session: Session, scope, limit: int = 10) -> dict:
    """What waits for the village within an administrator's scope (core.admins.Scope), oldest
    first: {households: [number], claims: [number], more: int} for /待审."""
    from sqlalchemy import func, or_

    def within(q):
        if scope.everything:
            return q
        return q.where(or_(Household.pool_id.in_(scope.pool_ids),
                           Household.village_id.in_(scope.village_ids)))

    # `WHERE awaits_village`, not `IS true`: PostgreSQL then reads the partial indexes
    # ix_household_awaits_village and ix_claim_awaits_village (migration scaleq_01)
    hq = within(select(Household.number).where(Household.awaits_village))
    cq = within(select(Claim.number).join(Household, Claim.household_id == Household.id)
                .where(Claim.awaits_village, Claim.status == S.submitted))
    households = list(session.scalars(hq.order_by(Household.id).limit(limit)))
    claims = list(session.scalars(cq.order_by(Claim.id).limit(limit)))
    total = (session.scalar(select(func.count()).select_from(hq.subquery()))
             + session.scalar(select(func.count()).select_from(cq.subquery())))
    return {"households": households, "claims": claims,
            "more": total - len(households) - len(claims)}


# ---------------------------------------------------------------------------------------------
# Households: /确认登记

def ask_village_to_confirm(session: Session, household: Household, year: SchemeYear) -> None:
    """Tell the village's administrators a household waits for /确认登记."""
    session.flush()
    c = year.scheme.contribution
    text = render("village_confirm_household", household=household,
                  members=[{"name": mask_name(m.name), "relation": m.relation.value,
                            "insurance": m.insurance.value, "category": m.category}
                           for m in household.members],
                  subsidized=list(c.subsidized), excluded=list(c.excluded))
    for openid in village_admins(session, household):
        outbox.send_text(session, openid, text)


def parse_assignments(args: list[str], household: Household,
                      year: SchemeYear) -> dict[int, str | None]:
    """`<成员序号> <类别> …` → {member index (1-based): category or None for 无}."""
    allowed = categories(year)
    if len(args) % 2:
        raise ConfirmError("pairs", allowed=allowed, count=len(household.members))
    found: dict[int, str | None] = {}
    for number, category in zip(args[0::2], args[1::2]):
        if not number.isdigit() or not 1 <= int(number) <= len(household.members):
            raise ConfirmError("bad_index", value=number[:8], count=len(household.members),
                               allowed=allowed)
        if category not in allowed:
            raise ConfirmError("unknown_category", value=category[:12], allowed=allowed,
                               count=len(household.members))
        found[int(number)] = None if category == NO_CATEGORY else category
    return found


def confirm_household(session: Session, household: Household, args: list[str],
                      actor: str) -> dict:
    """/确认登记: set the named members' categories and let the household pay. Returns what the
    reply shows: {members, due_fen, excluded}."""
    from core.households import personal_due_fen

    if not household.awaits_village:
        raise ConfirmError("household_not_waiting", household=household.number)
    year = _pending_year(session, household)
    if year is None:
        raise ConfirmError("household_not_waiting", household=household.number)
    assignments = parse_assignments(args, household, year)
    members = list(household.members)
    before = {i: m.category for i, m in enumerate(members, 1)}
    for index, category in assignments.items():
        members[index - 1].category = category
    household.awaits_village = False
    contribution = year.scheme.contribution
    joining = [m for m in members if contribution.may_join(m.category)]
    excluded = [mask_name(m.name) for m in members if not contribution.may_join(m.category)]
    due = personal_due_fen(year.scheme, joining)
    audit(session, actor, "household.village_confirmed", "household", household.number,
          {"awaits_village": True, "categories": {str(i): c for i, c in before.items()
                                                  if i in assignments}},
          {"awaits_village": False,
           "categories": {str(i): c for i, c in assignments.items()},
           "scheme_year_id": year.id, "personal_due_fen": due})
    view = [{"name": mask_name(m.name), "category": m.category,
             "joins": contribution.may_join(m.category)} for m in members]
    notify_household(session, household.id, "signup_village_confirmed", household=household,
                     members=view, due=due, closes=year.enrolment_closes)
    session.flush()
    return {"members": view, "due_fen": due, "excluded": excluded}


# ---------------------------------------------------------------------------------------------
# Claims: /确认申请

def needs_village(session: Session, claim: Claim) -> bool:
    """An uninsured member's claim under a scheme with claims.uninsured_via_village."""
    from core import scheme_years

    if claim.member.insurance is not InsuranceType.uninsured:
        return False
    year = scheme_years.of_claim(session, claim)
    return year is not None and year.scheme.claims.uninsured_via_village


def hold_for_village(session: Session, claim: Claim) -> None:
    """At the first submission: the claim waits for /确认申请; the village is asked."""
    claim.awaits_village = True
    audit(session, claim.created_by or "system", "claim.awaits_village", "claim", claim.number,
          None, {"awaits_village": True})
    text = render("village_confirm_claim", claim=claim, member=mask_name(claim.member.name))
    for openid in village_admins(session, claim.household):
        outbox.send_text(session, openid, text)


def confirm_claim(session: Session, claim: Claim, actor: str, today: date) -> Claim:
    """/确认申请: the claim enters review, due in the review working days from today."""
    from core.claims import review_days
    from core.workdays import review_due_date

    if not claim.awaits_village:
        raise ConfirmError("claim_not_waiting", number=claim.number, status=claim.status.value)
    if claim.status is not S.submitted:
        raise ConfirmError("claim_not_waiting", number=claim.number, status=claim.status.value)
    before = claim.due_date.isoformat() if claim.due_date else None
    claim.awaits_village = False
    claim.due_date = review_due_date(today, review_days(session, claim))
    audit(session, actor, "claim.village_confirmed", "claim", claim.number,
          {"awaits_village": True, "due_date": before},
          {"awaits_village": False, "due_date": claim.due_date.isoformat()})
    notify_household(session, claim.household_id, "claim_village_confirmed", claim=claim,
                     member=mask_name(claim.member.name))
    session.flush()
    return claim

"""Appeals (复核): a household asks for a second look at a rejected claim, a reviewer decides.

- `file_appeal(session, openid, number, reason, today, tz)`: `复核 <claim> <reason>` from a user
  linked to the claim's household, within the scheme's `claims.appeal_days` of the rejection,
  once per claim: `rejected` → `appealed`, due again in the scheme's review working days; the
  pool's reviewers are told, the household's other users too.
- `answerable_claim(session, openid, today, tz)`: the household's rejected claim a plain reply
  may be about (the rejection message asks the household to reply): the newest one still in its
  window and never appealed, or None.
- `decide_appeal(session, claim, keep, note, actor, today)`: `/复核 <claim> 维持 [说明]` keeps the
  rejection (`rejected`); `/复核 <claim> 改判` runs the rule again on the recorded facts, the
  reviewer's own rejection (an exclusion, documents, fraud) set aside → `in_review` with the new
  computed decision (or, with no facts recorded, `in_review` waiting for a `/核定`). Where the
  pool has another reviewer, the one who rejected the claim may not decide its appeal.

The household hears the outcome through `tell_household` (one place, template
`appeal_decided`). Each function works in the caller's transaction and raises `AppealError`
(a stable code and its details) before changing anything.
"""
from __future__ import annotations

import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox, scheme_years
from core.adjudication import Decision
from core.claims import review_days, transition
from core.crypto import mask_name, scrub, scrub_phones
from core.defaults import APPEAL_DAYS, REASON_MAX
from core.errors import DomainError
from core.messages import render
from core.models import Claim, ClaimStatus as S, HouseholdLink, utcnow
from core.notify import notify_household
from core.outbox import as_utc
from core.workdays import review_due_date

WORD = "复核"
KEEP = ("维持",)
REOPEN = ("改判",)
REASON_MIN = 2
_NUMBER = re.compile(r"^C\d{8,}$")


class AppealError(DomainError, ValueError):
    """A refusal with a stable code; templates/messages/appeal_refused.j2 (the household) and
    appeal_admin_refused.j2 (the reviewer) word it."""


def appeal_days(session: Session, claim: Claim, today: date) -> int:
    year = scheme_years.of_claim(session, claim, today)
    return year.scheme.claims.appeal_days if year is not None else APPEAL_DAYS


def rejected_on(claim: Claim, tz: ZoneInfo) -> date:
    """The local day of the claim's last rejection (claims rejected before it was recorded:
    their last change)."""
    when = claim.rejected_at or claim.updated_at or claim.created_at
    return as_utc(when).astimezone(tz).date()


def last_day(session: Session, claim: Claim, today: date, tz: ZoneInfo) -> date:
    """The last day the household may appeal the claim's rejection."""
    return rejected_on(claim, tz) + timedelta(days=appeal_days(session, claim, today))


def _household_ids(session: Session, openid: str) -> list[int]:
    return list(session.scalars(select(HouseholdLink.household_id)
                                .where(HouseholdLink.openid == openid)))


def _check(session: Session, claim: Claim, today: date, tz: ZoneInfo) -> None:
    if claim.appealed_at is not None:
        raise AppealError("already", number=claim.number,
                          on=as_utc(claim.appealed_at).astimezone(tz).date(),
                          status=claim.status.value)
    if claim.status is not S.rejected:
        raise AppealError("not_rejected", number=claim.number, status=claim.status.value)
    until = last_day(session, claim, today, tz)
    if today > until:
        raise AppealError("late", number=claim.number, until=until,
                          days=appeal_days(session, claim, today))


def answerable_claim(session: Session, openid: str, today: date, tz: ZoneInfo) -> Claim | None:
    """The newest rejected claim of the user's household that may still be appealed."""
    households = _household_ids(session, openid)
    if not households:
        return None
    rows = session.scalars(select(Claim).where(Claim.household_id.in_(households),
                                               Claim.status == S.rejected,
                                               Claim.appealed_at.is_(None))
                           .order_by(Claim.rejected_at.desc(), Claim.id.desc()).limit(5))
    for claim in rows:
        if today <= last_day(session, claim, today, tz):
            return claim
    return None


def clean_reason(reason: str) -> str:
    text = scrub_phones(scrub(" ".join((reason or "").split())))
    if len(text) < REASON_MIN:
        raise AppealError("no_reason")
    return text[:REASON_MAX]


def file_appeal(session: Session, openid: str, number: str, reason: str, today: date,
                tz: ZoneInfo) -> Claim:
    """`复核 <claim> <reason>`: the claim becomes `appealed`; raises AppealError (unknown or
    not this household's claim, not rejected, already appealed, too late, no reason)."""
    number = (number or "").strip().upper()
    if not _NUMBER.match(number):
        raise AppealError("usage")
    claim = session.scalar(select(Claim).where(Claim.number == number).with_for_update())
    if claim is None or claim.household_id not in _household_ids(session, openid):
        # someone else's claim reads as an unknown one: nothing about it is told
        raise AppealError("not_yours", number=number)
    _check(session, claim, today, tz)
    text = clean_reason(reason)
    claim.appealed_at, claim.appealed_by, claim.appeal_reason = utcnow(), openid, text
    claim.due_date = review_due_date(today, review_days(session, claim))
    transition(session, claim, S.appealed, openid, notify="appeal_received",
               notify_except=openid, member=mask_name(claim.member.name),
               detail={"action": "appeal.filed", "reason": text,
                       "due_date": claim.due_date.isoformat()})
    _tell_reviewers(session, claim)
    session.flush()
    return claim


def _tell_reviewers(session: Session, claim: Claim) -> None:
    from core.review.queue import reviewers_of

    text = render("appeal_new_reviewer", claim=claim, member=mask_name(claim.member.name),
                  village=claim.household.village.full_name)
    for openid in reviewers_of(session, claim.household.pool_id):
        outbox.send_text(session, openid, text)


def decide_appeal(session: Session, claim: Claim, keep: bool, note: str | None, actor: str,
                  today: date) -> Decision | None:
    """/复核: keep the rejection, or have the rule decide again. Returns the new computed
    decision (改判 with recorded facts), else None."""
    from core.review import decide, reviewers_of, stored_facts

    if claim.status is not S.appealed:
        raise AppealError("not_appealed", number=claim.number, status=claim.status.value)
    others = [o for o in reviewers_of(session, claim.household.pool_id) if o != actor]
    if claim.rejected_by == actor and others:
        raise AppealError("same_reviewer", number=claim.number)
    note = scrub(note.strip())[:REASON_MAX] if note and note.strip() else None
    trace = list(claim.trace or [])
    if keep:
        transition(session, claim, S.rejected, actor,
                   detail={"action": "appeal.kept", "reasons": list(claim.reasons or []),
                           "note": note})
        trace.append({"step": "appeal", "text": render("appeal_trace", keep=True, note=note)})
        claim.trace = trace
        tell_household(session, claim, keep=True, note=note, today=today)
        session.flush()
        return None
    facts = stored_facts(claim)
    claim.exclusion = None  # the reviewer's own rejection is what the appeal set aside
    decision = decide(session, claim, facts, today)[0] if facts is not None else None
    transition(session, claim, S.in_review, actor, detail={
        "action": "appeal.reopened", "note": note,
        "amount_fen": decision.amount_fen if decision else None,
        "reasons": list(decision.reasons) if decision else []})
    claim.note = note
    if decision is not None:
        claim.amount_fen = decision.amount_fen
        claim.reasons = list(decision.reasons)
        claim.trace = [s.to_json() for s in decision.trace] + [
            {"step": "appeal", "text": render("appeal_trace", keep=False, note=note)}]
    else:
        claim.amount_fen, claim.reasons, claim.trace = None, [], []
    claim.due_date = review_due_date(today, review_days(session, claim))
    tell_household(session, claim, keep=False, note=note, today=today)
    session.flush()
    return decision


def tell_household(session: Session, claim: Claim, *, keep: bool, note: str | None,
                   today: date) -> None:
    """The household hears the appeal's outcome (the `appeal_decided` notice: the whole text in
    the chat, the category template's fields outside the 48-hour window)."""
    from core.notices import claim_variables

    notify_household(session, claim.household_id, "appeal_decided", claim=claim, keep=keep,
                     note=note, member=mask_name(claim.member.name), event="appeal_decided",
                     variables=claim_variables(
                         claim, "appeal_upheld" if keep else "appeal_changed", date=today,
                         reason=note))

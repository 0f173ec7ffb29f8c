"""The review actions: /核定 (record), /通过 (approve), /驳回 (reject), /补件 (request documents).
Each runs in the caller's transaction and raises ReviewError before changing anything."""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from core import scheme_years
from core.adjudication import (APPROVED, EXCLUSION_NAMES, REASON_CODES, REVIEWER_REJECTION_CODES,
                               Decision)
from core.bankcards import ask_for_card
from core.claims import has_bank_card, transition
from core.crypto import scrub
from core.messages import render
from core.models import Claim, ClaimStatus as S, InsuranceType
from core.notices import claim_variables
from core.notify import notify_household
from core.review.decide import _lock_person, decide, is_computed
from core.review.errors import ReviewError
from core.review.facts import TEXT_MAX, Facts, stored_facts
from core.review.texts import (_explanations, calculation_line, failed_steps, member_label,
                               reason_title)


#: statuses /核定 may record facts on
RECORDABLE = frozenset({S.submitted, S.in_review})
#: statuses /驳回 may reject from (approved: before it is paid out, e.g. fraud found)
REJECTABLE = frozenset({S.submitted, S.in_review, S.need_documents, S.approved})
#: statuses /补件 may ask for documents from
DOCUMENTS_FROM = frozenset({S.submitted, S.in_review})


def record(session: Session, claim: Claim, facts: Facts, actor: str, *, today: date,
           source: str = "reviewer") -> Decision:
    """/核定: store the facts and the computed decision, status `in_review` (not final)."""
    if claim.status not in RECORDABLE:
        raise ReviewError("wrong_status", status=claim.status.value, action="核定")
    decision, year = decide(session, claim, facts, today)
    first = claim.status is S.submitted
    transition(session, claim, S.in_review, actor, detail={
        "action": "review.record", "source": source, "facts": facts.to_json(),
        "amount_fen": decision.amount_fen, "reasons": list(decision.reasons),
        "scheme_year_id": year.id})
    claim.scheme_year_id = year.id
    claim.drg_code = facts.drg_code
    claim.out_of_pocket_fen = facts.out_of_pocket_fen
    claim.admission_date = facts.admission_date
    claim.discharge_date = facts.discharge_date
    claim.insurance = InsuranceType(facts.insurance)
    if facts.hospital:
        claim.hospital = facts.hospital
    claim.amount_fen = decision.amount_fen
    claim.reasons = list(decision.reasons)
    claim.trace = [s.to_json() for s in decision.trace]
    if first:
        notify_household(session, claim.household_id, "review_household_in_review", claim=claim,
                         member=member_label(claim))
    session.flush()
    return decision


def approve(session: Session, claim: Claim, actor: str, *, today: date) -> Decision:
    """/通过: make the computed approval final. The rule is run again on the recorded facts
    (another claim of the person may have been approved since): if its decision changed, the
    reviewer must /核定 again."""
    if claim.status is S.submitted or (claim.status is S.in_review and not is_computed(claim)):
        raise ReviewError("not_computed")
    if claim.status is not S.in_review:
        raise ReviewError("wrong_status", status=claim.status.value, action="通过")
    if claim.reasons:
        raise ReviewError("computed_rejection", reasons=list(claim.reasons),
                          titles=[reason_title(c) for c in claim.reasons])
    _lock_person(session, claim)
    fresh, year = decide(session, claim, stored_facts(claim), today)
    if fresh.status != APPROVED or fresh.amount_fen != claim.amount_fen:
        raise ReviewError("decision_changed", amount_fen=fresh.amount_fen,
                          reasons=list(fresh.reasons),
                          titles=[reason_title(c) for c in fresh.reasons])
    claim.trace = [s.to_json() for s in fresh.trace]
    # the approval first, then a household with no card on file is asked for one
    has_card = has_bank_card(session, claim.household_id)
    notify_household(session, claim.household_id, "review_household_approved", claim=claim,
                     member=member_label(claim), calculation=calculation_line(claim.trace),
                     has_card=has_card, payout_day=year.scheme.payout.day,
                     event="claim_decided", variables=claim_variables(
                         claim, "claim_approved",
                         "claim_approved" if has_card else "claim_approved_no_card",
                         date=today))
    transition(session, claim, S.approved, actor,
               detail={"action": "review.approve", "amount_fen": claim.amount_fen})
    ask_for_card(session, claim)
    session.flush()
    return fresh


def reject(session: Session, claim: Claim, code: str, text: str | None, actor: str, *,
           today: date) -> list[str]:
    """/驳回: `rejected` with a reason code — a computed one (it must be among the reasons the
    rule gives on the recorded facts) or a reviewer's own (exclusions, documents, fraud).
    Returns the claim's final reason codes."""
    code = code.strip().lower()
    year = scheme_years.for_decision(session, claim, claim.admission_date, today)
    if code.startswith("excluded_"):
        kind = code[len("excluded_"):]
        if year is not None and kind not in year.scheme.claims.exclusions:
            raise ReviewError("exclusion_not_in_scheme", kind=kind,
                              allowed=allowed_exclusions(year))
        if year is None and kind not in EXCLUSION_NAMES:
            raise ReviewError("bad_reason", value=code)
    elif code not in REASON_CODES:
        raise ReviewError("bad_reason", value=code)
    if claim.status not in REJECTABLE:
        raise ReviewError("wrong_status", status=claim.status.value, action="驳回")
    note = scrub(text.strip())[:TEXT_MAX] if text and text.strip() else None
    fresh: Decision | None = None
    if code in REVIEWER_REJECTION_CODES or code.startswith("excluded_"):
        reasons = [code]
    else:
        if not is_computed(claim) or code not in (claim.reasons or []):
            raise ReviewError("reason_not_computed", value=code,
                              computed=list(claim.reasons or []) if is_computed(claim) else [])
        _lock_person(session, claim)
        fresh, _ = decide(session, claim, stored_facts(claim), today)
        if code not in fresh.reasons:
            raise ReviewError("decision_changed", amount_fen=fresh.amount_fen,
                              reasons=list(fresh.reasons),
                              titles=[reason_title(c) for c in fresh.reasons])
        reasons = [code] + [c for c in fresh.reasons if c != code]
    transition(session, claim, S.rejected, actor, detail={
        "action": "review.reject", "amount_fen": None, "reasons": reasons, "note": note})
    if code.startswith("excluded_"):
        claim.exclusion = code[len("excluded_"):]
    if year is not None and claim.scheme_year_id is None:
        claim.scheme_year_id = year.id
    trace = [s.to_json() for s in fresh.trace] if fresh else list(claim.trace or [])
    trace.append({"step": "reviewer", "text": render(
        "review_trace_rejected", titles="、".join(reason_title(c, claim) for c in reasons),
        note=note)})
    claim.amount_fen = None
    claim.reasons = reasons
    claim.trace = trace
    claim.note = note
    from core.appeals import appeal_days

    notify_household(session, claim.household_id, "review_household_rejected", claim=claim,
                     member=member_label(claim),
                     explanations=_explanations(fresh, reasons, claim),
                     steps=failed_steps(trace, reasons) if fresh else [trace[-1]["text"]],
                     note=note, appeal_until=today + timedelta(days=appeal_days(
                         session, claim, today)) if claim.appealed_at is None else None,
                     event="claim_decided", variables=claim_variables(
                         claim, "claim_rejected", date=today,
                         reason="、".join(reason_title(c, claim) for c in reasons)))
    session.flush()
    return reasons


def allowed_exclusions(year) -> list[dict]:
    """The scheme's exclusion codes as /驳回 takes them: [{code: excluded_<code>, title}]."""
    claims = year.scheme.claims
    return [{"code": f"excluded_{c}", "title": claims.label_of(c)} for c in claims.exclusions]


def request_documents(session: Session, claim: Claim, text: str, actor: str) -> None:
    """/补件: ask the household for missing or unreadable documents (`need_documents`)."""
    if claim.status not in DOCUMENTS_FROM:
        raise ReviewError("wrong_status", status=claim.status.value, action="补件")
    note = scrub(text.strip())
    if not note:
        raise ReviewError("text_required")
    if len(note) > TEXT_MAX:
        raise ReviewError("text_too_long", limit=TEXT_MAX)
    transition(session, claim, S.need_documents, actor,
               detail={"action": "review.need_documents", "note": note})
    claim.note = note
    notify_household(session, claim.household_id, "review_household_need_documents", claim=claim,
                     member=member_label(claim), note=note, event="need_documents",
                     variables=claim_variables(claim, "need_documents", reason=note))
    session.flush()

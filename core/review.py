"""Review: a reviewer records a claim's facts, the fund's rule decides, the reviewer makes it final.

The service behind the reviewer commands (handlers/review.py) and `huzhu claims list`:

- `record(session, claim, facts, actor)` (/核定): gathers the member's history from the database,
  builds the rules of the scheme year the stay falls in, runs `core.adjudication.adjudicate`, and
  stores the facts and the computed decision (amount, reason codes, trace) on the claim, status
  `in_review`. Not final; may be repeated.
- `approve` (/通过): makes a computed approval final (`approved`), refused for a computed rejection.
- `reject` (/驳回): `rejected` with a computed reason code or a reviewer's own.
- `request_documents` (/补件): `need_documents` with the reviewer's text.

Each runs inside the caller's transaction: the status change with its audit row
(core.claims.transition) and the household's notification (outbox) commit together or not at all.
Problems with the arguments or the claim's state raise `ReviewError(code, **detail)` BEFORE
anything is changed.

The OCR read-out of a claim (`Claim.ocr`, written by the photo deliverer, core/claims.py) is read
from `claim.ocr["fields"]`: {field: {"value": ..., "confidence": 0..1, …}} with fields
out_of_pocket_fen (int fen), admission_date and discharge_date (ISO dates), insurance (resident |
employee | uninsured) and hospital (text); `claim.ocr["consistent"] is False` (the sheet's total
is not fund + out-of-pocket) makes the out-of-pocket amount untrusted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import outbox, scheme_years
from core.adjudication import (APPROVED, EXCLUSION_NAMES, REASON_CODES, REASONS,
                               REVIEWER_REJECTION_CODES, ClaimFacts, Decision, History,
                               OtherClaim, Rules, adjudicate, explain)
from core.admins import Scope
from core.audit import audit
from core.bankcards import ask_for_card
from core.claims import has_bank_card, transition
from core.crypto import mask_name, scrub
from core.errors import DomainError
from core.messages import render
from core.models import (AdminGrant, AdminRole, AuditLog, Claim, ClaimStatus as S,
                         Enrolment, EnrolmentStatus, Household, InsuranceType, Member, Pool,
                         SchemeYear)
from core.notify import notify_household

#: statuses of the review queue (/待审) and of the review-due reminders
QUEUE_STATUSES = (S.submitted, S.in_review)
#: statuses /核定 may record facts on
RECORDABLE = frozenset({S.submitted, S.in_review})
#: statuses /驳回 may reject from (approved: before it is paid out, e.g. fraud found)
REJECTABLE = frozenset({S.submitted, S.in_review, S.need_documents, S.approved})
#: statuses /补件 may ask for documents from
DOCUMENTS_FROM = frozenset({S.submitted, S.in_review})

#: an OCR value is used by the short /核定 form only at this confidence or above
GOOD_CONFIDENCE = 0.9
OCR_FIELDS = ("out_of_pocket_fen", "admission_date", "discharge_date", "insurance", "hospital")
#: the values the short form needs from the read-out (the insurance type may come from the
#: member's registration instead)
OCR_NEEDED = ("out_of_pocket_fen", "admission_date", "discharge_date")

INSURANCE_WORDS = {
    "居民医保": "resident", "居民": "resident", "城乡居民医保": "resident", "resident": "resident",
    "职工医保": "employee", "职工": "employee", "城镇职工医保": "employee", "employee": "employee",
    "未参保": "uninsured", "无医保": "uninsured", "uninsured": "uninsured",
}
_CLAIM_NUMBER = re.compile(r"^C\d{8,14}$")
_DRG = re.compile(r"^[A-Z][A-Z0-9.\-]{1,15}$")
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
HOSPITAL_MAX = 128
TEXT_MAX = 300


class ReviewError(DomainError):
    """A review action cannot be done; nothing was changed. `code` names why (the reply
    templates word each code); `details` carries the values to show."""


# ---------------------------------------------------------------------------------------------
# Facts as the reviewer states them

@dataclass(frozen=True)
class Facts:
    drg_code: str
    out_of_pocket_fen: int
    admission_date: date
    discharge_date: date
    insurance: str  # resident | employee | uninsured
    hospital: str | None = None

    def to_json(self) -> dict:
        return {"drg_code": self.drg_code, "out_of_pocket_fen": self.out_of_pocket_fen,
                "admission_date": self.admission_date.isoformat(),
                "discharge_date": self.discharge_date.isoformat(),
                "insurance": self.insurance, "hospital": self.hospital}


def parse_claim_number(text: str) -> str:
    number = text.strip().upper()
    if not _CLAIM_NUMBER.match(number):
        raise ReviewError("unknown_claim", number=text.strip())
    return number


def parse_drg(text: str) -> str:
    code = text.strip().upper()
    if not _DRG.match(code):
        raise ReviewError("bad_drg", value=text)
    return code


def parse_amount(text: str) -> int:
    from core.money import parse_yuan

    try:
        return parse_yuan(text)
    except ValueError:
        raise ReviewError("bad_amount", value=text)


def parse_date(text: str, what: str) -> date:
    m = _DATE.match(text.strip())
    try:
        if not m:
            raise ValueError
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ReviewError("bad_date", value=text, what=what)


def parse_insurance(text: str) -> str:
    value = INSURANCE_WORDS.get(text.strip()) or INSURANCE_WORDS.get(text.strip().lower())
    if value is None:
        raise ReviewError("bad_insurance", value=text)
    return value


def check_dates(admission: date, discharge: date, today: date) -> None:
    if discharge < admission:
        raise ReviewError("dates_order", admission=admission, discharge=discharge)
    if discharge > today:
        raise ReviewError("future_date", value=discharge)


def parse_facts(args: Sequence[str], today: date) -> Facts:
    """The full /核定 form's arguments after the claim number:
    DRG out_of_pocket admission discharge insurance [hospital…]."""
    if len(args) < 5:
        raise ReviewError("bad_args")
    drg = parse_drg(args[0])
    amount = parse_amount(args[1])
    admission = parse_date(args[2], "入院日期")
    discharge = parse_date(args[3], "出院日期")
    insurance = parse_insurance(args[4])
    check_dates(admission, discharge, today)
    hospital = " ".join(args[5:]).strip() or None
    if hospital and len(hospital) > HOSPITAL_MAX:
        raise ReviewError("text_too_long", limit=HOSPITAL_MAX)
    return Facts(drg, amount, admission, discharge, insurance, hospital)


# ---------------------------------------------------------------------------------------------
# The OCR read-out (short /核定 form)

def _ocr_value(field: str, value: Any):
    """The read value in the type the facts need, or None when it cannot be used."""
    if value is None:
        return None
    try:
        if field == "out_of_pocket_fen":
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return value if value >= 0 else None
            return parse_amount(str(value))  # "8456.78" read as yuan
        if field in ("admission_date", "discharge_date"):
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            return parse_date(str(value), field)
        if field == "insurance":
            return parse_insurance(str(value))
        if field == "hospital":
            text = str(value).strip()
            return text[:HOSPITAL_MAX] or None
    except ReviewError:
        return None
    return None


def ocr_readout(claim: Claim) -> dict[str, dict]:
    """{field: {"value": typed value or None, "raw": as stored, "confidence": float, "good": bool}}
    for the fields the read-out has."""
    ocr = claim.ocr or {}
    fields = ocr.get("fields") if isinstance(ocr.get("fields"), Mapping) else ocr
    out: dict[str, dict] = {}
    for field in OCR_FIELDS:
        entry = fields.get(field)
        if not isinstance(entry, Mapping):
            continue
        try:
            confidence = float(entry.get("confidence") or 0)
        except (TypeError, ValueError):
            confidence = 0.0
        value = _ocr_value(field, entry.get("value"))
        good = value is not None and confidence >= GOOD_CONFIDENCE
        if field == "out_of_pocket_fen" and ocr.get("consistent") is False:
            good = False
        out[field] = {"value": value, "raw": entry.get("value"), "confidence": confidence,
                      "good": good}
    return out


@dataclass(frozen=True)
class OcrFacts:
    facts: Facts | None
    missing: tuple[str, ...]  # OCR field names not read with good confidence
    insurance_from_member: bool = False


def facts_from_ocr(claim: Claim, drg_code: str, today: date) -> OcrFacts:
    """The short form: the reviewer gives the DRG group, the read-out gives the rest when every
    needed value was read with good confidence. The insurance type falls back to the member's
    registered type when the read-out has none good."""
    read = ocr_readout(claim)
    missing = [f for f in OCR_NEEDED if not read.get(f, {}).get("good")]
    insurance = read.get("insurance", {})
    from_member = not insurance.get("good")
    if missing:
        return OcrFacts(None, tuple(missing), from_member)
    admission, discharge = read["admission_date"]["value"], read["discharge_date"]["value"]
    if discharge < admission or discharge > today:
        return OcrFacts(None, ("admission_date", "discharge_date"), from_member)
    hospital = read.get("hospital", {})
    facts = Facts(drg_code, read["out_of_pocket_fen"]["value"], admission, discharge,
                  claim.member.insurance.value if from_member else insurance["value"],
                  hospital["value"] if hospital.get("good") else None)
    return OcrFacts(facts, (), from_member)


# ---------------------------------------------------------------------------------------------
# Reading a claim and its member's history

def find_claim(session: Session, number: str, lock: bool = False) -> Claim:
    number = parse_claim_number(number)
    q = select(Claim).where(Claim.number == number)
    if lock:
        q = q.with_for_update()
    claim = session.scalar(q)
    if claim is None:
        raise ReviewError("unknown_claim", number=number)
    return claim


def _paid(session: Session, id_hash: str, year_id: int) -> bool:
    return session.scalar(select(func.count()).select_from(Enrolment).where(
        Enrolment.scheme_year_id == year_id, Enrolment.id_number_hash == id_hash,
        Enrolment.status == EnrolmentStatus.paid)) > 0


def history_of(session: Session, claim: Claim, year: SchemeYear) -> History:
    """The member's enrolment in `year` and the previous scheme year (the person, by ID number,
    whichever household row they were in), and the person's other claims in the same pool."""
    id_hash = claim.member.id_number_hash
    previous = scheme_years.previous(session, year)
    others = session.execute(
        select(Claim.status, Claim.amount_fen, Claim.admission_date, Claim.discharge_date,
               Claim.number)
        .join(Member, Claim.member_id == Member.id)
        .join(Household, Claim.household_id == Household.id)
        .where(Member.id_number_hash == id_hash, Household.pool_id == year.pool_id,
               Claim.id != claim.id)
        .order_by(Claim.id)).all()
    return History(
        enrolled_paid_this_year=_paid(session, id_hash, year.id),
        enrolled_paid_previous_year=previous is not None and _paid(session, id_hash, previous.id),
        other_claims=tuple(OtherClaim(status.value, amount, admission, discharge, number)
                           for status, amount, admission, discharge, number in others))


def rules_of(year: SchemeYear) -> Rules:
    return Rules.from_scheme(year.scheme)


def decide(session: Session, claim: Claim, facts: Facts,
           today: date | None = None) -> tuple[Decision, SchemeYear]:
    """The rule's decision for these facts, reading only; raises ReviewError(no_scheme_year)."""
    year = scheme_years.for_decision(session, claim, facts.admission_date, today)
    if year is None:
        raise ReviewError("no_scheme_year")
    decision = adjudicate(
        ClaimFacts(claim.member_id, facts.drg_code, facts.out_of_pocket_fen, facts.admission_date,
                   facts.discharge_date, facts.insurance, claim.exclusion),
        rules_of(year), history_of(session, claim, year))
    return decision, year


def stored_facts(claim: Claim) -> Facts | None:
    """The facts a /核定 recorded on the claim, or None before any."""
    if (claim.drg_code is None or claim.out_of_pocket_fen is None
            or claim.admission_date is None or claim.discharge_date is None
            or claim.insurance is None):
        return None
    return Facts(claim.drg_code, claim.out_of_pocket_fen, claim.admission_date,
                 claim.discharge_date, claim.insurance.value, claim.hospital)


def is_computed(claim: Claim) -> bool:
    return claim.status is S.in_review and bool(claim.trace) and stored_facts(claim) is not None


def _lock_person(session: Session, claim: Claim) -> None:
    """Serialise decisions on one person (PostgreSQL row locks; SQLite has one writer anyway),
    so two approvals at once cannot both use the same room under the annual cap."""
    session.execute(select(Member.id).where(
        Member.id_number_hash == claim.member.id_number_hash).with_for_update()).all()


# ---------------------------------------------------------------------------------------------
# Texts shared by replies and notifications

_CALCULATION_STEPS = ("quota", "continuous_bonus", "minimum", "maximum", "annual_cap")
_STEP_OF_REASON = {"not_enrolled": "enrolment", "outside_year": "year", "below_threshold":
                   "threshold", "unknown_drg": "drg", "duplicate": "duplicate",
                   "annual_cap_reached": "annual_cap"}


def calculation_line(trace: Sequence[Mapping]) -> str:
    """The steps from the quota to the amount, in one line: "病种 ES13 定额 5,000.00 元；连续参加
    +10% → 5,500.00 元；…"."""
    return "；".join(s["text"] for s in trace if s.get("step") in _CALCULATION_STEPS)


def failed_steps(trace: Sequence[Mapping], reasons: Sequence[str]) -> list[str]:
    """The trace lines of the checks that failed (one per computed reason)."""
    wanted = {_STEP_OF_REASON.get(code, "exclusion" if code.startswith("excluded_") else None)
              for code in reasons}
    lines = [s["text"] for s in trace if s.get("step") in wanted]
    decision = [s["text"] for s in trace if s.get("step") == "decision"]
    return lines + decision[-1:]


def reason_title(code: str) -> str:
    return REASONS[code].title if code in REASONS else code


def _explanations(decision: Decision | None, codes: Sequence[str]) -> list[str]:
    by_code = dict(zip(decision.reasons, decision.explanations)) if decision else {}
    return [by_code.get(code) or explain(code) for code in codes]


def member_label(claim: Claim) -> str:
    return mask_name(claim.member.name)


# ---------------------------------------------------------------------------------------------
# Actions

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
    notify_household(session, claim.household_id, "review_household_approved", claim=claim,
                     member=member_label(claim), calculation=calculation_line(claim.trace),
                     has_card=has_bank_card(session, claim.household_id),
                     payout_day=year.scheme.payout.day)
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
    if code not in REASON_CODES:
        raise ReviewError("bad_reason", value=code)
    if claim.status not in REJECTABLE:
        raise ReviewError("wrong_status", status=claim.status.value, action="驳回")
    note = scrub(text.strip())[:TEXT_MAX] if text and text.strip() else None
    fresh: Decision | None = None
    if code in REVIEWER_REJECTION_CODES:
        if code.startswith("excluded_"):
            kind = code[len("excluded_"):]
            year = scheme_years.for_decision(session, claim, claim.admission_date, today)
            if year is not None and kind not in year.scheme.claims.exclusions:
                raise ReviewError("exclusion_not_in_scheme", kind=EXCLUSION_NAMES.get(kind, kind))
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
    trace = [s.to_json() for s in fresh.trace] if fresh else list(claim.trace or [])
    trace.append({"step": "reviewer", "text": render(
        "review_trace_rejected", titles="、".join(reason_title(c) for c in reasons), note=note)})
    claim.amount_fen = None
    claim.reasons = reasons
    claim.trace = trace
    claim.note = note
    notify_household(session, claim.household_id, "review_household_rejected", claim=claim,
                     member=member_label(claim), explanations=_explanations(fresh, reasons),
                     steps=failed_steps(trace, reasons) if fresh else [trace[-1]["text"]],
                     note=note)
    session.flush()
    return reasons


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
                     member=member_label(claim), note=note)
    session.flush()


# ---------------------------------------------------------------------------------------------
# The queue and the review-due reminders

def _sort_key():
    return func.coalesce(Claim.submitted_at, Claim.created_at)


def queue(session: Session, scope: Scope, limit: int = 20) -> tuple[list[Claim], int]:
    """Claims waiting for review in the admin's scope, oldest first: (the first `limit`, total)."""
    q = (select(Claim).join(Household, Claim.household_id == Household.id)
         .where(Claim.status.in_(QUEUE_STATUSES)))
    if not scope.everything:
        q = q.where(or_(Household.pool_id.in_(scope.pool_ids),
                        Household.village_id.in_(scope.village_ids)))
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = list(session.scalars(q.order_by(_sort_key(), Claim.id).limit(limit)))
    return rows, total


def overdue(session: Session, today: date) -> dict[int, list[Claim]]:
    """pool id -> claims waiting for review whose due date has passed, oldest first."""
    rows = session.scalars(
        select(Claim).join(Household, Claim.household_id == Household.id)
        .where(Claim.status.in_(QUEUE_STATUSES), Claim.due_date.is_not(None),
               Claim.due_date < today)
        .order_by(Household.pool_id, Claim.due_date, Claim.id))
    by_pool: dict[int, list[Claim]] = {}
    for claim in rows:
        by_pool.setdefault(claim.household.pool_id, []).append(claim)
    return by_pool


def reviewers_of(session: Session, pool_id: int) -> list[str]:
    """The pool's reviewers (bound to it or to every pool) and its pool administrators; with
    none, the super administrators."""
    grants = session.scalars(select(AdminGrant).where(or_(
        (AdminGrant.role == AdminRole.reviewer)
        & (or_(AdminGrant.pool_id == pool_id, AdminGrant.pool_id.is_(None))),
        (AdminGrant.role == AdminRole.pool_admin) & (AdminGrant.pool_id == pool_id),
    )).order_by(AdminGrant.id))
    openids = list(dict.fromkeys(g.openid for g in grants))
    if not openids:
        openids = list(dict.fromkeys(session.scalars(
            select(AdminGrant.openid).where(AdminGrant.role == AdminRole.super)
            .order_by(AdminGrant.id))))
    return openids


def remind_overdue(session: Session, today: date, actor: str = "scheduler") -> int:
    """Queue one message per pool with claims past their due date to its reviewers and
    administrators; once a day per pool (a second run the same day sends nothing).
    Returns the number of messages queued."""
    sent = 0
    for pool_id, claims in overdue(session, today).items():
        key = f"{pool_id}:{today.isoformat()}"
        done = session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "review.overdue_reminder", AuditLog.entity == "pool",
            AuditLog.entity_id == key))
        if done:
            continue
        openids = reviewers_of(session, pool_id)
        pool = session.get(Pool, pool_id)
        text = render("review_overdue", pool=pool, today=today, total=len(claims),
                      claims=[_queue_line(c, today) for c in claims[:15]])
        for openid in openids:
            outbox.send_text(session, openid, text)
            sent += 1
        audit(session, actor, "review.overdue_reminder", "pool", key, None,
              {"claims": [c.number for c in claims], "to": len(openids)})
    session.flush()
    return sent


def _queue_line(claim: Claim, today: date) -> dict:
    return {"number": claim.number, "village": claim.household.village.full_name,
            "member": member_label(claim), "status": claim.status.value,
            "due_date": claim.due_date, "overdue": bool(claim.due_date and claim.due_date < today),
            "amount_fen": claim.amount_fen,
            "reasons": [reason_title(c) for c in claim.reasons or []],
            "submitted": claim.submitted_at}


def queue_lines(claims: Sequence[Claim], today: date) -> list[dict]:
    return [_queue_line(c, today) for c in claims]


# ---------------------------------------------------------------------------------------------
# Listing (huzhu claims list)

def claim_json(claim: Claim) -> dict:
    """A claim as `claims list --json` shows it (SPEC): personal data masked, amounts in fen."""
    return {
        "number": claim.number,
        "household": claim.household.number,
        "village": claim.household.village.full_name,
        "member": mask_name(claim.member.name),
        "status": claim.status.value,
        "amount_fen": claim.amount_fen,
        "reasons": list(claim.reasons or []),
        "trace": [dict(s) for s in claim.trace or []],
        "due_date": claim.due_date.isoformat() if claim.due_date else None,
        "drg_code": claim.drg_code,
        "out_of_pocket_fen": claim.out_of_pocket_fen,
        "admission_date": claim.admission_date.isoformat() if claim.admission_date else None,
        "discharge_date": claim.discharge_date.isoformat() if claim.discharge_date else None,
        "documents": [{"kind": d.kind.value if d.kind else None, "sha256": d.sha256}
                      for d in claim.documents],
    }


def list_claims(session: Session, status: str | None = None,
                pool: str | None = None) -> list[Claim]:
    q = select(Claim).join(Household, Claim.household_id == Household.id).order_by(Claim.id)
    if status:
        q = q.where(Claim.status == S(status))
    if pool:
        q = q.join(Pool, Household.pool_id == Pool.id).where(Pool.code == pool)
    return list(session.scalars(q))


def drg_search(session: Session, text: str, year: SchemeYear | None,
               limit: int = 8) -> list[dict]:
    """DRG groups whose code starts with, or whose name contains, the text — with the year's
    quota when it has one (for reviewers choosing the group for /核定)."""
    from core.models import DrgGroup

    text = text.strip()
    upper = text.upper()
    rows = list(session.execute(
        select(DrgGroup.code, DrgGroup.name)
        .where(or_(DrgGroup.code.like(f"{upper}%"), DrgGroup.name.contains(text)))
        .order_by(DrgGroup.code).limit(limit)).all())
    quotas = year.scheme.benefit.quotas_fen if year is not None else {}
    return [{"code": c, "name": n, "quota_fen": quotas.get(c)} for c, n in rows]


# ---------------------------------------------------------------------------------------------
# Links to a claim's photos for an administrator (served by bot/web_review.py)

LINK_VALID_SECONDS = 72 * 3600
_LINK_SALT = "huzhu.review.document"


def _serializer(cfg):
    from itsdangerous import URLSafeTimedSerializer

    from core.config import secret_key

    return URLSafeTimedSerializer(secret_key(cfg), salt=_LINK_SALT)


def document_url(cfg, document_id: int, openid: str) -> str:
    """A link to one claim document for one administrator: signed with the server's secret,
    valid LINK_VALID_SECONDS; the server checks again, when it is opened, that this
    administrator's scope still covers the claim."""
    token = _serializer(cfg).dumps({"d": int(document_id), "a": openid})
    return f"{cfg.PUBLIC_URL.rstrip('/')}/review/documents/{token}"


def read_document_token(cfg, token: str) -> tuple[int, str]:
    """(document id, administrator's openid) of a link; ReviewError bad_link / expired_link."""
    from itsdangerous import BadSignature, SignatureExpired

    try:
        data = _serializer(cfg).loads(token, max_age=LINK_VALID_SECONDS)
    except SignatureExpired:
        raise ReviewError("expired_link")
    except BadSignature:
        raise ReviewError("bad_link")
    try:
        return int(data["d"]), str(data["a"])
    except (KeyError, TypeError, ValueError):
        raise ReviewError("bad_link")


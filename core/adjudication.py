"""Adjudication: the subsidy for one claim, by DRG group quota (按病种定额补助).

`adjudicate(facts, rules, history) -> Decision` is a pure function implementing SPEC "Adjudication
rule (exact)" in integer fen: no I/O, no clock. The caller gathers the facts (from /核定), the
rules (`Rules.from_scheme(scheme)`) and the member's history (enrolment in this and the previous
scheme year, the member's other claims); the decision carries the status, the amount, every
reason code and a trace of each rule applied with its numbers, in Chinese.

Texts come from templates/messages/trace.yaml and reasons.yaml, read once at import.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cached_property
from typing import Mapping, NamedTuple

import yaml

from core.config import TEMPLATES_DIR
from core.messages import format_date
from core.money import format_yuan, round_half_up
from core.scheme import EXCLUSION_KINDS, INSURANCE_TYPES, Scheme

APPROVED = "approved"
REJECTED = "rejected"

EXCLUSION_REASONS = tuple(f"excluded_{kind}" for kind in EXCLUSION_KINDS)
COMPUTED_REASONS = ("not_enrolled", "outside_year", *EXCLUSION_REASONS, "below_threshold",
                    "unknown_drg", "duplicate", "annual_cap_reached")
REVIEWER_REASONS = ("incomplete_documents", "unreadable_documents", "fraud")
#: every reason code a claim may carry (SPEC): computed ones and a reviewer's own
REASON_CODES = frozenset(COMPUTED_REASONS + REVIEWER_REASONS)
#: codes a reviewer may give with /驳回 without a computed decision behind them
REVIEWER_REJECTION_CODES = frozenset(EXCLUSION_REASONS + REVIEWER_REASONS)

#: statuses of the member's other claims whose amounts count against the annual cap
CAP_STATUSES = frozenset({"approved", "in_payout", "paid"})


# ---------------------------------------------------------------------------------------------
# Texts

@dataclass(frozen=True)
class ReasonText:
    title: str
    text: str
    remedy: str
    detail: str | None = None

    @cached_property
    def fields(self) -> frozenset[str]:
        """The values `detail` shows, read once."""
        return frozenset(name for _, name, _, _ in string.Formatter().parse(self.detail or "")
                         if name)


def _load_texts():
    with open(TEMPLATES_DIR / "messages" / "reasons.yaml", encoding="utf-8") as fh:
        reasons = {code: ReasonText(**entry) for code, entry in yaml.safe_load(fh).items()}
    if set(reasons) != REASON_CODES:
        raise RuntimeError("templates/messages/reasons.yaml must explain exactly the reason codes; "
                           f"differs by {sorted(set(reasons) ^ REASON_CODES)}")
    with open(TEMPLATES_DIR / "messages" / "trace.yaml", encoding="utf-8") as fh:
        trace = yaml.safe_load(fh)
    return reasons, trace


REASONS, _TRACE = _load_texts()
_STEP: Mapping[str, str] = _TRACE["steps"]
INSURANCE_NAMES: Mapping[str, str] = _TRACE["insurance"]
EXCLUSION_NAMES: Mapping[str, str] = _TRACE["exclusions"]


def _display(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return format_yuan(value)
    if isinstance(value, date):
        return format_date(value)
    return str(value)


def explain(code: str, **values) -> str:
    """A reason in plain Chinese plus what the household can do, e.g. for below_threshold with
    out_of_pocket=250000, threshold=300000, insurance="居民医保": "个人自付 2,500.00 元未达到居民
    医保起付标准 3,000.00 元。如结算单上…". Ints are amounts in fen, dates are shown as dates; without
    the values the detail needs, the text without numbers is used."""
    reason = REASONS[code]
    text = reason.text
    if reason.detail:
        fields = reason.fields
        if fields <= values.keys():
            text = reason.detail.format(**{k: _display(values[k]) for k in fields})
    return f"{text}{reason.remedy}"


# ---------------------------------------------------------------------------------------------
# Inputs and output

@dataclass(frozen=True, slots=True)
class ClaimFacts:
    member_id: int
    drg_code: str
    out_of_pocket_fen: int  # after basic insurance
    admission_date: date
    discharge_date: date
    insurance: str  # resident | employee | uninsured
    exclusion: str | None = None  # one of EXCLUSION_KINDS, as found by the reviewer


@dataclass(frozen=True, slots=True)
class OtherClaim:
    """Another claim of the same member (any year), as the caller found it."""
    status: str
    amount_fen: int | None
    admission_date: date | None
    discharge_date: date | None
    number: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    enrolled_paid_this_year: bool
    enrolled_paid_previous_year: bool
    # the member's other claims, not the one being decided; those admitted inside the scheme
    # year count against the annual cap, any not rejected counts for overlapping stays
    other_claims: tuple[OtherClaim, ...] = ()


@dataclass(frozen=True)
class Rules:
    year_start: date
    year_end: date
    thresholds_fen: Mapping[str, int]  # insurance type -> fen
    quotas_fen: Mapping[str, int]  # DRG code -> fen
    min_per_claim_fen: int
    max_per_claim_fen: int
    annual_cap_fen: int
    continuous_bonus: Decimal = Decimal(0)
    exclusions: frozenset[str] = frozenset(EXCLUSION_KINDS)

    @classmethod
    def from_scheme(cls, scheme: Scheme) -> "Rules":
        b = scheme.benefit
        return cls(scheme.year.start, scheme.year.end, scheme.claims.thresholds_fen,
                   b.quotas_fen, b.min_per_claim_fen, b.max_per_claim_fen, b.annual_cap_fen,
                   b.continuous_bonus, frozenset(scheme.claims.exclusions))

    @cached_property
    def _texts(self) -> dict:
        """The rules' own numbers as displayed in the trace, formatted once."""
        return {"start": format_date(self.year_start), "end": format_date(self.year_end),
                "thresholds": {k: format_yuan(v) for k, v in self.thresholds_fen.items()},
                "minimum": format_yuan(self.min_per_claim_fen),
                "maximum": format_yuan(self.max_per_claim_fen),
                "cap": format_yuan(self.annual_cap_fen),
                "quotas": {code: format_yuan(q) for code, q in self.quotas_fen.items()},
                "with_bonus": {code: (b, format_yuan(b)) for code, b in (
                    (code, round_half_up(q * (Decimal(1) + self.continuous_bonus)))
                    for code, q in self.quotas_fen.items())},
                "percent": f"{(self.continuous_bonus * 100).normalize():f}"}


class TraceStep(NamedTuple):
    """One rule applied. `step` is a stable code: enrolment, year, exclusion, threshold, drg,
    duplicate, quota, continuous_bonus, minimum, maximum, annual_cap, decision."""
    step: str
    text: str

    def to_json(self) -> dict:
        return {"step": self.step, "text": self.text}


@dataclass(frozen=True, slots=True)
class Decision:
    status: str  # approved | rejected
    amount_fen: int | None  # None for a rejection
    reasons: tuple[str, ...]  # empty for an approval
    trace: tuple[TraceStep, ...]
    explanations: tuple[str, ...] = ()  # one per reason: explain(code) with this claim's numbers

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    def to_json(self) -> dict:
        """For Claim.amount_fen / reasons / trace and `claims list --json`."""
        return {"status": self.status, "amount_fen": self.amount_fen,
                "reasons": list(self.reasons), "trace": [s.to_json() for s in self.trace]}


# ---------------------------------------------------------------------------------------------
# The rule

def _overlapping(facts: ClaimFacts, others: tuple[OtherClaim, ...]) -> OtherClaim | None:
    for other in others:
        if other.status == REJECTED or other.admission_date is None:
            continue
        other_end = other.discharge_date or other.admission_date
        if other.admission_date <= facts.discharge_date and other_end >= facts.admission_date:
            return other
    return None


_ZERO = format_yuan(0)

# steps whose text has no numbers, built once
_ENROLLED = TraceStep("enrolment", _STEP["enrolment_ok"])
_NOT_ENROLLED = TraceStep("enrolment", _STEP["enrolment_failed"])
_NOT_EXCLUDED = TraceStep("exclusion", _STEP["exclusion_none"])
_NO_OVERLAP = TraceStep("duplicate", _STEP["duplicate_ok"])


def adjudicate(facts: ClaimFacts, rules: Rules, history: History) -> Decision:
    """Decide one claim (SPEC "Adjudication rule (exact)"). Raises ValueError for facts that are
    not facts: unknown insurance type or exclusion kind, discharge before admission, negative
    out-of-pocket amount."""
    if facts.insurance not in rules.thresholds_fen:
        raise ValueError(f"unknown insurance type {facts.insurance!r}; "
                         f"use one of {INSURANCE_TYPES}")
    if facts.exclusion is not None and facts.exclusion not in EXCLUSION_NAMES:
        raise ValueError(f"unknown exclusion {facts.exclusion!r}; use one of {EXCLUSION_KINDS}")
    if facts.discharge_date < facts.admission_date:
        raise ValueError("discharge date before admission date")
    if facts.out_of_pocket_fen < 0:
        raise ValueError("negative out-of-pocket amount")

    trace: list[TraceStep] = []
    reasons: list[str] = []
    o_fen = facts.out_of_pocket_fen
    o_text = format_yuan(o_fen)
    texts = rules._texts

    # 1. Eligibility: every reason that applies, not only the first.
    if history.enrolled_paid_this_year:
        trace.append(_ENROLLED)
    else:
        reasons.append("not_enrolled")
        trace.append(_NOT_ENROLLED)

    in_year = rules.year_start <= facts.admission_date <= rules.year_end
    if not in_year:
        reasons.append("outside_year")
    trace.append(TraceStep("year", _STEP["year_ok" if in_year else "year_failed"].format(
        admission=format_date(facts.admission_date), start=texts["start"], end=texts["end"])))

    if facts.exclusion is None:
        trace.append(_NOT_EXCLUDED)
    elif facts.exclusion in rules.exclusions:
        reasons.append(f"excluded_{facts.exclusion}")
        trace.append(TraceStep("exclusion", _STEP["exclusion_failed"].format(
            kind=EXCLUSION_NAMES[facts.exclusion])))
    else:
        trace.append(TraceStep("exclusion", _STEP["exclusion_not_in_scheme"].format(
            kind=EXCLUSION_NAMES[facts.exclusion])))

    threshold = rules.thresholds_fen[facts.insurance]
    insurance = INSURANCE_NAMES[facts.insurance]
    reached = o_fen >= threshold
    if not reached:
        reasons.append("below_threshold")
    trace.append(TraceStep("threshold", _STEP["threshold_ok" if reached else "threshold_failed"]
                           .format(out_of_pocket=o_text, insurance=insurance,
                                   threshold=texts["thresholds"][facts.insurance])))

    quota = rules.quotas_fen.get(facts.drg_code)
    if quota is None:
        reasons.append("unknown_drg")
    trace.append(TraceStep("drg", _STEP["drg_failed" if quota is None else "drg_ok"].format(
        drg=facts.drg_code)))

    other = _overlapping(facts, history.other_claims)
    other_text = ""
    if other is None:
        trace.append(_NO_OVERLAP)
    else:
        reasons.append("duplicate")
        other_text = (_TRACE["other_claim"].format(number=other.number) if other.number
                      else _TRACE["other_claim_unnumbered"])
        trace.append(TraceStep("duplicate", _STEP["duplicate_failed"].format(
            other=other_text, admission=format_date(other.admission_date),
            discharge=format_date(other.discharge_date or other.admission_date))))

    used = sum(c.amount_fen for c in history.other_claims
               if c.status in CAP_STATUSES and c.amount_fen
               and c.admission_date is not None
               and rules.year_start <= c.admission_date <= rules.year_end)

    def reject(codes: list[str]) -> Decision:
        values = dict(out_of_pocket=o_fen, threshold=threshold, insurance=insurance,
                      admission=facts.admission_date, start=rules.year_start, end=rules.year_end,
                      drg=facts.drg_code, cap=rules.annual_cap_fen, used=used, other=other_text)
        titles = "、".join(REASONS[code].title for code in codes)
        trace.append(TraceStep("decision", _STEP["rejected"].format(reasons=titles)))
        return Decision(REJECTED, None, tuple(codes), tuple(trace),
                        tuple(explain(code, **values) for code in codes))

    if reasons:
        return reject(reasons)

    # 2. The quota, with the continuous-member bonus. (q_text follows q, formatted on change.)
    q = quota
    q_text = texts["quotas"][facts.drg_code]
    trace.append(TraceStep("quota", _STEP["quota"].format(drg=facts.drg_code, amount=q_text)))
    if not rules.continuous_bonus:
        step = "bonus_not_in_scheme"
    elif history.enrolled_paid_previous_year:
        step = "bonus_applied"
        q, q_text = texts["with_bonus"][facts.drg_code]
    else:
        step = "bonus_none"
    trace.append(TraceStep("continuous_bonus", _STEP[step].format(
        percent=texts["percent"], amount=q_text)))

    # 3. Minimum, then maximum and the out-of-pocket amount.
    if q < rules.min_per_claim_fen:
        q, q_text = rules.min_per_claim_fen, texts["minimum"]
    trace.append(TraceStep("minimum", _STEP["minimum"].format(
        minimum=texts["minimum"], amount=q_text)))
    if q > rules.max_per_claim_fen:
        q, q_text = rules.max_per_claim_fen, texts["maximum"]
    if q > o_fen:
        q, q_text = o_fen, o_text
    trace.append(TraceStep("maximum", _STEP["maximum"].format(
        maximum=texts["maximum"], out_of_pocket=o_text, amount=q_text)))

    # 4. What is left of the annual cap.
    remaining = rules.annual_cap_fen - used
    remaining_text = texts["cap"] if used == 0 else format_yuan(max(remaining, 0))
    if q > remaining:
        q, q_text = remaining, remaining_text
    trace.append(TraceStep("annual_cap", _STEP["annual_cap"].format(
        cap=texts["cap"], used=_ZERO if used == 0 else format_yuan(used),
        remaining=remaining_text, amount=q_text)))
    if q <= 0:
        return reject(["annual_cap_reached"])

    # 5. Approve.
    trace.append(TraceStep("decision", _STEP["approved"].format(amount=q_text)))
    return Decision(APPROVED, q, (), tuple(trace))

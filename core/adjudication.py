"""Adjudication: the subsidy for one claim, by DRG group quota (按病种定额补助).

`adjudicate(facts, rules, history) -> Decision` is a pure function implementing SPEC "Adjudication
rule (exact)" in integer fen: no I/O, no clock. The caller gathers the facts (from /核定), the
rules (`Rules.from_scheme(scheme)`) and the member's history (enrolment in this and the previous
scheme year, the member's other claims); the decision carries the status, the amount, every
reason code and a trace of each rule applied with its numbers, in Chinese.

Texts come from templates/messages/trace.yaml and reasons.yaml, read once at import. The scheme's
own numbers (its dates and amounts, each DRG group's quota with and without the bonus) are written
into them once per `Rules` (`Rules._texts`); a claim's own numbers are filled in by position.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cached_property
from types import MappingProxyType
from typing import Mapping, NamedTuple

import yaml

from core.config import TEMPLATES_DIR
from core.messages import format_date
from core.money import format_yuan, round_half_up
from core.scheme import EXCLUSION_KINDS, INSURANCE_TYPES, Scheme

APPROVED = "approved"
REJECTED = "rejected"

EXCLUSION_REASONS = tuple(f"excluded_{kind}" for kind in EXCLUSION_KINDS)
COMPUTED_REASONS = ("not_enrolled", "not_covered_yet", "outside_year", *EXCLUSION_REASONS,
                    "uninsured_not_covered", "below_threshold", "unknown_drg", "duplicate",
                    "filed_late", "annual_cap_reached")
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
_SCHEME_EXCLUSION: Mapping[str, str] = _TRACE["scheme_exclusion"]


def exclusion_reason(code: str, label: str | None = None) -> ReasonText:
    """The texts of `excluded_<code>`: the built-in kind's, or — for an exclusion the scheme
    lists itself ({code, label}) — the generic texts with the scheme's label."""
    if code in REASONS:
        return REASONS[code]
    name = label or code.removeprefix("excluded_")
    return ReasonText(**{k: v.format(label=name) for k, v in _SCHEME_EXCLUSION.items()})
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


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _positional(template: str, *names: str) -> str:
    """`template` with its fields renumbered by their place in `names`: {0}, {1}, … so that
    `_positional(t, *names).format(*values)` is `t.format(**dict(zip(names, values)))`, filled
    by position (cheaper than by keyword). A field not in `names` raises KeyError at once."""
    parts = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(_escape(literal))
        if name is not None:
            if name not in names:
                raise KeyError(f"{name!r} in {template!r}")
            parts.append("{%d%s%s}" % (names.index(name), f"!{conversion}" if conversion else "",
                                       f":{spec}" if spec else ""))
    return "".join(parts)


#: the values adjudicate() gives explain() for a rejection, in the order of _EXPLANATIONS' fields
_EXPLAINED = ("out_of_pocket", "threshold", "insurance", "admission", "start", "end", "drg", "cap",
              "used", "other", "cover_from", "last_day")


def _explanation(reason: ReasonText) -> str:
    """explain(code, **values) as a template over the _EXPLAINED values, by position."""
    if reason.detail and reason.fields <= set(_EXPLAINED):
        return _positional(reason.detail, *_EXPLAINED) + _escape(reason.remedy)
    return _escape(f"{reason.text}{reason.remedy}")


_EXPLANATIONS = {code: _explanation(REASONS[code]) for code in COMPUTED_REASONS}

# the trace's texts, their values filled by position in the order named
_YEAR_IN = _positional(_STEP["year_ok"], "admission", "start", "end")
_YEAR_OUT = _positional(_STEP["year_failed"], "admission", "start", "end")
_THRESHOLD_REACHED = _positional(_STEP["threshold_ok"], "out_of_pocket", "insurance", "threshold")
_THRESHOLD_NOT_REACHED = _positional(_STEP["threshold_failed"], "out_of_pocket", "insurance",
                                     "threshold")
_KNOWN_DRG = _positional(_STEP["drg_ok"], "drg")
_UNKNOWN_DRG = _positional(_STEP["drg_failed"], "drg")
_OTHER_CLAIM = _positional(_TRACE["other_claim"], "number")
_OVERLAP = _positional(_STEP["duplicate_failed"], "other", "admission", "discharge")
_QUOTA = _positional(_STEP["quota"], "drg", "amount")
_BONUS = {step: _positional(_STEP[step], "percent", "amount")
          for step in ("bonus_applied", "bonus_none", "bonus_not_in_scheme")}
_MINIMUM = _positional(_STEP["minimum"], "minimum", "amount")
_MAXIMUM = _positional(_STEP["maximum"], "maximum", "out_of_pocket", "amount")
_ANNUAL_CAP = _positional(_STEP["annual_cap"], "cap", "used", "remaining", "amount")
_APPROVED = _positional(_STEP["approved"], "amount")
_COVERED = _positional(_STEP["cover_ok"], "admission", "cover_from")
_NOT_COVERED = _positional(_STEP["cover_failed"], "admission", "cover_from")
_FILED = _positional(_STEP["filed_ok"], "filed", "last_day")
_FILED_LATE = _positional(_STEP["filed_failed"], "filed", "last_day")
_SUBSIDY_BONUS = {step: _positional(_STEP[step], "percent", "amount")
                  for step in ("bonus_subsidy_applied", "bonus_subsidy_none")}
_REJECTED = _positional(_STEP["rejected"], "reasons")


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
    exclusion: str | None = None  # an exclusion code (the rules'), as found by the reviewer
    filed_on: date | None = None  # the day the claim was submitted (claims.file_within_days)


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
    # the first day of the member's cover (scheme `cover`); None: the whole year
    cover_from: date | None = None


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
    exclusion_labels: Mapping[str, str] = field(default_factory=dict)  # code -> label
    file_within_days: int | None = None
    bonus_applies_to: str = "quota"  # quota | subsidy

    @classmethod
    def from_scheme(cls, scheme: Scheme) -> "Rules":
        b, c = scheme.benefit, scheme.claims
        labels = {code: c.label_of(code) for code in c.exclusions}
        return cls(scheme.year.start, scheme.year.end, c.thresholds_fen,
                   b.quotas_fen, b.min_per_claim_fen, b.max_per_claim_fen, b.annual_cap_fen,
                   b.continuous_bonus, frozenset(c.exclusions), MappingProxyType(labels),
                   c.file_within_days, b.bonus_applies_to)

    @cached_property
    def _texts(self) -> _SchemeTexts:
        """The rules' own numbers as the trace shows them, written once."""
        return _SchemeTexts(self)


class _Threshold(NamedTuple):
    fen: int
    insurance: str  # the insurance type's name, e.g. 居民医保
    text: str  # the threshold, e.g. "3,500.00 元"


class _Written(dict):
    """A quota table's (amount, text) per DRG group, each written when first asked for (a
    decision reads one group of the 628: writing them all cost more than the decision)."""

    def __init__(self, source, write):
        super().__init__()
        self._source, self._write = source, write

    def __contains__(self, code) -> bool:
        return code in self._source

    def __missing__(self, code):
        value = self[code] = self._write(self._source[code])
        return value


class _SchemeTexts:
    """The scheme's own numbers as its decisions' traces and explanations show them."""
    __slots__ = ("start", "end", "thresholds", "quotas", "quotas_continuous", "percent",
                 "bonus_new", "bonus_continuing", "minimum", "maximum", "cap")

    def __init__(self, rules: Rules):
        self.start, self.end = format_date(rules.year_start), format_date(rules.year_end)
        self.thresholds = {kind: _Threshold(fen, INSURANCE_NAMES[kind], format_yuan(fen))
                           for kind, fen in rules.thresholds_fen.items()}
        # DRG group -> (quota, its text); for continuing members with the bonus, if any
        self.quotas = _Written(rules.quotas_fen, lambda q: (q, format_yuan(q)))
        self.percent = f"{(rules.continuous_bonus * 100).normalize():f}"
        if rules.continuous_bonus and rules.bonus_applies_to == "subsidy":
            self.quotas_continuous = self.quotas  # the bonus lifts the amount after min and max
            self.bonus_new = _SUBSIDY_BONUS["bonus_subsidy_none"]
            self.bonus_continuing = _SUBSIDY_BONUS["bonus_subsidy_applied"]
        elif rules.continuous_bonus:
            factor = Decimal(1) + rules.continuous_bonus
            self.quotas_continuous = _Written(
                rules.quotas_fen, lambda q: (b := round_half_up(q * factor), format_yuan(b)))
            self.bonus_new, self.bonus_continuing = _BONUS["bonus_none"], _BONUS["bonus_applied"]
        else:
            self.quotas_continuous = self.quotas
            self.bonus_new = self.bonus_continuing = _BONUS["bonus_not_in_scheme"]
        self.minimum = format_yuan(rules.min_per_claim_fen)
        self.maximum = format_yuan(rules.max_per_claim_fen)
        self.cap = format_yuan(rules.annual_cap_fen)


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

_ZERO = format_yuan(0)

# steps whose text has no numbers of the claim, built once
_ENROLLED = TraceStep("enrolment", _STEP["enrolment_ok"])
_NOT_ENROLLED = TraceStep("enrolment", _STEP["enrolment_failed"])
_NOT_EXCLUDED = TraceStep("exclusion", _STEP["exclusion_none"])
_EXCLUDED = {kind: TraceStep("exclusion", _STEP["exclusion_failed"].format(kind=name))
             for kind, name in EXCLUSION_NAMES.items()}
_EXCLUSION_NOT_IN_SCHEME = {
    kind: TraceStep("exclusion", _STEP["exclusion_not_in_scheme"].format(kind=name))
    for kind, name in EXCLUSION_NAMES.items()}
_NO_OVERLAP = TraceStep("duplicate", _STEP["duplicate_ok"])

def _rejection(codes: list[str], trace: tuple[TraceStep, ...], values: tuple[str, ...],
               labels: Mapping[str, str] | None = None) -> Decision:
    """Reject for `codes`, after the steps in `trace`; `values` as _EXPLAINED; `labels` the
    scheme's own exclusions' labels (code -> label)."""
    def title(code: str) -> str:
        if code in REASONS:
            return REASONS[code].title
        return exclusion_reason(code, (labels or {}).get(code[9:])).title

    def explanation(code: str) -> str:
        if code in _EXPLANATIONS:
            return _EXPLANATIONS[code].format(*values)
        reason = exclusion_reason(code, (labels or {}).get(code[9:]))
        return f"{reason.text}{reason.remedy}"

    titles = "、".join([title(code) for code in codes])
    return Decision(REJECTED, None, tuple(codes),
                    (*trace, TraceStep("decision", _REJECTED.format(titles))),
                    tuple([explanation(code) for code in codes]))


def adjudicate(facts: ClaimFacts, rules: Rules, history: History) -> Decision:
    """Decide one claim (SPEC "Adjudication rule (exact)"). Raises ValueError for facts that are
    not facts: unknown insurance type or exclusion kind, discharge before admission, negative
    out-of-pocket amount."""
    texts = rules._texts
    if facts.insurance not in INSURANCE_TYPES:
        raise ValueError(f"unknown insurance type {facts.insurance!r}; "
                         f"use one of {INSURANCE_TYPES}")
    threshold = texts.thresholds.get(facts.insurance)  # None: this type is not covered
    exclusion = facts.exclusion
    if (exclusion is not None and exclusion not in EXCLUSION_NAMES
            and exclusion not in rules.exclusions):
        raise ValueError(f"unknown exclusion {exclusion!r}; use one of "
                         f"{sorted(set(EXCLUSION_KINDS) | set(rules.exclusions))}")
    admission, discharge = facts.admission_date, facts.discharge_date
    if discharge < admission:
        raise ValueError("discharge date before admission date")
    o_fen = facts.out_of_pocket_fen
    if o_fen < 0:
        raise ValueError("negative out-of-pocket amount")

    reasons: list[str] = []
    o_text = format_yuan(o_fen)
    admission_text = format_date(admission)
    year_start, year_end = rules.year_start, rules.year_end

    # 1. Eligibility: every reason that applies, not only the first.
    if history.enrolled_paid_this_year:
        enrolment = _ENROLLED
    else:
        reasons.append("not_enrolled")
        enrolment = _NOT_ENROLLED
    cover_from = history.cover_from
    cover_text = format_date(cover_from) if cover_from is not None else ""
    covered: tuple[TraceStep, ...] = ()
    if cover_from is not None and history.enrolled_paid_this_year:
        if admission >= cover_from:
            covered = (TraceStep("cover", _COVERED.format(admission_text, cover_text)),)
        else:
            reasons.append("not_covered_yet")
            covered = (TraceStep("cover", _NOT_COVERED.format(admission_text, cover_text)),)

    if year_start <= admission <= year_end:
        year = TraceStep("year", _YEAR_IN.format(admission_text, texts.start, texts.end))
    else:
        reasons.append("outside_year")
        year = TraceStep("year", _YEAR_OUT.format(admission_text, texts.start, texts.end))

    if exclusion is None:
        excluded = _NOT_EXCLUDED
    elif exclusion in rules.exclusions:
        reasons.append(f"excluded_{exclusion}")
        label = rules.exclusion_labels.get(exclusion)
        excluded = (_EXCLUDED[exclusion] if label is None and exclusion in _EXCLUDED else
                    TraceStep("exclusion", _STEP["exclusion_failed"].format(
                        kind=label or EXCLUSION_NAMES.get(exclusion, exclusion))))
    else:
        excluded = _EXCLUSION_NOT_IN_SCHEME[exclusion]

    if threshold is None:  # the scheme has no threshold for the uninsured: not covered
        reasons.append("uninsured_not_covered")
        threshold = _Threshold(0, INSURANCE_NAMES[facts.insurance], "")
        reached = TraceStep("threshold", _STEP["uninsured_not_covered"].format(
            insurance=threshold.insurance))
    else:
        if o_fen >= threshold.fen:
            text = _THRESHOLD_REACHED
        else:
            reasons.append("below_threshold")
            text = _THRESHOLD_NOT_REACHED
        reached = TraceStep("threshold", text.format(o_text, threshold.insurance,
                                                     threshold.text))

    drg = facts.drg_code
    if drg in texts.quotas:
        known = TraceStep("drg", _KNOWN_DRG.format(drg))
    else:
        reasons.append("unknown_drg")
        known = TraceStep("drg", _UNKNOWN_DRG.format(drg))

    # The member's other claims, in one pass: the first (not rejected) whose stay overlaps this
    # one, and the amounts that count against this year's cap (step 4).
    overlap = None
    used = 0
    for other in history.other_claims:
        admitted = other.admission_date
        if admitted is None:
            continue
        if (other.status in CAP_STATUSES and other.amount_fen
                and year_start <= admitted <= year_end):
            used += other.amount_fen
        if (overlap is None and other.status != REJECTED and admitted <= discharge
                and (other.discharge_date or admitted) >= admission):
            overlap = other

    other_text = ""
    if overlap is None:
        duplicate = _NO_OVERLAP
    else:
        reasons.append("duplicate")
        other_text = (_OTHER_CLAIM.format(overlap.number) if overlap.number
                      else _TRACE["other_claim_unnumbered"])
        duplicate = TraceStep("duplicate", _OVERLAP.format(
            other_text, format_date(overlap.admission_date),
            format_date(overlap.discharge_date or overlap.admission_date)))

    filed: tuple[TraceStep, ...] = ()
    last_text = ""
    if rules.file_within_days is not None and facts.filed_on is not None:
        last_day = discharge + timedelta(days=rules.file_within_days)
        last_text = format_date(last_day)
        if facts.filed_on <= last_day:
            filed = (TraceStep("filed", _FILED.format(format_date(facts.filed_on), last_text)),)
        else:
            reasons.append("filed_late")
            filed = (TraceStep("filed", _FILED_LATE.format(format_date(facts.filed_on),
                                                           last_text)),)

    used_text = _ZERO if used == 0 else format_yuan(used)
    eligibility = (enrolment, *covered, year, excluded, reached, known, duplicate, *filed)
    values = (o_text, threshold.text, threshold.insurance, admission_text, texts.start, texts.end,
              drg, texts.cap, used_text, other_text, cover_text, last_text)
    if reasons:
        return _rejection(reasons, eligibility, values, rules.exclusion_labels)

    # 2. The quota, with the continuous-member bonus. (q_text follows q.)
    q, q_text = texts.quotas[drg]
    quota = TraceStep("quota", _QUOTA.format(drg, q_text))
    on_subsidy = rules.bonus_applies_to == "subsidy" and bool(rules.continuous_bonus)
    if on_subsidy:
        bonus = None  # after the minimum and the maximum
    elif history.enrolled_paid_previous_year:
        q, q_text = texts.quotas_continuous[drg]
        bonus = TraceStep("continuous_bonus", texts.bonus_continuing.format(texts.percent, q_text))
    else:
        bonus = TraceStep("continuous_bonus", texts.bonus_new.format(texts.percent, q_text))

    # 3. Minimum, then maximum and the out-of-pocket amount.
    if q < rules.min_per_claim_fen:
        q, q_text = rules.min_per_claim_fen, texts.minimum
    minimum = TraceStep("minimum", _MINIMUM.format(texts.minimum, q_text))
    if q > rules.max_per_claim_fen:
        q, q_text = rules.max_per_claim_fen, texts.maximum
    if q > o_fen:
        q, q_text = o_fen, o_text
    maximum = TraceStep("maximum", _MAXIMUM.format(texts.maximum, o_text, q_text))
    if on_subsidy:  # bonus.continuity applies_to subsidy: the amount itself, never past O
        if history.enrolled_paid_previous_year:
            q = min(round_half_up(q * (Decimal(1) + rules.continuous_bonus)), o_fen)
            q_text = format_yuan(q)
            step = texts.bonus_continuing
        else:
            step = texts.bonus_new
        bonus = TraceStep("continuous_bonus", step.format(texts.percent, q_text))

    # 4. What is left of the annual cap.
    remaining = rules.annual_cap_fen - used
    remaining_text = texts.cap if used == 0 else format_yuan(max(remaining, 0))
    if q > remaining:
        q, q_text = remaining, remaining_text
    middle = (minimum, maximum, bonus) if on_subsidy else (bonus, minimum, maximum)
    trace = (*eligibility, quota, *middle,
             TraceStep("annual_cap", _ANNUAL_CAP.format(texts.cap, used_text, remaining_text,
                                                        q_text)))
    if q <= 0:
        return _rejection(["annual_cap_reached"], trace, values, rules.exclusion_labels)

    # 5. Approve.
    return Decision(APPROVED, q, (), (*trace, TraceStep("decision", _APPROVED.format(q_text))))

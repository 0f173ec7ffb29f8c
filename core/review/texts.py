"""Texts shared by replies and notifications: the trace lines a reply shows."""
from __future__ import annotations

from typing import Mapping, Sequence

from sqlalchemy.orm import object_session

from core.adjudication import REASONS, Decision, exclusion_reason, explain
from core.crypto import mask_name
from core.models import Claim, SchemeYear


_CALCULATION_STEPS = ("quota", "continuous_bonus", "minimum", "maximum", "annual_cap")
_STEP_OF_REASON = {"not_enrolled": "enrolment", "outside_year": "year", "below_threshold":
                   "threshold", "unknown_drg": "drg", "duplicate": "duplicate",
                   "annual_cap_reached": "annual_cap", "not_covered_yet": "cover",
                   "uninsured_not_covered": "threshold", "filed_late": "filed"}


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


def exclusion_labels(claim: Claim | None) -> Mapping[str, str]:
    """The claim's scheme's exclusions, code -> label (empty without a scheme year)."""
    session = object_session(claim) if claim is not None else None
    if session is None or claim.scheme_year_id is None:
        return {}
    claims = session.get(SchemeYear, claim.scheme_year_id).scheme.claims
    return {code: claims.label_of(code) for code in claims.exclusions}


def reason_title(code: str, claim: Claim | None = None) -> str:
    """A reason's title; an exclusion the scheme lists itself by the claim's scheme's label."""
    if code in REASONS:
        return REASONS[code].title
    if code.startswith("excluded_"):
        return exclusion_reason(code, exclusion_labels(claim).get(code[9:])).title
    return code


def _explanations(decision: Decision | None, codes: Sequence[str],
                  claim: Claim | None = None) -> list[str]:
    by_code = dict(zip(decision.reasons, decision.explanations)) if decision else {}
    out = []
    for code in codes:
        if by_code.get(code):
            out.append(by_code[code])
        elif code in REASONS:
            out.append(explain(code))
        else:
            reason = exclusion_reason(code, exclusion_labels(claim).get(code[9:]))
            out.append(f"{reason.text}{reason.remedy}")
    return out


def member_label(claim: Claim) -> str:
    return mask_name(claim.member.name)

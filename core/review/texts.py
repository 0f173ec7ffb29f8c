"""Texts shared by replies and notifications: the trace lines a reply shows."""
from __future__ import annotations

from typing import Mapping, Sequence

from core.adjudication import REASONS, Decision, explain
from core.crypto import mask_name
from core.models import Claim


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

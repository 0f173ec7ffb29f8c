"""The designer's refusal: bad input (an option, a weights row), one line saying what is wrong
and what to give instead."""
from __future__ import annotations

from core.texts import text_of


class DesignError(Exception):
    """Bad input to the quota designer; the message names the option or the file and line."""


class RuleDrift(AssertionError):
    """The simulation's vectorised payout disagreed with `core.adjudication.adjudicate` on a
    sampled draw: the simulation no longer follows the rule."""


def design_text(key: str, /, **values) -> str:
    """A text of templates/design_texts.yaml (the designer's refusals) with `values` filled in."""
    return text_of("design_texts", key, **values)

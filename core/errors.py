"""The one base of the domain's refusals.

A service in core/ that cannot do what it is asked raises a `DomainError` subclass BEFORE it
changes anything: `code` is a stable string (the reply templates and the CLI word each code),
`details` the values the wording shows. Each area keeps its own subclass (`PayoutError`,
`ReviewError`, `ClaimError`, …), so `except` sites name what they expect; a caller that handles
every refusal alike catches `DomainError`.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal with a stable `code` and the `details` to show; nothing was changed."""

    def __init__(self, code: str, **details: Any):
        super().__init__(code)
        self.code = code
        self.details = details

    @property
    def detail(self) -> dict[str, Any]:
        """The older name of `details`."""
        return self.details

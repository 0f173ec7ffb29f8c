"""The refusal of a review action."""
from __future__ import annotations

from core.errors import DomainError


class ReviewError(DomainError):
    """A review action cannot be done; nothing was changed. `code` names why (the reply
    templates word each code); `details` carries the values to show."""

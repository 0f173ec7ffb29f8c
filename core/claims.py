"""Claims: the status machine of SPEC "Statuses". Every change goes through `transition`, which
checks it is allowed, writes the audit row and queues the household's notification — all in the
caller's transaction. (The claim dialogue's services extend this module.)"""
from __future__ import annotations

from sqlalchemy.orm import Session

from core.audit import audit
from core.models import Claim, ClaimStatus as S
from core.notify import notify_household

ALLOWED: dict[S, frozenset[S]] = {
    S.collecting: frozenset({S.submitted}),
    S.submitted: frozenset({S.in_review, S.need_documents, S.rejected}),
    S.in_review: frozenset({S.in_review, S.need_documents, S.approved, S.rejected}),
    S.need_documents: frozenset({S.submitted, S.rejected}),
    S.approved: frozenset({S.in_payout, S.rejected}),
    S.in_payout: frozenset({S.paid, S.payout_failed}),
    S.payout_failed: frozenset({S.approved}),
    S.paid: frozenset({S.recovered}),
    S.rejected: frozenset(),
    S.recovered: frozenset(),
}


class TransitionError(ValueError):
    def __init__(self, claim: Claim, to: S):
        super().__init__(f"claim {claim.number}: {claim.status.value} → {to.value} not allowed")
        self.claim, self.to = claim, to


def can_transition(claim: Claim, to: S) -> bool:
    return to in ALLOWED[claim.status]


def transition(session: Session, claim: Claim, to: S, actor: str, *,
               notify: str | None = None, detail: dict | None = None, **context) -> Claim:
    """Move a claim to `to`. `notify` names a template (templates/messages/<notify>.j2) sent to
    every user linked to the household, rendered with `claim` and `context`."""
    if not can_transition(claim, to):
        raise TransitionError(claim, to)
    before = {"status": claim.status.value, "amount_fen": claim.amount_fen}
    claim.status = to
    audit(session, actor, f"claim.{to.value}", "claim", claim.number, before,
          {"status": to.value, "amount_fen": claim.amount_fen, **(detail or {})})
    if notify:
        notify_household(session, claim.household_id, notify, claim=claim, **context)
    session.flush()
    return claim

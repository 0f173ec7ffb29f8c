"""Recoveries (追回): a paid subsidy to be paid back."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import claims as claim_rules
from core import ledger
from core.audit import audit
from core.crypto import scrub
from core.defaults import REASON_MAX
from core.models import Claim, ClaimStatus as S, Household, JournalEntry
from core.payouts.common import PayoutError, find_claim


def recover_claim(session: Session, claim_number: str, reason: str, actor: str, today: date,
                  received: bool = False) -> Claim:
    """A paid subsidy to be paid back (fraud): the claim `recovered`, a receivable in the ledger,
    the household told. The member's annual cap is free again (adjudication counts only
    approved, in_payout and paid claims). `received=True` records the money as back in the
    fund (also later, for a claim already recovered)."""
    claim = find_claim(session, claim_number)
    pool_id = session.get_one(Household, claim.household_id).pool_id
    amount = claim.amount_fen or 0
    if claim.status is S.recovered:
        if not received:
            raise PayoutError("already_recovered", claim=claim.number)
    elif claim.status is not S.paid:
        raise PayoutError("not_paid", claim=claim.number, status=claim.status.value)
    else:
        reason = scrub((reason or "").strip())[:REASON_MAX]
        if not reason:
            raise PayoutError("reason_required", claim=claim.number)
        claim_rules.transition(session, claim, S.recovered, actor, notify="payout_recovered",
                               detail={"reason": reason}, reason=reason)
        ledger.post(session, pool_id, "recovery", f"recovery:{claim.number}",
                    {ledger.RECOVERY_RECEIVABLE: amount, ledger.RECOVERY_INCOME: -amount},
                    today, f"追回 {claim.number}")
    if received:
        ref = f"recovery-received:{claim.number}"
        if session.scalar(select(JournalEntry.id).where(JournalEntry.ref == ref)) is None:
            ledger.post(session, pool_id, "recovery", ref,
                        {ledger.CASH: amount, ledger.RECOVERY_RECEIVABLE: -amount}, today,
                        f"追回到账 {claim.number}")
            audit(session, actor, "claim.recovery_received", "claim", claim.number, None,
                  {"amount_fen": amount})
    session.flush()
    return claim

"""Confirmation of a batch (/确认发放) and bounced transfers (/发放失败)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import claims as claim_rules
from core import ledger
from core.notices import claim_variables
from core.audit import audit
from core.bankcards import active_card, deactivate
from core.crypto import mask_name, scrub
from core.defaults import REASON_MAX
from core.models import (BatchStatus, Claim, ClaimStatus as S, PayoutLine, PayoutLineStatus as L,
                         utcnow)
from core.payouts.common import PayoutError, _households, find_batch, find_claim


@dataclass
class ConfirmResult:
    batch: str
    pool_id: int
    already: bool
    paid: int
    paid_fen: int
    failed: int


def confirm_batch(session: Session, number: str, actor: str, today: date) -> ConfirmResult:
    """The bank transfer is done: pending lines and their claims `paid`, one ledger entry for
    the batch, each household told the amount and the masked card. Confirming again changes
    nothing."""
    batch = find_batch(session, number, lock=True)
    failed = session.scalar(select(func.count(PayoutLine.id)).where(
        PayoutLine.batch_id == batch.id, PayoutLine.status == L.failed))
    if batch.status is BatchStatus.confirmed:
        paid = session.execute(select(func.count(PayoutLine.id),
                                      func.coalesce(func.sum(PayoutLine.amount_fen), 0))
                               .where(PayoutLine.batch_id == batch.id,
                                      PayoutLine.status == L.paid)).one()
        return ConfirmResult(batch.number, batch.pool_id, True, paid[0], int(paid[1]), failed)
    if batch.status is not BatchStatus.exported:
        raise PayoutError("not_exported", batch=batch.number)
    now = utcnow()
    q = (select(PayoutLine.id, Claim.id, Claim.number, Claim.household_id, PayoutLine.amount_fen,
                PayoutLine.card_bank, PayoutLine.card_number_masked, PayoutLine.card_holder)
         .join(Claim, Claim.id == PayoutLine.claim_id)
         .where(PayoutLine.batch_id == batch.id, PayoutLine.status == L.pending)
         .order_by(PayoutLine.id))
    items = [{"line_id": lid, "claim_id": cid, "claim_number": cno, "household_id": hid,
              "amount_fen": fen, "bank": bank, "masked": masked, "holder": mask_name(holder),
              "batch": batch.number}
             for lid, cid, cno, hid, fen, bank, masked, holder in session.execute(q)]
    session.execute(update(PayoutLine)
                    .where(PayoutLine.batch_id == batch.id, PayoutLine.status == L.pending)
                    .values(status=L.paid).execution_options(synchronize_session=False))
    claim_rules.transition_bulk(
        session, select(PayoutLine.claim_id).where(PayoutLine.batch_id == batch.id,
                                                   PayoutLine.status == L.paid),
        items, S.in_payout, S.paid, actor, now=now, what=f"batch {batch.number}",
        notify="payout_paid", detail={"batch": batch.number}, households=_households(batch.id),
        event="payout_paid")
    total = sum(it["amount_fen"] for it in items)
    if total:
        ledger.post(session, batch.pool_id, "payout", f"payout:{batch.number}",
                    {ledger.CASH: -total, ledger.SUBSIDY: total}, today,
                    f"补助发放 {batch.number}，{len(items)} 笔")
    batch.status = BatchStatus.confirmed
    batch.confirmed_at = now
    audit(session, actor, "payout.confirm", "payout_batch", batch.number, {"status": "exported"},
          {"status": "confirmed", "paid": len(items), "paid_fen": total, "failed": failed})
    session.flush()
    # the month's public disclosure goes out with the confirmation (SPEC: monthly, after a batch)
    from core.disclosure import publish

    publish(session, batch.pool_id, batch.month, actor=actor)
    return ConfirmResult(batch.number, batch.pool_id, False, len(items), total, failed)


@dataclass
class FailureResult:
    batch: str
    claim: str
    household_id: int
    amount_fen: int
    after_confirm: bool
    card_deactivated: bool


def record_failure(session: Session, batch_number: str, claim_number: str, text: str,
                   actor: str, today: date) -> FailureResult:
    """A transfer bounced: its line `failed`, the claim `payout_failed` → `approved` (back in
    the queue for the next month), the card it went to deactivated, the household asked for a
    new card. The rest of the batch is untouched. After confirmation the subsidy is reversed in
    the ledger (`payout-return:<batch>:<claim>`)."""
    batch = find_batch(session, batch_number, lock=True)
    if batch.status is BatchStatus.draft:
        raise PayoutError("not_exported", batch=batch.number)
    claim = find_claim(session, claim_number)
    line = session.scalar(select(PayoutLine).where(PayoutLine.batch_id == batch.id,
                                                   PayoutLine.claim_id == claim.id)
                          .with_for_update())
    if line is None:
        raise PayoutError("not_in_batch", batch=batch.number, claim=claim.number)
    if line.status is L.failed:
        raise PayoutError("already_failed", batch=batch.number, claim=claim.number)
    if claim.status not in (S.in_payout, S.paid):  # recovered since, say
        raise PayoutError("wrong_status", claim=claim.number, status=claim.status.value)
    reason = scrub((text or "").strip())[:REASON_MAX] or "转账退回"
    after_confirm = line.status is L.paid
    line.status = L.failed
    line.failure = reason
    card = active_card(session, claim.household_id)
    deactivated = card is not None and card.number_enc == line.card_number_enc
    if deactivated:
        deactivate(session, card, actor, f"payout failed: {reason}")
    if after_confirm:
        ledger.post(session, batch.pool_id, "payout_return",
                    f"payout-return:{batch.number}:{claim.number}",
                    {ledger.CASH: line.amount_fen, ledger.SUBSIDY: -line.amount_fen}, today,
                    f"转账退回 {claim.number}")
    detail = {"batch": batch.number, "reason": reason}
    claim_rules.transition(session, claim, S.payout_failed, actor, detail=detail)
    claim_rules.transition(session, claim, S.approved, actor, detail=detail,
                           notify="payout_failed", amount_fen=line.amount_fen,
                           event="payout_failed", variables=claim_variables(
                               claim, "payout_failed", amount=line.amount_fen, date=today),
                           bank=line.card_bank, masked=line.card_number_masked, reason=reason,
                           card_deactivated=deactivated)
    audit(session, actor, "payout.line_failed", "payout_batch", batch.number,
          {"claim": claim.number, "status": "paid" if after_confirm else "pending"},
          {"claim": claim.number, "status": "failed", "reason": reason})
    session.flush()
    return FailureResult(batch.number, claim.number, claim.household_id, line.amount_fen,
                         after_confirm, deactivated)

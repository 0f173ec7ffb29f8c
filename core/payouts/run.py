"""The payout run (`run_payout`) and the export step (`export_batch`): see core.payouts."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import claims as claim_rules
from core.audit import audit
from core.bulk import insert_many
from core.crypto import PersonalDataVault
from core.models import (BatchStatus, ClaimStatus as S, PayoutBatch, PayoutLine,
                         PayoutLineStatus as L, Pool, utcnow)
from core.notify import notify_household
from core.payouts.bank_file import bank_rows, batch_file, write_bank_file
from core.payouts.common import _households, _notify_admins, batch_number, check_month, find_pool
from core.payouts.plan import Candidate, Plan, plan


def _remind_card(session: Session, waiting: list[Candidate]) -> int:
    """Households whose approved claims wait for a bank card are asked again (bankcard_needed),
    once per household per run."""
    seen: set[int] = set()
    for c in waiting:
        if c.household_id not in seen:
            seen.add(c.household_id)
            notify_household(session, c.household_id, "bankcard_needed",
                             claim={"number": c.claim_number})
    return len(seen)



@dataclass
class RunResult:
    pool: str
    month: str
    batch: str | None = None  # the batch number; None when nothing could be paid
    created: bool = False  # this call made the batch
    exported: bool = False  # this call moved it draft → exported (and told the admins)
    file_written: bool = False  # this call wrote the bank file
    file: str | None = None
    status: str | None = None
    lines: int = 0
    total_fen: int = 0
    figures: dict = field(default_factory=dict)  # the plan's figures when the batch was made

    def to_json(self) -> dict:
        return {"pool": self.pool, "month": self.month, "batch": self.batch,
                "created": self.created, "exported": self.exported,
                "file_written": self.file_written, "file": self.file, "status": self.status,
                "lines": self.lines, "total_fen": self.total_fen, **self.figures}


class _NothingToPay(Exception):
    def __init__(self, plan: Plan):
        super().__init__("nothing to pay")
        self.plan = plan


def _create_batch(session: Session, pool: Pool, month: str, actor: str,
                  today: date) -> tuple[PayoutBatch, Plan | None]:
    # one run of a pool at a time: a second one (any month) waits here until the first commits
    # and then sees its batch and its claims in_payout. FOR NO KEY UPDATE leaves rows that only
    # refer to the pool (households, ledger entries) free to be written meanwhile. (SQLite:
    # BEGIN IMMEDIATE has serialised the whole transaction already.)
    session.execute(select(Pool.id).where(Pool.id == pool.id).with_for_update(key_share=True))
    existing = session.scalar(select(PayoutBatch).where(PayoutBatch.pool_id == pool.id,
                                                        PayoutBatch.month == month))
    if existing is not None:
        return existing, None
    now = utcnow()
    batch = PayoutBatch(number=batch_number(pool, month), pool_id=pool.id, month=month,
                        status=BatchStatus.draft, total_fen=0, created_at=now)
    session.add(batch)
    session.flush()  # the unique (pool, month) constraint backs the lock up
    p = plan(session, pool.id, today)
    if not p.take:
        raise _NothingToPay(p)
    items = []
    lines = []
    for c in p.take:
        lines.append({"claim_id": c.claim_id, "amount_fen": c.amount_fen,
                      "card_bank": c.bank, "card_holder": c.holder or "",
                      "card_number_enc": c.number_enc, "card_number_masked": c.number_masked})
        items.append({"claim_id": c.claim_id, "claim_number": c.claim_number,
                      "household_id": c.household_id, "amount_fen": c.amount_fen,
                      "bank": c.bank, "masked": c.number_masked, "batch": batch.number,
                      "month": month})
    insert_many(session, PayoutLine, lines, {"batch_id": batch.id, "status": L.pending})
    batch.total_fen = p.total_fen
    # a claim changed meanwhile (rejected?) raises: never half a batch
    claim_rules.transition_bulk(
        session, select(PayoutLine.claim_id).where(PayoutLine.batch_id == batch.id), items,
        S.approved, S.in_payout, actor, now=now, what=f"batch {batch.number}",
        notify="payout_in_payout", detail={"batch": batch.number}, event="payout_listed",
        households=_households(batch.id))
    _remind_card(session, p.waiting_card)
    audit(session, actor, "payout.run", "payout_batch", batch.number, None,
          {"pool": pool.code, "month": month, **p.figures()})
    return batch, p


def run_payout(db, vault: PersonalDataVault, data_dir: Path, pool_code: str, month: str,
               actor: str, today: date, announce_empty: bool = False) -> RunResult:
    """The payout run for one pool and month (see the module's docstring). Idempotent: running
    it again (after a crash, a kill, or at the same time) returns the one batch."""
    check_month(month)
    with db.session() as s:
        pool = find_pool(s, pool_code)
        pool_id = pool.id
    result = RunResult(pool=pool_code, month=month)
    try:
        with db.session() as s:
            pool = s.get(Pool, pool_id)
            batch, p = _create_batch(s, pool, month, actor, today)
            batch_id = batch.id
            result.created = p is not None
            if p is not None:
                result.figures = p.figures()
    except _NothingToPay as nothing:
        result.figures = nothing.plan.figures()
        if announce_empty and (nothing.plan.waiting_card or nothing.plan.waiting_balance
                               or nothing.plan.held):
            with db.session() as s:
                pool = s.get(Pool, pool_id)
                _remind_card(s, nothing.plan.waiting_card)
                _notify_admins(s, pool_id, "payout_admin_waiting", pool=pool, month=month,
                               **result.figures)
        return result
    except IntegrityError:
        # another run made this month's batch at the same moment: it is the one
        with db.session() as s:
            batch_id = s.scalar(select(PayoutBatch.id).where(PayoutBatch.pool_id == pool_id,
                                                             PayoutBatch.month == month))
        if batch_id is None:
            raise
    written, exported, path = export_batch(db, vault, data_dir, batch_id, actor, today)
    with db.session() as s:
        batch = s.get(PayoutBatch, batch_id)
        result.batch, result.status = batch.number, batch.status.value
        result.lines = s.scalar(select(func.count(PayoutLine.id))
                                .where(PayoutLine.batch_id == batch_id))
        result.total_fen = batch.total_fen
    result.file_written, result.exported, result.file = written, exported, str(path)
    return result



def export_batch(db, vault: PersonalDataVault, data_dir: Path, batch_id: int,
                 actor: str, today: date) -> tuple[bool, bool, Path]:
    """Write the batch's bank file if it is missing (or the batch is still `draft`), then move
    `draft` → `exported` and tell the administrators, once. Returns (file written, exported by
    this call, path)."""
    with db.session() as s:
        batch = s.get_one(PayoutBatch, batch_id)
        path = batch_file(data_dir, batch)
        needs_file = batch.status is BatchStatus.draft or not path.exists()
        rows = bank_rows(s, vault, batch_id) if needs_file else None
        number = batch.number
    if needs_file:
        write_bank_file(path, number, rows)
        del rows
    exported = False
    with db.session() as s:
        moved = s.execute(update(PayoutBatch)
                          .where(PayoutBatch.id == batch_id,
                                 PayoutBatch.status == BatchStatus.draft)
                          .values(status=BatchStatus.exported, file_path=str(path))
                          .execution_options(synchronize_session=False)).rowcount
        if moved == 1:
            exported = True
            batch = s.get_one(PayoutBatch, batch_id)
            s.refresh(batch)
            pool = s.get_one(Pool, batch.pool_id)
            lines = s.scalar(select(func.count(PayoutLine.id))
                             .where(PayoutLine.batch_id == batch_id))
            audit(s, actor, "payout.exported", "payout_batch", batch.number,
                  {"status": "draft"}, {"status": "exported", "file": path.name, "lines": lines,
                                        "total_fen": batch.total_fen})
            figures = plan(s, pool.id, today).figures()
            _notify_admins(s, pool.id, "payout_admin_summary", pool=pool, batch=batch,
                           lines=lines, file=path.name, waiting=figures)
    return needs_file, exported, path

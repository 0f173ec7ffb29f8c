"""Monthly payouts (发放): one batch per pool and month, the bank transfer file, confirmation,
bounced transfers, the service fee and recoveries (追回).

The run (`run_payout`), exactly once by construction, not by luck:

1. ONE transaction locks the pool's row (PostgreSQL FOR NO KEY UPDATE; SQLite's BEGIN IMMEDIATE
   serialises writers anyway), so a second run of the pool started at the same moment waits and
   then finds the batch (same month) or the claims gone to it (another month); inserts the batch
   (the unique (pool, month) constraint backs the lock up); writes a line per claim with a
   snapshot of its card; moves the claims `approved` → `in_payout` (an UPDATE guarded by the
   status: if any claim changed meanwhile the whole transaction is undone) with their audit rows
   and notifications; and commits. A process killed before the commit leaves nothing; after it,
   a complete `draft` batch. A partial unique index allows a claim in one live (not `failed`)
   line only, whatever happens.
2. After the commit the bank file is written from the stored lines to a temporary file, synced
   and renamed into place (0600, readable by its owner only): a file is complete or absent.
3. A second short transaction moves the batch `draft` → `exported` (a conditional update: only
   one process wins) and queues the administrators' summary.

Running again for the same pool and month returns the existing batch and regenerates its file if
it is missing (or finishes step 2–3 for a `draft` batch). Claims go to the batch oldest first as
far as the pool's balance (ledger, less lines of unconfirmed batches) covers; the rest wait, and
so do claims of households with no active card and claims with an open objection.

Claim status changes of a whole batch are made in bulk (100,000 claims in seconds) with the same
effect as `core.claims.transition` per claim: the move is checked against `claims.ALLOWED`, and
each claim gets its audit row (`claim.<status>`) and its household's notification, all in the
same transaction. Single claims (a bounced transfer, a recovery) use `transition` itself.

Ledger: confirmation posts one entry per batch (`payout:<batch>`, fund:cash → expense:subsidy);
a transfer that bounces after confirmation is reversed by `payout-return:<batch>:<claim>`; the
service fee `fee:<pool>:<period>` (expense:service_fee / payable:service_fee) is the scheme's rate
of the period's paid subsidies; a recovery `recovery:<claim>` (receivable:recovery /
income:recovery) and, when the money is back, `recovery-received:<claim>`. Refs are unique, so
every posting is idempotent.
"""
from __future__ import annotations

import calendar
import itertools
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import claims as claim_rules
from core import ledger
from core.audit import audit
from core.bankcards import active_card, deactivate
from core.crypto import PersonalDataVault, mask_name, scrub
from core.messages import environment, render
from core.models import (AdminGrant, AdminRole, AuditLog, BankCard, BatchStatus, Claim,
                         ClaimStatus as S, Household, HouseholdLink, JournalEntry, Member,
                         Objection, OutboxMessage, OutboxStatus, PayoutBatch, PayoutLine,
                         PayoutLineStatus as L, Pool, SchemeYear, Village, utcnow)
from core.money import format_yuan, mul_rate
from core.notify import notify_household
from core.scheme import scheme_of

log = logging.getLogger("huzhu.payouts")

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CHUNK = 2000

for _frm, _to in ((S.approved, S.in_payout), (S.in_payout, S.paid),
                  (S.in_payout, S.payout_failed), (S.payout_failed, S.approved)):
    assert _to in claim_rules.ALLOWED[_frm], f"status machine lost {_frm} → {_to}"


class PayoutError(Exception):
    """A payout action that cannot be done; nothing changed. `code`: unknown_pool, bad_month,
    unknown_batch, not_exported, unknown_claim, not_in_batch, already_failed, wrong_status,
    not_paid, already_recovered, reason_required, bad_period, no_scheme."""

    def __init__(self, code: str, **detail):
        super().__init__(code)
        self.code = code
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Names and look-ups

def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def check_month(month: str) -> str:
    if not _MONTH.match(month or ""):
        raise PayoutError("bad_month", month=month)
    return month


def batch_number(pool: Pool, month: str) -> str:
    """B + month + pool: `B202603-demo` (typed by administrators in /确认发放)."""
    yyyymm = month.replace("-", "")
    number = f"B{yyyymm}-{pool.code}"
    return number if len(number) <= 24 else f"B{yyyymm}-#{pool.id}"


def find_pool(session: Session, code: str) -> Pool:
    pool = session.scalar(select(Pool).where(Pool.code == code))
    if pool is None:
        raise PayoutError("unknown_pool", pool=code)
    return pool


def find_batch(session: Session, number: str, lock: bool = False) -> PayoutBatch:
    q = select(PayoutBatch).where(func.lower(PayoutBatch.number) == (number or "").strip().lower())
    if lock:
        q = q.with_for_update()
    batch = session.scalar(q)
    if batch is None:
        raise PayoutError("unknown_batch", batch=number)
    return batch


def find_claim(session: Session, number: str) -> Claim:
    claim = session.scalar(select(Claim).where(Claim.number == (number or "").strip().upper()))
    if claim is None:
        raise PayoutError("unknown_claim", claim=number)
    return claim


def latest_scheme_year(session: Session, pool_id: int, day: date) -> SchemeYear | None:
    """The pool's scheme year running on `day`, else the last one that started before it."""
    return session.scalar(select(SchemeYear).where(SchemeYear.pool_id == pool_id,
                                                   SchemeYear.start <= day)
                          .order_by(SchemeYear.start.desc()).limit(1))


def payout_day_for(session: Session, pool_id: int, day: date) -> int | None:
    """The scheme's `payout.day` for the pool on `day` (None when the pool has no scheme)."""
    year = latest_scheme_year(session, pool_id, day)
    return scheme_of(year).payout.day if year is not None else None


def pool_admin_openids(session: Session, pool_id: int) -> list[str]:
    """Who hears about the pool's payouts: its pool_admins, the super admins and the village
    admins of its villages."""
    villages = select(Village.id).where(Village.pool_id == pool_id)
    q = select(AdminGrant.openid).where(or_(
        AdminGrant.role == AdminRole.super,
        and_(AdminGrant.role == AdminRole.pool_admin, AdminGrant.pool_id == pool_id),
        and_(AdminGrant.role == AdminRole.village_admin, AdminGrant.village_id.in_(villages)),
    )).distinct()
    return sorted(set(session.scalars(q)))


def exports_dir(data_dir: Path) -> Path:
    from core.files import private_dir

    return private_dir(Path(data_dir) / "exports")


def batch_file(data_dir: Path, batch: PayoutBatch) -> Path:
    return exports_dir(data_dir) / f"{batch.number}.xlsx"


# ---------------------------------------------------------------------------------------------
# The plan: what a run would take now

@dataclass
class Candidate:
    claim_id: int
    claim_number: str
    household_id: int
    household_number: str
    village_id: int
    amount_fen: int
    card_id: int | None
    bank: str | None
    holder: str | None
    number_enc: str | None
    number_masked: str | None


@dataclass
class Plan:
    pool_id: int
    balance_fen: int  # the ledger's balance
    pending_fen: int  # lines of batches not yet confirmed
    take: list[Candidate] = field(default_factory=list)
    waiting_balance: list[Candidate] = field(default_factory=list)
    waiting_card: list[Candidate] = field(default_factory=list)
    held: list[Candidate] = field(default_factory=list)  # open objection (公示异议)

    @property
    def available_fen(self) -> int:
        return self.balance_fen - self.pending_fen

    @property
    def total_fen(self) -> int:
        return sum(c.amount_fen for c in self.take)

    def figures(self) -> dict:
        return {"lines": len(self.take), "total_fen": self.total_fen,
                "balance_fen": self.balance_fen, "pending_fen": self.pending_fen,
                "available_fen": self.available_fen,
                "waiting_balance": len(self.waiting_balance),
                "waiting_balance_fen": sum(c.amount_fen for c in self.waiting_balance),
                "waiting_card": len(self.waiting_card),
                "waiting_card_fen": sum(c.amount_fen for c in self.waiting_card),
                "held": len(self.held)}


def pending_fen(session: Session, pool_id: int) -> int:
    return int(session.scalar(
        select(func.coalesce(func.sum(PayoutLine.amount_fen), 0))
        .join(PayoutBatch, PayoutBatch.id == PayoutLine.batch_id)
        .where(PayoutBatch.pool_id == pool_id, PayoutLine.status == L.pending)) or 0)


def held_claim_ids(session: Session, pool_id: int, today: date) -> set[int]:
    """Approved claims the run leaves out (core.objections): an open objection, or a scheme
    with an objection window whose window has not passed. Where no scheme year of the pool has
    a window only open objections count, asked without loading every claim."""
    years = session.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool_id))
    if any(scheme_of(y).disclosure.objection_days > 0 for y in years):
        from core.objections import held_claim_ids as with_windows

        return with_windows(session, pool_id, today)
    return set(session.scalars(
        select(Objection.claim_id).join(Claim, Claim.id == Objection.claim_id)
        .join(Household, Household.id == Claim.household_id)
        .where(Household.pool_id == pool_id, Objection.status == "open",
               Claim.status == S.approved)))


def plan(session: Session, pool_id: int, today: date) -> Plan:
    """Every `approved` claim of the pool, oldest first: those with an active card go to the
    batch while the balance covers them; from the first one it does not cover, the rest wait.
    Claims held by an objection wait too (core.objections)."""
    q = (select(Claim.id, Claim.number, Claim.household_id, Household.number,
                Household.village_id, Claim.amount_fen, BankCard.id, BankCard.bank_name,
                Member.name, BankCard.number_enc, BankCard.number_masked)
         .join(Household, Household.id == Claim.household_id)
         .outerjoin(BankCard, and_(BankCard.household_id == Claim.household_id,
                                   BankCard.active.is_(True)))
         .outerjoin(Member, Member.id == BankCard.holder_member_id)
         .where(Household.pool_id == pool_id, Claim.status == S.approved)
         .order_by(func.coalesce(Claim.submitted_at, Claim.created_at), Claim.id))
    rows = [Candidate(*r) for r in session.execute(q)]
    held_ids = held_claim_ids(session, pool_id, today)
    p = Plan(pool_id, ledger.balance(session, pool_id), pending_fen(session, pool_id))
    room = p.available_fen
    blocked = False
    for c in rows:
        if not c.amount_fen or c.amount_fen <= 0:
            log.warning("approved claim %s has no amount; left out of the payout", c.claim_number)
            continue
        if c.claim_id in held_ids:
            p.held.append(c)
        elif c.card_id is None:
            p.waiting_card.append(c)
        elif blocked or c.amount_fen > room:
            blocked = True
            p.waiting_balance.append(c)
        else:
            room -= c.amount_fen
            p.take.append(c)
    return p


# ---------------------------------------------------------------------------------------------
# Bulk status changes with audit and notification (the effect of claims.transition per claim)

def _template(name: str):
    return environment().get_template(f"messages/{name}.j2")


def _links(session: Session, household_ids: Iterable[int],
           batch_id: int | None = None) -> dict[int, list[str]]:
    """Linked openids per household: of the given households, or of a batch's (one query)."""
    found: dict[int, list[str]] = {}
    if batch_id is not None:
        households = (select(Claim.household_id)
                      .join(PayoutLine, PayoutLine.claim_id == Claim.id)
                      .where(PayoutLine.batch_id == batch_id))
        for hid, openid in session.execute(
                select(HouseholdLink.household_id, HouseholdLink.openid)
                .where(HouseholdLink.household_id.in_(households)).order_by(HouseholdLink.id)):
            found.setdefault(hid, []).append(openid)
        return found
    ids = sorted(set(household_ids))
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        for hid, openid in session.execute(
                select(HouseholdLink.household_id, HouseholdLink.openid)
                .where(HouseholdLink.household_id.in_(chunk)).order_by(HouseholdLink.id)):
            found.setdefault(hid, []).append(openid)
    return found


def _chunks(rows: Iterable[dict], size: int = _CHUNK) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert_many(session: Session, model, rows: Iterable[dict], constants: dict | None = None
                 ) -> None:
    """Insert many rows in the session's transaction with the driver's executemany: each value
    goes through its column type's own bind processor (so it is stored exactly as SQLAlchemy
    stores it), `constants` (the same for every row) once; SQLAlchemy's per-row statement
    machinery, several times the cost of the insert itself at 100,000 rows, is skipped."""
    conn = session.connection()
    dialect = conn.dialect
    table = model.__table__
    constants = constants or {}
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    cols = list(first)
    procs = [table.c[c].type._cached_bind_processor(dialect) for c in cols]
    fixed = tuple(p(v) if p else v for p, v in
                  ((table.c[c].type._cached_bind_processor(dialect), v)
                   for c, v in constants.items()))
    quote = dialect.identifier_preparer.quote
    names = [*cols, *constants]
    columns = f"{quote(table.name)} ({', '.join(quote(n) for n in names)})"
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if dialect.name == "postgresql":  # COPY: an order of magnitude faster than INSERTs
            with cursor.copy(f"COPY {columns} FROM STDIN") as copy:
                for r in itertools.chain([first], rows):
                    copy.write_row(tuple(p(r[c]) if p else r[c]
                                         for c, p in zip(cols, procs)) + fixed)
            return
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = f"INSERT INTO {columns} VALUES ({', '.join([mark] * len(names))})"
        for chunk in _chunks(itertools.chain([first], rows)):
            cursor.executemany(sql, [
                tuple(p(r[c]) if p else r[c] for c, p in zip(cols, procs)) + fixed
                for r in chunk])
    finally:
        cursor.close()


def _bulk_transition(session: Session, items: list[dict], frm: S, to: S, actor: str,
                     template: str | None, now: datetime, detail: dict | None = None,
                     batch_id: int | None = None) -> None:
    """`items`: dicts with claim_id, claim_number, household_id, amount_fen and the template's
    context. The claims' statuses were changed by the caller's UPDATE; this writes what
    `transition` writes: one audit row per claim, one outbox text per linked user."""
    if to not in claim_rules.ALLOWED[frm]:
        raise ValueError(f"claims: {frm.value} → {to.value} not allowed")
    extra = detail or {}

    def audits():
        for it in items:
            yield {"entity_id": it["claim_number"],
                   "before": {"status": frm.value, "amount_fen": it["amount_fen"]},
                   "after": {"status": to.value, "amount_fen": it["amount_fen"], **extra}}

    _insert_many(session, AuditLog, audits(),
                 {"at": now, "actor": actor, "action": f"claim.{to.value}", "entity": "claim"})
    if template is None:
        return
    tpl = _template(template)
    links = _links(session, (it["household_id"] for it in items), batch_id)

    def messages():
        for it in items:
            openids = links.get(it["household_id"])
            if not openids:
                continue
            text = tpl.render(**it).strip()
            for openid in openids:
                yield {"recipient": openid,
                       "payload": {"openid": openid,
                                   "message": {"type": "text", "content": text}}}

    _insert_many(session, OutboxMessage, messages(),
                 {"kind": "wechat.send", "status": OutboxStatus.pending, "attempts": 0,
                  "next_attempt_at": now, "created_at": now})


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


def _notify_admins(session: Session, pool_id: int, template: str, **context) -> int:
    from core import outbox

    openids = pool_admin_openids(session, pool_id)
    if openids:
        text = render(template, **context)
        for openid in openids:
            outbox.send_text(session, openid, text)
    return len(openids)


# ---------------------------------------------------------------------------------------------
# The run

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
    _insert_many(session, PayoutLine, lines, {"batch_id": batch.id, "status": L.pending})
    moved = session.execute(
        update(Claim)
        .where(Claim.id.in_(select(PayoutLine.claim_id).where(PayoutLine.batch_id == batch.id)),
               Claim.status == S.approved)
        .values(status=S.in_payout, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if moved != len(p.take):  # a claim changed meanwhile (rejected?): never half a batch
        raise RuntimeError(f"batch {batch.number}: {moved} of {len(p.take)} claims were still "
                           f"approved; nothing was done, run it again")
    batch.total_fen = p.total_fen
    _bulk_transition(session, items, S.approved, S.in_payout, actor, "payout_in_payout", now,
                     {"batch": batch.number}, batch_id=batch.id)
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


# ---------------------------------------------------------------------------------------------
# The bank file

FILE_HEADER = ["序号", "收款人", "银行卡号", "开户银行", "金额（元）", "附言", "申请号", "户号"]


def bank_rows(session: Session, vault: PersonalDataVault, batch_id: int) -> list[list]:
    """The transfer rows of a batch, from its stored lines (card snapshots), in line order;
    the full card number is decrypted here and nowhere else."""
    q = (select(PayoutLine.card_holder, PayoutLine.card_number_enc, PayoutLine.card_bank,
                PayoutLine.amount_fen, Claim.number, Household.number)
         .join(Claim, Claim.id == PayoutLine.claim_id)
         .join(Household, Household.id == Claim.household_id)
         .where(PayoutLine.batch_id == batch_id).order_by(PayoutLine.id))
    cache: dict[str, str] = {}
    rows = []
    for i, (holder, enc, bank, fen, claim_no, hh_no) in enumerate(session.execute(q), 1):
        number = cache.get(enc)
        if number is None:
            number = cache[enc] = vault.decrypt(enc)
        rows.append([i, holder, number, bank, Decimal(fen) / 100, f"互助补助 {claim_no}",
                     claim_no, hh_no])
    return rows


def write_bank_file(path: Path, batch_no: str, rows: list[list]) -> None:
    """xlsx (openpyxl write-only), one row a transfer and a totals row; written to a temporary
    file created 0600, synced, then renamed over `path`: the file is whole or absent."""
    from openpyxl import Workbook

    _clean_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            wb = Workbook(write_only=True)
            ws = wb.create_sheet(batch_no[:31])
            ws.append(FILE_HEADER)
            total = 0
            for row in rows:
                ws.append(row)
                total += int(row[4] * 100)
            ws.append(["合计", f"{len(rows)} 笔", None, None, Decimal(total) / 100, None, None,
                       None])
            wb.save(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _clean_stale_temps(path: Path) -> None:
    """Temporary files left by killed runs (their pid is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue


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


# ---------------------------------------------------------------------------------------------
# Confirmation and bounced transfers

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
    moved = session.execute(
        update(Claim)
        .where(Claim.id.in_(select(PayoutLine.claim_id).where(PayoutLine.batch_id == batch.id,
                                                              PayoutLine.status == L.paid)),
               Claim.status == S.in_payout)
        .values(status=S.paid, updated_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if moved != len(items):
        raise RuntimeError(f"batch {batch.number}: {moved} of {len(items)} claims moved to paid")
    _bulk_transition(session, items, S.in_payout, S.paid, actor, "payout_paid", now,
                     {"batch": batch.number}, batch_id=batch.id)
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
    reason = scrub((text or "").strip())[:200] or "转账退回"
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
                           bank=line.card_bank, masked=line.card_number_masked, reason=reason,
                           card_deactivated=deactivated)
    audit(session, actor, "payout.line_failed", "payout_batch", batch.number,
          {"claim": claim.number, "status": "paid" if after_confirm else "pending"},
          {"claim": claim.number, "status": "failed", "reason": reason})
    session.flush()
    return FailureResult(batch.number, claim.number, claim.household_id, line.amount_fen,
                         after_confirm, deactivated)


# ---------------------------------------------------------------------------------------------
# Recoveries (追回)

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
        reason = scrub((reason or "").strip())[:200]
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


# ---------------------------------------------------------------------------------------------
# The service fee

_PERIOD = re.compile(r"^(\d{4})(?:Q([1-4])|-(0[1-9]|1[0-2]))?$")


def period_bounds(label: str) -> tuple[date, date]:
    """`2026Q1`, `2026-03` or `2026` → [start, end) dates."""
    m = _PERIOD.match(label or "")
    if not m:
        raise PayoutError("bad_period", period=label)
    year = int(m.group(1))
    if m.group(2):
        q = int(m.group(2))
        start = date(year, 3 * q - 2, 1)
        end = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
    elif m.group(3):
        month = int(m.group(3))
        start = date(year, month, 1)
        end = date(year + (month == 12), 1 if month == 12 else month + 1, 1)
    else:
        start, end = date(year, 1, 1), date(year + 1, 1, 1)
    return start, end


def last_period(every: str, today: date) -> str:
    """The latest period of that kind (month | quarter | year) that ended before `today`."""
    if every == "month":
        prev = today.replace(day=1) - timedelta(days=1)
        return f"{prev.year:04d}-{prev.month:02d}"
    if every == "year":
        return f"{today.year - 1:04d}"
    q = (today.month - 1) // 3 + 1
    return f"{today.year - 1:04d}Q4" if q == 1 else f"{today.year:04d}Q{q - 1}"


def service_fee_due(session: Session, pool_id: int, label: str) -> tuple[int, int, list[dict]]:
    """(fee, paid subsidies, parts) for a period: each scheme year's rate applies from its start
    until the next scheme year starts, to the subsidies booked in that stretch."""
    start, end = period_bounds(label)
    years = list(session.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool_id)
                                 .order_by(SchemeYear.start)))
    if not years:
        raise PayoutError("no_scheme", pool=pool_id)
    parts, fee, paid_total = [], 0, 0
    for i, year in enumerate(years):
        seg_start = start if i == 0 else max(start, year.start)
        seg_end = min(end, years[i + 1].start) if i + 1 < len(years) else end
        if seg_start >= seg_end:
            continue
        paid = ledger.totals(session, pool_id, until=seg_end, since=seg_start).get(
            ledger.SUBSIDY, 0)
        rate = scheme_of(year).service_fee.rate
        part = mul_rate(paid, rate) if paid > 0 else 0
        parts.append({"from": seg_start.isoformat(), "until": seg_end.isoformat(),
                      "paid_fen": paid, "rate": str(rate), "fee_fen": part})
        fee += part
        paid_total += paid
    return fee, paid_total, parts


def post_service_fee(session: Session, pool_id: int, label: str, actor: str) -> JournalEntry | None:
    """Post the period's service fee owed to the service provider (idempotent by
    `fee:<pool>:<period>`); None when nothing was paid in the period."""
    pool = session.get_one(Pool, pool_id)
    start, end = period_bounds(label)
    ref = f"fee:{pool.code}:{label}"
    existing = session.scalar(select(JournalEntry).where(JournalEntry.ref == ref))
    if existing is not None:
        return existing
    fee, paid, parts = service_fee_due(session, pool_id, label)
    if fee <= 0:
        return None
    rates = "、".join(sorted({p["rate"] for p in parts if p["fee_fen"]}))
    entry = ledger.post(session, pool_id, "fee", ref, {ledger.FEE: fee, ledger.FEE_PAYABLE: -fee},
                        end - timedelta(days=1),
                        f"服务费 {label}：{format_yuan(paid)} × {rates}")
    audit(session, actor, "payout.service_fee", "pool", f"{pool.code}:{label}", None,
          {"fee_fen": fee, "paid_fen": paid, "parts": parts})
    return entry


# ---------------------------------------------------------------------------------------------
# The schedule's decisions

def scheduled_day(payout_day: int, today: date) -> int:
    """The day of this month the run is due (payout.day, or the month's last day if shorter)."""
    return min(payout_day, calendar.monthrange(today.year, today.month)[1])


def scheduled_run_done(session: Session, pool_code: str, month: str) -> bool:
    return session.scalar(select(AuditLog.id).where(
        AuditLog.action == "payout.scheduled", AuditLog.entity == "pool",
        AuditLog.entity_id == f"{pool_code}:{month}").limit(1)) is not None


def due_pools(session: Session, today: date) -> list[str]:
    """Pools whose payout day has come this month and whose scheduled run has not been done
    (a run missed while the server was down is caught up the next day)."""
    due = []
    for pool in session.scalars(select(Pool).order_by(Pool.id)):
        day = payout_day_for(session, pool.id, today)
        if day is None or today.day < scheduled_day(day, today):
            continue
        if not scheduled_run_done(session, pool.code, month_of(today)):
            due.append(pool.code)
    return due


# ---------------------------------------------------------------------------------------------
# Listing

def list_batches(session: Session, pool_code: str | None = None) -> list[dict]:
    """SPEC `payout list --json`: {batch, pool, month, status, total_fen, lines} and the split
    into paid and failed lines."""
    q = select(PayoutBatch, Pool.code).join(Pool, Pool.id == PayoutBatch.pool_id)
    if pool_code:
        q = q.where(Pool.code == pool_code)
    q = q.order_by(PayoutBatch.month.desc(), Pool.code)
    stats = {}
    for bid, status, n, fen in session.execute(
            select(PayoutLine.batch_id, PayoutLine.status, func.count(PayoutLine.id),
                   func.coalesce(func.sum(PayoutLine.amount_fen), 0))
            .group_by(PayoutLine.batch_id, PayoutLine.status)):
        stats.setdefault(bid, {})[L(status).value] = (int(n), int(fen))
    out = []
    for batch, code in session.execute(q):
        st = stats.get(batch.id, {})
        out.append({"batch": batch.number, "pool": code, "month": batch.month,
                    "status": batch.status.value, "total_fen": batch.total_fen,
                    "lines": sum(n for n, _ in st.values()),
                    "paid_lines": st.get("paid", (0, 0))[0],
                    "paid_fen": st.get("paid", (0, 0))[1],
                    "failed_lines": st.get("failed", (0, 0))[0],
                    "failed_fen": st.get("failed", (0, 0))[1],
                    "file": Path(batch.file_path).name if batch.file_path else None,
                    "created_at": batch.created_at, "confirmed_at": batch.confirmed_at})
    return out


__all__ = ["PayoutError", "Plan", "RunResult", "ConfirmResult", "FailureResult", "plan",
           "run_payout", "export_batch", "confirm_batch", "record_failure", "recover_claim",
           "post_service_fee", "service_fee_due", "period_bounds", "last_period", "due_pools",
           "list_batches", "batch_number", "month_of", "payout_day_for", "pool_admin_openids"]

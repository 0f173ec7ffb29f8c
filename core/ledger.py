"""The fund's double-entry ledger, per pool (Beancount's idea: immutable entries whose lines sum
to zero, and invariants that are checked, not trusted).

Amounts are signed fen: debit positive, credit negative. Accounts:

- `fund:cash`                    the pool's money (asset)
- `receivable:<source>`          a share the collective, charity, government or a donor owes
- `receivable:recovery`          a subsidy to be paid back (追回), until received
- `payable:service_fee`          fees owed to the service provider
- `income:<source>`              contributions and other income by source: personal, collective,
                                 charity, government, donor, interest
- `income:recovery`              subsidies recovered
- `expense:subsidy`              subsidies paid
- `expense:service_fee`          service fees

The balance (SPEC "Money") is derived, never stored: what the pool has and is owed by its sources
less what it owes — income − subsidies paid − service fees + recoveries received.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session

from core.models import JournalEntry, JournalLine

CASH = "fund:cash"
SUBSIDY = "expense:subsidy"
FEE = "expense:service_fee"
FEE_PAYABLE = "payable:service_fee"
RECOVERY_RECEIVABLE = "receivable:recovery"
RECOVERY_INCOME = "income:recovery"
SOURCES = ("personal", "collective", "town", "charity", "government", "donor", "interest")


class LedgerError(ValueError):
    pass


def income(source: str) -> str:
    if source not in SOURCES:
        raise LedgerError(f"unknown income source {source!r}")
    return f"income:{source}"


def receivable(source: str) -> str:
    if source not in SOURCES:
        raise LedgerError(f"unknown source {source!r}")
    return f"receivable:{source}"


def contribution_lines(shares_fen: dict[str, int]) -> dict[str, int]:
    """The lines of a paid contribution (SPEC "Money"), shares by source: the personal part is
    money received (fund:cash), every other share is owed by its source (receivable:<source>)
    until it settles off-line; each is income of its source."""
    lines: dict[str, int] = defaultdict(int)
    for source, fen in shares_fen.items():
        lines[CASH if source == "personal" else receivable(source)] += int(fen)
        lines[income(source)] -= int(fen)
    return dict(lines)


def funds_lines(source: str, amount_fen: int) -> dict[str, int]:
    """Income received that is not a household's payment (`huzhu funds add`): a donation, a
    collective top-up, a government grant, interest."""
    if amount_fen <= 0:
        raise LedgerError("an amount of income must be positive")
    return {CASH: int(amount_fen), income(source): -int(amount_fen)}


def _in_balance(account: str) -> bool:
    return (account == CASH or account == FEE_PAYABLE
            or (account.startswith("receivable:") and account != RECOVERY_RECEIVABLE))


def post(session: Session, pool_id: int, kind: str, ref: str, lines: dict[str, int],
         booked_on: date, memo: str = "") -> JournalEntry:
    """Post one entry. `ref` names what caused it (unique): posting the same ref again returns
    the entry already there and posts nothing."""
    existing = session.scalar(select(JournalEntry).where(JournalEntry.ref == ref))
    if existing is not None:
        return existing
    clean = {a: int(v) for a, v in lines.items() if v}
    if not clean:
        raise LedgerError("an entry needs at least one non-zero line")
    if sum(clean.values()) != 0:
        raise LedgerError(f"entry {ref} does not balance: {clean}")
    entry = JournalEntry(pool_id=pool_id, booked_on=booked_on, kind=kind, memo=memo[:255], ref=ref)
    entry.lines = [JournalLine(account=a, amount_fen=v) for a, v in sorted(clean.items())]
    session.add(entry)
    session.flush()
    return entry


def totals(session: Session, pool_id: int, until: date | None = None,
           since: date | None = None, kinds: tuple[str, ...] | None = None) -> dict[str, int]:
    """Sum of lines per account, entries booked in [since, until)."""
    q = (select(JournalLine.account, func.sum(JournalLine.amount_fen))
         .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
         .where(JournalEntry.pool_id == pool_id)
         .group_by(JournalLine.account))
    if until is not None:
        q = q.where(JournalEntry.booked_on < until)
    if since is not None:
        q = q.where(JournalEntry.booked_on >= since)
    if kinds is not None:
        q = q.where(JournalEntry.kind.in_(kinds))
    return {a: int(v) for a, v in session.execute(q)}


def balance(session: Session, pool_id: int, until: date | None = None) -> int:
    return sum(v for a, v in totals(session, pool_id, until).items() if _in_balance(a))


def summary(session: Session, pool_id: int, since: date | None = None,
            until: date | None = None) -> dict:
    """The fund report's figures (SPEC `report fund --json`), for entries in [since, until);
    `carried_over_fen` is the balance before `since`, `balance_fen` the balance at `until`.
    The three sums (the period's, before it, up to its end) are read in one pass over the
    pool's entries."""
    in_period = JournalEntry.booked_on >= since if since is not None else true()
    q = (select(JournalLine.account,
                func.sum(case((in_period, JournalLine.amount_fen), else_=0)),
                func.sum(case((in_period, 0), else_=JournalLine.amount_fen)),
                func.sum(case((in_period, 1), else_=0)),
                # credits in the period: for receivable:recovery, the recoveries received
                func.sum(case((and_(in_period, JournalLine.amount_fen < 0),
                               JournalLine.amount_fen), else_=0)))
         .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
         .where(JournalEntry.pool_id == pool_id)
         .group_by(JournalLine.account))
    if until is not None:
        q = q.where(JournalEntry.booked_on < until)
    t, before = {}, {}
    recovered_received = 0
    for account, period_fen, before_fen, period_lines, credits in session.execute(q):
        if account == RECOVERY_RECEIVABLE:
            recovered_received = -int(credits or 0)
        if period_lines:  # as totals(since, until): the accounts with lines in the period
            t[account] = int(period_fen or 0)
        before[account] = int(before_fen or 0)
    income_by_source: dict[str, int] = defaultdict(int)
    for a, v in t.items():
        if a.startswith("income:") and a != RECOVERY_INCOME:
            income_by_source[a.split(":", 1)[1]] -= v
    carried = sum(v for a, v in before.items() if _in_balance(a)) if since else 0
    return {
        "income_fen": dict(sorted(income_by_source.items())),
        "paid_fen": t.get(SUBSIDY, 0),
        "fees_fen": t.get(FEE, 0),
        "recovered_fen": recovered_received,
        "carried_over_fen": carried,
        "balance_fen": carried + sum(v for a, v in t.items() if _in_balance(a)),
    }


def check(session: Session) -> list[str]:
    """Every entry whose lines do not sum to zero (or that has no lines), as readable lines."""
    sums = (select(JournalEntry.id, JournalEntry.ref, JournalEntry.pool_id,
                   func.coalesce(func.sum(JournalLine.amount_fen), 0), func.count(JournalLine.id))
            .outerjoin(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .group_by(JournalEntry.id, JournalEntry.ref, JournalEntry.pool_id)
            .order_by(JournalEntry.id))
    bad = []
    for entry_id, ref, pool_id, total, n in session.execute(sums):
        if n == 0 or int(total) != 0:
            bad.append(f"entry {entry_id} ({ref}, pool {pool_id}): lines sum to {int(total)} fen"
                       f" over {n} lines")
    return bad

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

The figures read `fund_total` (per pool, day, entry kind and account: the lines' sum, the credits'
sum, how many lines), not the lines: `post` adds each entry's lines to it in the same
transaction (an atomic upsert, so concurrent posts add up), and `recount` shows what the lines
say — tests/test_summary_recount.py checks the two agree after every kind of posting.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.models import FundTotal, JournalEntry, JournalLine

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
    _add_to_totals(session, pool_id, booked_on, kind, clean)
    return entry


def _add_to_totals(session: Session, pool_id: int, booked_on: date, kind: str,
                   lines: dict[str, int]) -> None:
    add_to_totals(session, [(pool_id, booked_on, kind, lines)])


def add_to_totals(session: Session, entries: list[tuple[int, date, str, dict[str, int]]]) -> None:
    """Add entries' lines (pool, day, kind, {account: fen}) to fund_total, for `post` and for
    entries written in bulk beside it (a village's cash list): INSERT … ON CONFLICT DO UPDATE,
    which PostgreSQL and SQLite both run as one atomic statement (two payments of a pool the
    same day add up)."""
    sums: dict[tuple, list[int]] = {}
    for pool_id, booked_on, kind, lines in entries:
        for account, fen in lines.items():
            if fen:
                acc = sums.setdefault((pool_id, booked_on, kind, account), [0, 0, 0])
                acc[0] += int(fen)
                acc[1] += min(int(fen), 0)
                acc[2] += 1
    if not sums:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    rows = [{"pool_id": p, "booked_on": b, "kind": k, "account": a, "amount_fen": v,
             "credit_fen": c, "lines": n} for (p, b, k, a), (v, c, n) in sorted(sums.items())]
    stmt = insert(FundTotal)
    stmt = stmt.on_conflict_do_update(
        index_elements=[FundTotal.pool_id, FundTotal.booked_on, FundTotal.kind,
                        FundTotal.account],
        set_={"amount_fen": FundTotal.amount_fen + stmt.excluded.amount_fen,
              "credit_fen": FundTotal.credit_fen + stmt.excluded.credit_fen,
              "lines": FundTotal.lines + stmt.excluded.lines})
    session.execute(stmt, rows)


def recount(session: Session) -> list[tuple]:
    """fund_total's rows as the journal lines say they should be: (pool_id, booked_on, kind,
    account, amount_fen, credit_fen, lines), sorted — for checking the summary."""
    q = (select(JournalEntry.pool_id, JournalEntry.booked_on, JournalEntry.kind,
                JournalLine.account, func.sum(JournalLine.amount_fen),
                func.sum(case((JournalLine.amount_fen < 0, JournalLine.amount_fen), else_=0)),
                func.count(JournalLine.id))
         .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
         .group_by(JournalEntry.pool_id, JournalEntry.booked_on, JournalEntry.kind,
                   JournalLine.account))
    return sorted((p, b, k, a, int(v), int(c), int(n)) for p, b, k, a, v, c, n in
                  session.execute(q))


def refill(session: Session) -> None:
    """Rebuild fund_total from the lines (after entries written in bulk outside `post`, as the
    benchmarks do); the backfill migration does the same."""
    from sqlalchemy import delete, insert

    session.flush()
    session.execute(delete(FundTotal))
    rows = [dict(zip(("pool_id", "booked_on", "kind", "account", "amount_fen", "credit_fen",
                      "lines"), r)) for r in recount(session)]
    for i in range(0, len(rows), 5000):
        session.execute(insert(FundTotal), rows[i:i + 5000])


def stored_totals(session: Session) -> list[tuple]:
    """fund_total's rows, in recount's form."""
    return sorted((t.pool_id, t.booked_on, t.kind, t.account, int(t.amount_fen),
                   int(t.credit_fen), int(t.lines)) for t in session.scalars(select(FundTotal)))


def totals(session: Session, pool_id: int, until: date | None = None,
           since: date | None = None, kinds: tuple[str, ...] | None = None) -> dict[str, int]:
    """Sum of lines per account, entries booked in [since, until) (from fund_total)."""
    session.flush()
    q = (select(FundTotal.account, func.sum(FundTotal.amount_fen))
         .where(FundTotal.pool_id == pool_id)
         .group_by(FundTotal.account))
    if until is not None:
        q = q.where(FundTotal.booked_on < until)
    if since is not None:
        q = q.where(FundTotal.booked_on >= since)
    if kinds is not None:
        q = q.where(FundTotal.kind.in_(kinds))
    return {a: int(v) for a, v in session.execute(q) if v is not None}


def balance(session: Session, pool_id: int, until: date | None = None) -> int:
    return sum(v for a, v in totals(session, pool_id, until).items() if _in_balance(a))


def summary(session: Session, pool_id: int, since: date | None = None,
            until: date | None = None) -> dict:
    """The fund report's figures (SPEC `report fund --json`), for entries in [since, until);
    `carried_over_fen` is the balance before `since`, `balance_fen` the balance at `until`."""
    t = totals(session, pool_id, until, since)
    income_by_source: dict[str, int] = defaultdict(int)
    for a, v in t.items():
        if a.startswith("income:") and a != RECOVERY_INCOME:
            income_by_source[a.split(":", 1)[1]] -= v
    recovered_received = -_recovery_receipts(session, pool_id, since, until)
    carried = balance(session, pool_id, since) if since else 0
    return {
        "income_fen": dict(sorted(income_by_source.items())),
        "paid_fen": t.get(SUBSIDY, 0),
        "fees_fen": t.get(FEE, 0),
        "recovered_fen": recovered_received,
        "carried_over_fen": carried,
        "balance_fen": balance(session, pool_id, until),
    }


def _recovery_receipts(session: Session, pool_id: int, since, until) -> int:
    """The credits to receivable:recovery (recoveries actually received), summed (≤ 0)."""
    q = (select(func.coalesce(func.sum(FundTotal.credit_fen), 0))
         .where(FundTotal.pool_id == pool_id, FundTotal.account == RECOVERY_RECEIVABLE))
    if since is not None:
        q = q.where(FundTotal.booked_on >= since)
    if until is not None:
        q = q.where(FundTotal.booked_on < until)
    return int(session.scalar(q))


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

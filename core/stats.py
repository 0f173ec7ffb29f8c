"""Figures for the villagers' queries, the administrators' /统计 and the year report.

Participation is counted against the people registered with the fund (households and members in
the database): the villages' population registers are not in it, so a village's participation
rate here is the share of its registered members who paid for the year.

Rates are Decimal fractions (0.7600), rounded half up to four places; `percent()` writes them
as "76.00%". Money stays integer fen.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from itertools import chain

from sqlalchemy import bindparam, case, event, func, inspect, select, text
from sqlalchemy.orm import Session

from core import ledger, scheme_years
from core.adjudication import CAP_STATUSES
from core.crypto import mask_name
from core.models import (Claim, ClaimStatus, Enrolment, EnrolmentStatus, Household,
                         HouseholdTally, Member, Pool, SchemeYear, Village)
from core.money import round_half_up

PAID_CLAIM = ClaimStatus.paid
GRANTED = (ClaimStatus.approved, ClaimStatus.in_payout, ClaimStatus.paid)
FOUR = Decimal("0.0001")


def ratio(numerator: int, denominator: int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(FOUR, rounding=ROUND_HALF_UP)


def percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{(value * 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}%"


def year_for(session: Session, pool_id: int, today: date) -> SchemeYear | None:
    """The year a report shows (scheme_years.for_report: running today, else the latest one
    that has started, else the first one to come)."""
    return scheme_years.for_report(session, pool_id, today)


# -- participation --------------------------------------------------------------------------

def participation(session: Session, pool_id: int, year_id: int | None,
                  village_ids=None) -> list[dict]:
    """Per village of the pool: households and persons registered, enrolled and paid (active
    households only), summed from household_tally."""
    t = HouseholdTally
    year = year_id if year_id is not None else -1
    registered = t.scheme_year_id == 0
    q = (select(t.village_id,
                func.sum(case((registered, 1), else_=0)), func.sum(t.persons),
                func.sum(t.enrolled), func.sum(t.paid),
                func.sum(case((~registered & (t.enrolled > 0), 1), else_=0)),
                func.sum(case((~registered & (t.paid > 0), 1), else_=0)))
         .where(t.pool_id == pool_id, t.scheme_year_id.in_([0, year]))
         .group_by(t.village_id))
    villages = select(Village.id, Village.full_name, Village.name).where(
        Village.pool_id == pool_id).order_by(Village.id)
    if village_ids is not None:
        q = q.where(t.village_id.in_(list(village_ids)))
        villages = villages.where(Village.id.in_(list(village_ids)))
    sums = {row[0]: [int(v or 0) for v in row[1:]] for row in session.execute(q)}
    rows = []
    for vid, full, name in session.execute(villages):
        hh, persons, p_enrolled, p_paid, hh_enrolled, hh_paid = sums.get(vid, [0] * 6)
        rows.append({"village_id": vid, "village": full, "village_name": name,
                     "households": hh, "households_enrolled": hh_enrolled,
                     "households_paid": hh_paid, "persons": persons,
                     "persons_enrolled": p_enrolled, "persons_paid": p_paid,
                     "rate": ratio(p_paid, persons),
                     "rate_percent": percent(ratio(p_paid, persons))})
    return rows


# -- household_tally: kept in the transaction that changes what it counts -------------------

_TALLY_MEMBERS = """
SELECT h.id, 0, h.pool_id, h.village_id, COUNT(m.id), 0, 0
FROM household h LEFT JOIN member m ON m.household_id = h.id
WHERE h.status = 'active' {where}
GROUP BY h.id, h.pool_id, h.village_id"""
_TALLY_ENROLMENTS = """
SELECT h.id, e.scheme_year_id, h.pool_id, h.village_id, 0, COUNT(e.id),
       SUM(CASE WHEN e.status = 'paid' THEN 1 ELSE 0 END)
FROM household h JOIN member m ON m.household_id = h.id JOIN enrolment e ON e.member_id = m.id
WHERE h.status = 'active' {where}
GROUP BY h.id, e.scheme_year_id, h.pool_id, h.village_id"""
_TALLY_COLUMNS = "household_id, scheme_year_id, pool_id, village_id, persons, enrolled, paid"


def _expanding(sql: str) -> text:
    return text(sql).bindparams(bindparam("ids", expanding=True))


def refresh_tally(session: Session, household_ids=(), member_ids=()) -> None:
    """Count these households again (and the households of these members) into
    household_tally, in the session's transaction. Each household's row is locked first
    (PostgreSQL), so two transactions refreshing one household take turns."""
    conn = session.connection()
    ids = {int(i) for i in household_ids if i is not None}
    members = sorted({int(i) for i in member_ids if i is not None})
    for i in range(0, len(members), 500):
        ids.update(conn.execute(select(Member.household_id).where(
            Member.id.in_(members[i:i + 500]))).scalars())
    ordered = sorted(ids)
    for i in range(0, len(ordered), 500):
        part = ordered[i:i + 500]
        conn.execute(select(Household.id).where(Household.id.in_(part))
                     .order_by(Household.id).with_for_update())
        conn.execute(_expanding("DELETE FROM household_tally WHERE household_id IN :ids"),
                     {"ids": part})
        for sql in (_TALLY_MEMBERS, _TALLY_ENROLMENTS):
            conn.execute(_expanding(f"INSERT INTO household_tally ({_TALLY_COLUMNS})"
                                    + sql.format(where="AND h.id IN :ids")), {"ids": part})


def recount_tally(session: Session) -> list[tuple]:
    """household_tally's rows as the households, members and enrolments say, sorted."""
    conn = session.connection()
    return sorted(tuple(int(v) for v in r) for sql in (_TALLY_MEMBERS, _TALLY_ENROLMENTS)
                  for r in conn.execute(text(sql.format(where=""))))


def stored_tally(session: Session) -> list[tuple]:
    return sorted(tuple(int(v) for v in r) for r in session.connection().execute(
        text(f"SELECT {_TALLY_COLUMNS} FROM household_tally")))


def recount_all(session: Session) -> None:
    """Rebuild household_tally from scratch (after rows written in bulk outside the services,
    as the benchmarks do); the backfill migration does the same."""
    conn = session.connection()
    conn.execute(text("DELETE FROM household_tally"))
    for sql in (_TALLY_MEMBERS, _TALLY_ENROLMENTS):
        conn.execute(text(f"INSERT INTO household_tally ({_TALLY_COLUMNS})"
                          + sql.format(where="")))
    from core import ledger

    ledger.refill(session)


def _changed(obj, *names: str) -> bool:
    state = inspect(obj)
    return any(state.attrs[n].history.has_changes() for n in names)


@event.listens_for(Session, "after_flush")
def _tally_after_flush(session: Session, flush_context) -> None:
    """Households, members and enrolments written through the ORM in this flush (the
    services; a bulk INSERT calls refresh_tally itself): their households counted again."""
    households, members = set(), set()
    for obj in chain(session.new, session.deleted):
        if isinstance(obj, Household):
            households.add(obj.id)
        elif isinstance(obj, Member):
            households.add(obj.household_id)
        elif isinstance(obj, Enrolment):
            members.add(obj.member_id)
    for obj in session.dirty:
        if isinstance(obj, Household) and _changed(obj, "status", "village_id", "pool_id"):
            households.add(obj.id)
        elif isinstance(obj, Member) and _changed(obj, "household_id"):
            households.add(obj.household_id)
            households.update(inspect(obj).attrs.household_id.history.deleted or ())
        elif isinstance(obj, Enrolment) and _changed(obj, "status", "member_id",
                                                     "scheme_year_id"):
            members.add(obj.member_id)
            members.update(inspect(obj).attrs.member_id.history.deleted or ())
    if households or members:
        refresh_tally(session, households, members)


def members_paid(session: Session, pool_id: int, year_id: int | None) -> int:
    if year_id is None:
        return 0
    return session.scalar(select(func.count(Enrolment.id))
                          .join(SchemeYear, SchemeYear.id == Enrolment.scheme_year_id)
                          .where(SchemeYear.id == year_id, SchemeYear.pool_id == pool_id,
                                 Enrolment.status == EnrolmentStatus.paid)) or 0


# -- claims ---------------------------------------------------------------------------------

def claims_by_status(session: Session, pool_id: int, year_id: int | None = None,
                     village_ids=None) -> dict[str, dict]:
    """{status: {count, amount_fen}} for the pool's claims (of a scheme year), every status
    listed; collecting claims (photos still coming) are not counted."""
    q = (select(Claim.status, func.count(), func.coalesce(func.sum(Claim.amount_fen), 0))
         .where(Claim.status != ClaimStatus.collecting)
         .group_by(Claim.status))
    if year_id is not None:
        # a scheme year is its pool's (a claim takes the year of its household's pool): the
        # year alone picks the pool's claims, read from ix_claim_year_status only
        q = q.where(Claim.scheme_year_id == year_id)
    if year_id is None or village_ids is not None:
        q = q.join(Household, Household.id == Claim.household_id) \
            .where(Household.pool_id == pool_id)
    if village_ids is not None:
        q = q.where(Household.village_id.in_(list(village_ids)))
    found = {ClaimStatus(s).value: (n, int(a)) for s, n, a in session.execute(q)}
    return {s.value: {"count": found.get(s.value, (0, 0))[0],
                      "amount_fen": found.get(s.value, (0, 0))[1]}
            for s in ClaimStatus if s is not ClaimStatus.collecting}


# -- a household's balance ------------------------------------------------------------------

def household_balance(session: Session, household: Household, year: SchemeYear | None) -> dict:
    """Per member (name masked): enrolment status in the year and the annual cap left; the
    household's subsidies paid in the year."""
    members = list(household.members)
    enrolments = {}
    used: dict[int, int] = defaultdict(int)
    paid_fen = paid_count = 0
    cap = None
    if year is not None:
        cap = year.scheme.benefit.annual_cap_fen
        enrolments = {e.member_id: e.status.value for e in session.scalars(
            select(Enrolment).where(Enrolment.scheme_year_id == year.id,
                                    Enrolment.member_id.in_([m.id for m in members] or [-1])))}
        claims = session.scalars(select(Claim).where(Claim.household_id == household.id,
                                                     Claim.scheme_year_id == year.id))
        for c in claims:
            if c.status.value in CAP_STATUSES and c.amount_fen:
                used[c.member_id] += c.amount_fen
            if c.status is ClaimStatus.paid and c.amount_fen:
                paid_fen += c.amount_fen
                paid_count += 1
    rows = []
    for m in members:
        status = enrolments.get(m.id)
        left = None
        if status == EnrolmentStatus.paid.value and cap is not None:
            left = max(cap - used[m.id], 0)
        rows.append({"member_id": m.id, "name": mask_name(m.name), "relation": m.relation.value,
                     "enrolment": status, "cap_left_fen": left, "used_fen": used[m.id]})
    return {"household": household.number, "year": year, "annual_cap_fen": cap,
            "members": rows, "paid_fen": paid_fen, "paid_count": paid_count}


# -- the fund -------------------------------------------------------------------------------

def fund_overview(session: Session, pool_id: int, today: date) -> dict:
    """The pool's figures for this scheme year (基金公示): income by source, subsidies paid,
    fees, recoveries, balance carried over and now, members and claims."""
    pool = session.get(Pool, pool_id)
    year = year_for(session, pool_id, today)
    since = year.start if year is not None else None
    figures = ledger.summary(session, pool_id, since=since, until=today + timedelta(days=1))
    claims = claims_by_status(session, pool_id, year.id if year else None)
    submitted = sum(v["count"] for v in claims.values())
    return {"pool": pool.code, "pool_name": pool.name,
            "year_start": year.start if year else None, "year_end": year.end if year else None,
            **figures, "income_total_fen": sum(figures["income_fen"].values()),
            "members": members_paid(session, pool_id, year.id if year else None),
            "claims": submitted, "claims_paid": claims["paid"]["count"],
            "today": today}


# -- the year report ------------------------------------------------------------------------

def year_report(session: Session, pool_id: int, year: SchemeYear) -> dict:
    """The year's figures: participation per village, fund utilisation (paid ÷ raised),
    benefit rate (subsidies paid ÷ members), average subsidy, burden reduction (subsidies ÷
    out-of-pocket, over the paid claims whose out-of-pocket amount is known)."""
    pool = session.get(Pool, pool_id)
    villages = participation(session, pool_id, year.id)
    fund = ledger.summary(session, pool_id, since=year.start,
                          until=year.end + timedelta(days=1))
    raised = sum(fund["income_fen"].values())
    members = members_paid(session, pool_id, year.id)
    claims = claims_by_status(session, pool_id, year.id)
    paid_claims = list(session.execute(
        select(Claim.amount_fen, Claim.out_of_pocket_fen)
        .join(Household, Household.id == Claim.household_id)
        .where(Household.pool_id == pool_id, Claim.scheme_year_id == year.id,
               Claim.status == PAID_CLAIM)))
    n_paid = len(paid_claims)
    subsidies = sum(int(a or 0) for a, _ in paid_claims)
    known = [(int(a or 0), int(o)) for a, o in paid_claims if o]
    average = round_half_up(Decimal(subsidies) / n_paid) if n_paid else None
    persons = sum(v["persons"] for v in villages)
    return {
        "pool": pool.code, "pool_name": pool.name,
        "year": {"start": year.start.isoformat(), "end": year.end.isoformat()},
        "villages": [{**v, "rate": None if v["rate"] is None else str(v["rate"])}
                     for v in villages],
        "participation_rate": _s(ratio(sum(v["persons_paid"] for v in villages), persons)),
        "members": members,
        "raised_fen": raised, "income_fen": fund["income_fen"],
        "paid_fen": fund["paid_fen"], "fees_fen": fund["fees_fen"],
        "recovered_fen": fund["recovered_fen"], "carried_over_fen": fund["carried_over_fen"],
        "balance_fen": fund["balance_fen"],
        "utilisation": _s(ratio(fund["paid_fen"], raised)),
        "claims": {s: v["count"] for s, v in claims.items()},
        "claims_paid": n_paid, "subsidies_fen": subsidies,
        "benefit_rate": _s(ratio(n_paid, members)),
        "average_subsidy_fen": average,
        "burden_claims": len(known),
        "out_of_pocket_fen": sum(o for _, o in known),
        "burden_reduction": _s(ratio(sum(a for a, _ in known), sum(o for _, o in known))),
    }


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)

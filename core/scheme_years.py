"""Which scheme year: the one home of every "the pool's year for this day / this claim" look-up.

A pool has one scheme year per period (`SchemeYear`: period start–end, enrolment window
opens–closes, the rules). The questions the fund asks of them, each answered here only:

- `running(session, pool, day)` — the year whose period contains `day` (None between years)
- `enrolling(session, pool, day)` — the year whose enrolment window is open on `day` (it may
  start later, as in Anji: enrolment May–July for a year starting August 1); the latest if several
- `latest_started(session, pool_id, day)` — the year running on `day`, else the last one that
  started before it (the payout day and the service fee of a pool between years)
- `for_report(session, pool_id, day)` — running, else the latest started, else the first to come
- `claimable(session, pool_id, day)` — the latest two years started by `day`, newest first (a stay
  that ended late in one year may still be claimed early in the next)
- `of_claim(session, claim, day)` — the year the claim is filed under (else running on `day`)
- `for_decision(session, claim, admission, today)` — the year a review decides a claim under
- `running_or_enrolling(session, pool, day)` — the year `households list` reports
- `previous(session, year)` — the year ending the day before `year` starts (continuous bonus)
- `of_pool(session, pool_id, by=…)` — every year of the pool, in period or window order
- `last_closed` / `next_opening` — the windows around a day outside them (the replies say when)
- `closed_before(session, day)` / `enrolling_all(session, day)` — of every pool (the jobs)
- `started_in(session, pool_id, calendar_year)` and `overlapping(session, pool_id, first, last)`

A pool is given by code, id or row where the docstring says `pool`.
"""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Claim, Pool, SchemeYear


def _pool_id(session: Session, pool: str | int | Pool) -> int | None:
    if isinstance(pool, Pool):
        return pool.id
    if isinstance(pool, int):
        return pool
    return session.scalar(select(Pool.id).where(Pool.code == pool))


def running(session: Session, pool: str | int | Pool, day: date) -> SchemeYear | None:
    """The pool's scheme year whose period contains `day`."""
    pool_id = _pool_id(session, pool)
    return session.scalar(select(SchemeYear).where(
        SchemeYear.pool_id == pool_id, SchemeYear.start <= day, SchemeYear.end >= day))


def enrolling(session: Session, pool: str | int | Pool, day: date) -> SchemeYear | None:
    """The scheme year whose enrolment window is open on `day`; the latest one if several."""
    pool_id = _pool_id(session, pool)
    return session.scalar(
        select(SchemeYear)
        .where(SchemeYear.pool_id == pool_id, SchemeYear.enrolment_opens <= day,
               SchemeYear.enrolment_closes >= day)
        .order_by(SchemeYear.start.desc()).limit(1))


def claimable(session: Session, pool_id: int, day: date, n: int = 2) -> list[SchemeYear]:
    """The pool's latest `n` scheme years started by `day`, newest first."""
    return list(session.scalars(select(SchemeYear)
                                .where(SchemeYear.pool_id == pool_id, SchemeYear.start <= day)
                                .order_by(SchemeYear.start.desc()).limit(n)))


def latest_started(session: Session, pool_id: int, day: date) -> SchemeYear | None:
    """The pool's scheme year running on `day`, else the last one that started before it."""
    years = claimable(session, pool_id, day, 1)
    return years[0] if years else None


def for_report(session: Session, pool_id: int, day: date) -> SchemeYear | None:
    """The pool's scheme year running on `day`, else the latest one that has started, else the
    first one to come."""
    year = running(session, pool_id, day) or latest_started(session, pool_id, day)
    if year is not None:
        return year
    return session.scalar(select(SchemeYear).where(SchemeYear.pool_id == pool_id)
                          .order_by(SchemeYear.start).limit(1))


def running_or_enrolling(session: Session, pool: str | int | Pool,
                         day: date) -> SchemeYear | None:
    """The year running on `day`, else the one enrolling (what `households list` reports)."""
    return running(session, pool, day) or enrolling(session, pool, day)


def of_claim(session: Session, claim: Claim, day: date | None = None) -> SchemeYear | None:
    """The scheme year the claim is filed under; a claim without one: the pool's year running
    on `day` (when given)."""
    if claim.scheme_year_id:
        return session.get(SchemeYear, claim.scheme_year_id)
    return running(session, claim.household.pool_id, day) if day is not None else None


def for_decision(session: Session, claim: Claim, admission: date | None = None,
                 today: date | None = None) -> SchemeYear | None:
    """The scheme year a claim is decided under: the pool's year the stay began in; else the
    claim's own year (its stay then lies outside it: `outside_year`); else the year running on
    the day it was submitted (or today)."""
    pool_id = claim.household.pool_id
    if admission is not None:
        year = running(session, pool_id, admission)
        if year is not None:
            return year
    if claim.scheme_year_id is not None:
        return session.get(SchemeYear, claim.scheme_year_id)
    day = (claim.submitted_at.date() if claim.submitted_at else None) or today or date.today()
    return running(session, pool_id, day)


def previous(session: Session, year: SchemeYear) -> SchemeYear | None:
    """The pool's scheme year ending the day before `year` starts."""
    return session.scalar(select(SchemeYear).where(
        SchemeYear.pool_id == year.pool_id, SchemeYear.end == year.start - timedelta(days=1)))


def of_pool(session: Session, pool_id: int, by: str = "start") -> list[SchemeYear]:
    """Every scheme year of the pool, ordered by period `start` or by `enrolment_opens`."""
    order = {"start": SchemeYear.start, "enrolment_opens": SchemeYear.enrolment_opens}[by]
    return list(session.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool_id)
                                .order_by(order)))


def last_closed(session: Session, pool_id: int, day: date) -> SchemeYear | None:
    """The pool's scheme year whose enrolment window closed last before `day`."""
    return session.scalar(select(SchemeYear).where(
        SchemeYear.pool_id == pool_id, SchemeYear.enrolment_closes < day)
        .order_by(SchemeYear.enrolment_closes.desc()).limit(1))


def next_opening(session: Session, pool_id: int, day: date) -> SchemeYear | None:
    """The pool's scheme year whose enrolment window opens first after `day`."""
    return session.scalar(select(SchemeYear).where(
        SchemeYear.pool_id == pool_id, SchemeYear.enrolment_opens > day)
        .order_by(SchemeYear.enrolment_opens).limit(1))


def closed_before(session: Session, day: date) -> list[SchemeYear]:
    """The scheme years of every pool whose enrolment window closed before `day`."""
    return list(session.scalars(select(SchemeYear).where(SchemeYear.enrolment_closes < day)))


def enrolling_all(session: Session, day: date) -> list[SchemeYear]:
    """The scheme years of every pool whose enrolment window is open on `day`."""
    return list(session.scalars(select(SchemeYear).where(SchemeYear.enrolment_opens <= day,
                                                         SchemeYear.enrolment_closes >= day)))


def started_in(session: Session, pool_id: int, calendar_year: int) -> SchemeYear | None:
    """The pool's first scheme year starting in that calendar year."""
    return session.scalar(select(SchemeYear).where(
        SchemeYear.pool_id == pool_id, SchemeYear.start >= date(calendar_year, 1, 1),
        SchemeYear.start <= date(calendar_year, 12, 31)).order_by(SchemeYear.start).limit(1))


def overlapping(session: Session, pool_id: int, first: date, last: date) -> list[SchemeYear]:
    """The pool's scheme years whose period shares a day with [first, last]."""
    return list(session.scalars(select(SchemeYear).where(
        SchemeYear.pool_id == pool_id, SchemeYear.start <= last, SchemeYear.end >= first)))

"""Limits on guessing codes: a user who sends too many wrong codes in an hour is locked out
until the hour has passed, whatever code comes next; a limit over all users stops a guesser
who changes openid.

Each wrong code is a `GuessAttempt` row (kind, openid, at). The window slides: a lock holds
while the last hour holds `limit` or more wrong codes, and lifts when the oldest of the last
`limit` leaves the hour — the time the refusal tells the user. Codes sent while locked are not
checked and not counted, so the lock lifts on time and a guesser cannot lengthen it for others.
The check and the count run in the caller's transaction; on PostgreSQL an advisory lock per kind
serialises them across processes (SQLite serialises writers already), so no limit is passed by
messages arriving at once.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.models import GuessAttempt, utcnow
from core.outbox import as_utc


@dataclass(frozen=True)
class Limit:
    kind: str
    per_openid: int  # wrong codes per user per window
    overall: int | None = None  # wrong codes of all users per window
    window: timedelta = timedelta(hours=1)


ADMIN_CODE = Limit("admin_code", per_openid=10, overall=100)
PROXY_CODE = Limit("proxy_code", per_openid=5)
KEEP = timedelta(days=1)  # rows older than this are deleted as new ones come


@dataclass(frozen=True)
class Lock:
    until: datetime  # UTC
    everyone: bool  # the limit over all users, not this user's own


def _utc(now: datetime) -> datetime:
    return now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _serialise(session: Session, limit: Limit) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(
            zlib.crc32(f"huzhu.guess:{limit.kind}".encode()))))


def _lifts(session: Session, limit: Limit, count: int, since: datetime,
           openid: str | None) -> datetime | None:
    """When the window holds fewer than `count` wrong codes again (None: it does already)."""
    q = (select(GuessAttempt.at).where(GuessAttempt.kind == limit.kind, GuessAttempt.at > since)
         .order_by(GuessAttempt.at.desc()).offset(count - 1).limit(1))
    if openid is not None:
        q = q.where(GuessAttempt.openid == openid)
    nth = session.scalar(q)
    return as_utc(nth) + limit.window if nth is not None else None


def lock_of(session: Session, limit: Limit, openid: str, now: datetime) -> Lock | None:
    """The lock on this user's next code, if any."""
    now = _utc(now)
    _serialise(session, limit)
    since = now - limit.window
    mine = _lifts(session, limit, limit.per_openid, since, openid)
    everyone = (_lifts(session, limit, limit.overall, since, None)
                if limit.overall is not None else None)
    if mine is None and everyone is None:
        return None
    if everyone is not None and (mine is None or everyone > mine):
        return Lock(everyone, True)
    return Lock(mine, False)


def record_failure(session: Session, limit: Limit, openid: str,
                   now: datetime | None = None) -> None:
    """Count a wrong code (in the caller's transaction, with its audit row)."""
    now = _utc(now or utcnow())
    session.execute(delete(GuessAttempt).where(GuessAttempt.kind == limit.kind,
                                               GuessAttempt.at < now - KEEP))
    session.add(GuessAttempt(kind=limit.kind, openid=openid, at=now))
    session.flush()

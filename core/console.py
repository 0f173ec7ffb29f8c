"""The web console's sign-in: one-time links from `/后台`, browser sessions, and what an
administrator may see there.

A link is a random token (only its SHA-256 is stored) valid LINK_MINUTES, good once. Opening it
starts a session: another random token in an HttpOnly cookie (stored hashed), valid
SESSION_HOURS, with its own CSRF token. `/后台 退出` and a revoked grant end every session of the
administrator (core/admins.py calls `end_sessions`). Every change is audited in the caller's
transaction.

The read scope (`read_scope`) is the chat scope (core/admins.py `scope_of`) widened by the
administrator's `auditor` grants: an auditor sees a pool (or every pool) and changes nothing.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.audit import audit
from core.errors import DomainError
from core.models import AdminGrant, AdminRole, ConsoleLink, ConsoleSession, utcnow
from core.outbox import as_utc

LINK_MINUTES = 10
SESSION_HOURS = 8


class ConsoleError(DomainError):
    """A sign-in link that cannot be used: `bad_link` (unknown), `used_link`, `expired_link`,
    `not_admin` (the grant was withdrawn since)."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(session: Session, openid: str, now: datetime | None = None) -> str:
    """A new one-time sign-in token for `openid` (audited)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    session.add(ConsoleLink(token_hash=_hash(token), openid=openid, created_at=now,
                            expires_at=now + timedelta(minutes=LINK_MINUTES)))
    audit(session, openid, "console.link", "console_link", None, None,
          {"minutes": LINK_MINUTES})
    return token


@dataclass(frozen=True)
class Started:
    token: str  # the cookie's value
    csrf: str
    openid: str
    expires_at: datetime


def redeem_link(session: Session, token: str, now: datetime | None = None) -> Started:
    """Use a sign-in link once: a session for its administrator. ConsoleError otherwise (the
    refusal audited, nothing else changed)."""
    now = now or utcnow()
    link = None
    if 20 <= len(token) <= 100:
        link = session.scalar(select(ConsoleLink).where(ConsoleLink.token_hash == _hash(token))
                              .with_for_update())
    why = ("bad_link" if link is None else "used_link" if link.used_at is not None
           else "expired_link" if as_utc(link.expires_at) <= now else None)
    if why is None and not session.scalar(select(AdminGrant.id).where(
            AdminGrant.openid == link.openid).limit(1)):
        why = "not_admin"
    if why is not None:
        audit(session, link.openid if link else "web:anonymous", "console.login_refused",
              "console_link", link.id if link else None, None, {"why": why})
        raise ConsoleError(why)
    link.used_at = now
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    row = ConsoleSession(token_hash=_hash(cookie), openid=link.openid, csrf=csrf,
                         created_at=now, expires_at=now + timedelta(hours=SESSION_HOURS))
    session.add(row)
    session.flush()
    audit(session, link.openid, "console.login", "console_session", row.id, None,
          {"hours": SESSION_HOURS})
    return Started(cookie, csrf, link.openid, row.expires_at)


def current(session: Session, cookie: str | None,
            now: datetime | None = None) -> ConsoleSession | None:
    """The live session of a cookie, or None (unknown, ended, expired)."""
    if not cookie or len(cookie) > 100:
        return None
    now = now or utcnow()
    row = session.scalar(select(ConsoleSession).where(
        ConsoleSession.token_hash == _hash(cookie)))
    if row is None or row.ended_at is not None or as_utc(row.expires_at) <= now:
        return None
    return row


def end_session(session: Session, row: ConsoleSession, actor: str) -> None:
    row.ended_at = utcnow()
    audit(session, actor, "console.logout", "console_session", row.id, None, {"sessions": 1})


def end_sessions(session: Session, openid: str, actor: str, why: str) -> int:
    """End every live session of `openid`; the number ended (audited when any)."""
    now = utcnow()
    n = session.execute(update(ConsoleSession).where(
        ConsoleSession.openid == openid, ConsoleSession.ended_at.is_(None),
        ConsoleSession.expires_at > now).values(ended_at=now)).rowcount or 0
    if n:
        audit(session, actor, "console.logout", "console_session", openid[-6:], None,
              {"sessions": n, "why": why})
    return n


# -- what the administrator sees ---------------------------------------------------------------

def read_scope(session: Session, openid: str):
    """The chat scope widened by auditor grants (a pool, or everything when bound to none)."""
    from core.admins import Scope, scope_of

    base = scope_of(session, openid)
    audits = list(session.scalars(select(AdminGrant).where(
        AdminGrant.openid == openid, AdminGrant.role == AdminRole.auditor)))
    if not audits:
        return base
    return Scope(base.roles, base.pool_ids | {g.pool_id for g in audits if g.pool_id},
                 base.village_ids, base.everything or any(g.pool_id is None for g in audits))


def read_only(roles) -> bool:
    """Whether an administrator holds nothing but auditor grants."""
    return bool(roles) and set(roles) <= {AdminRole.auditor}

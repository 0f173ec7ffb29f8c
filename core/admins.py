"""Administrators: one-time invite codes, binding, and the scope of each role."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import attempts
from core.audit import audit
from core.console import end_sessions
from core.errors import DomainError
from core.models import AdminGrant, AdminInvite, AdminRole, Pool, Village, utcnow
from core.outbox import as_utc

INVITE_VALID = timedelta(days=7)
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over the phone


class AdminError(DomainError):
    """A refusal with a stable code (templates/messages/admin_refused.j2 words it)."""


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def find_village(session: Session, name: str) -> Village | None:
    """A village by its full name (镇/村) or, when unambiguous, by its own name."""
    v = session.scalar(select(Village).where(Village.full_name == name))
    if v is not None:
        return v
    found = list(session.scalars(select(Village).where(Village.name == name)))
    return found[0] if len(found) == 1 else None


def create_invite(session: Session, role: str, actor: str, village: str | None = None,
                  pool: str | None = None) -> str:
    try:
        role_enum = AdminRole(role)
    except ValueError:
        raise AdminError("unknown_role", role=role)
    pool_row = village_row = None
    if village:
        village_row = find_village(session, village)
        if village_row is None:
            raise AdminError("unknown_village", village=village)
        pool_row = village_row.pool
    elif pool:
        pool_row = session.scalar(select(Pool).where(Pool.code == pool))
        if pool_row is None:
            raise AdminError("unknown_pool", pool=pool)
    if role_enum is AdminRole.village_admin and village_row is None:
        raise AdminError("village_required")
    if role_enum is AdminRole.pool_admin and pool_row is None:
        raise AdminError("pool_required")
    if role_enum is AdminRole.super and (pool_row or village_row):
        raise AdminError("super_has_no_scope")
    code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    session.add(AdminInvite(code_hash=_hash(code), role=role_enum,
                            pool_id=pool_row.id if pool_row else None,
                            village_id=village_row.id if role_enum is AdminRole.village_admin
                            and village_row else None,
                            created_by=actor, expires_at=utcnow() + INVITE_VALID))
    audit(session, actor, "admin.invite", "admin_invite", None, None,
          {"role": role_enum.value, "pool": pool_row.code if pool_row else None,
           "village": village_row.full_name if village_row else None})
    return code


def bind(session: Session, openid: str, code: str, now: datetime | None = None) -> AdminGrant:
    """Bind the user with an invite code. A wrong, used or expired code is one refusal,
    `bad_code` (its `reason` detail, for the audit log, says which); the caller records it with
    `record_bind_refusal`, which counts it against the guessing limits (core/attempts.py: 10 per
    user and 100 over all users an hour). While a limit holds: `locked` (details `until`, UTC,
    and `everyone`), and no code is looked at."""
    now = now or utcnow()
    lock = attempts.lock_of(session, attempts.ADMIN_CODE, openid, now)
    if lock is not None:
        raise AdminError("locked", until=lock.until, everyone=lock.everyone)
    invite = session.scalar(select(AdminInvite).where(AdminInvite.code_hash == _hash(code))
                            .with_for_update())
    reason = ("bad_code" if invite is None else "code_used" if invite.used_at is not None
              else "code_expired" if as_utc(invite.expires_at) < now else None)
    if reason is not None:
        raise AdminError("bad_code", reason=reason)
    invite.used_at = utcnow()
    invite.used_by = openid
    grant = session.scalar(select(AdminGrant).where(
        AdminGrant.openid == openid, AdminGrant.role == invite.role,
        AdminGrant.pool_id == invite.pool_id, AdminGrant.village_id == invite.village_id))
    if grant is None:
        grant = AdminGrant(openid=openid, role=invite.role, pool_id=invite.pool_id,
                           village_id=invite.village_id)
        session.add(grant)
        session.flush()
    audit(session, openid, "admin.bind", "admin_grant", grant.id, None,
          {"role": invite.role.value, "pool_id": invite.pool_id, "village_id": invite.village_id})
    return grant


def record_bind_refusal(session: Session, openid: str, error: AdminError,
                        now: datetime | None = None) -> None:
    """Audit a refused `/绑定` (with which it was: bad_code, code_used, code_expired, locked)
    and count a wrong code against the guessing limits, in the message's transaction."""
    audit(session, openid, "admin.bind_refused", None, None, None,
          {"why": error.details.get("reason", error.code)})
    if error.code == "bad_code":
        attempts.record_failure(session, attempts.ADMIN_CODE, openid, now)


@dataclass(frozen=True)
class Scope:
    """What an administrator may touch."""
    roles: frozenset[AdminRole]
    pool_ids: frozenset[int]  # pools held whole (pool_admin; reviewer bound to a pool)
    village_ids: frozenset[int]  # single villages (village_admin)
    everything: bool  # super, or a reviewer bound to no pool

    @property
    def is_admin(self) -> bool:
        return bool(self.roles)

    def covers_pool(self, pool_id: int) -> bool:
        return self.everything or pool_id in self.pool_ids

    def covers_village(self, village: Village) -> bool:
        return (self.everything or village.pool_id in self.pool_ids
                or village.id in self.village_ids)

    def villages(self, session: Session) -> list[Village]:
        q = select(Village).order_by(Village.id)
        if not self.everything:
            q = q.where((Village.pool_id.in_(self.pool_ids)) | (Village.id.in_(self.village_ids)))
        return list(session.scalars(q))

    def pools(self, session: Session) -> list[Pool]:
        ids = set(self.pool_ids)
        if self.village_ids:
            ids |= set(session.scalars(select(Village.pool_id).where(
                Village.id.in_(self.village_ids))))
        q = select(Pool).order_by(Pool.id)
        if not self.everything:
            q = q.where(Pool.id.in_(ids))
        return list(session.scalars(q))


def scope_of(session: Session, openid: str) -> Scope:
    grants = list(session.scalars(select(AdminGrant).where(AdminGrant.openid == openid)))
    roles = frozenset(g.role for g in grants)
    everything = any(g.role is AdminRole.super
                     or (g.role is AdminRole.reviewer and g.pool_id is None) for g in grants)
    # an auditor's grant reads only (core/console.py `read_scope`): it widens no chat scope
    pools = frozenset(g.pool_id for g in grants if g.pool_id is not None
                      and g.role not in (AdminRole.village_admin, AdminRole.auditor))
    villages = frozenset(g.village_id for g in grants if g.village_id is not None)
    return Scope(roles, pools, villages, everything)


# -- listing and revoking ----------------------------------------------------------------------

def mask_openid(openid: str) -> str:
    """An administrator's openid as chat shows it: enough to tell them apart, not enough to
    write as them (oAbC…x9Yz12 for WeChat's 28 characters)."""
    if len(openid) > 12:
        return openid[:4] + "…" + openid[-6:]
    return openid[:2] + "…" + openid[-2:] if len(openid) > 4 else "…"


def _scope_label(session: Session, grant: AdminGrant) -> str:
    if grant.village_id is not None:
        return session.get_one(Village, grant.village_id).full_name
    if grant.pool_id is not None:
        return session.get_one(Pool, grant.pool_id).code
    return "all"


def _grant_row(session: Session, grant: AdminGrant) -> dict:
    return {"openid": grant.openid, "role": grant.role.value,
            "scope": _scope_label(session, grant),
            "bound_at": as_utc(grant.granted_at).isoformat()}


def administrators(session: Session) -> list[dict]:
    """Every grant: {openid, role, scope, bound_at} (scope: a village's full name, a pool's
    code, or "all"), by openid then grant."""
    grants = session.scalars(select(AdminGrant).order_by(AdminGrant.openid, AdminGrant.id))
    return [_grant_row(session, g) for g in grants]


def find_admin(session: Session, text: str) -> str:
    """The openid meant by `text`: a full openid holding a grant, or as chat shows it masked
    (or its ending of at least 6 characters) when that names one administrator. AdminError
    `no_admin` or `ambiguous` otherwise."""
    text = text.strip().replace("...", "…")
    openids = sorted(set(session.scalars(select(AdminGrant.openid))))
    if text in openids:
        return text
    if "…" in text:
        head, tail = text.split("…", 1)
        found = [o for o in openids if head and tail and o.startswith(head) and o.endswith(tail)]
    else:
        found = [o for o in openids if len(text) >= 6 and o.endswith(text)]
    if len(found) == 1:
        return found[0]
    raise AdminError("ambiguous" if found else "no_admin", target=text)


def revoke_admin(session: Session, actor: str, openid: str) -> list[dict]:
    """Withdraw every grant of `openid`: each removal audited with what it was. The user's next
    command is refused (scopes are read per message). AdminError `no_admin` if it holds none."""
    grants = list(session.scalars(select(AdminGrant).where(AdminGrant.openid == openid)
                                  .order_by(AdminGrant.id).with_for_update()))
    if not grants:
        raise AdminError("no_admin", target=openid)
    removed = []
    for g in grants:
        row = _grant_row(session, g)
        audit(session, actor, "admin.revoke", "admin_grant", g.id, row, None)
        session.delete(g)
        removed.append(row)
    session.flush()
    end_sessions(session, openid, actor, "revoked")
    return removed


def revoke_invite(session: Session, actor: str, code: str, now=None) -> dict:
    """An invite code: unused, it stops working now (audited); used, the grant it made is
    withdrawn (audited). AdminError `no_invite` when no invite has this code."""
    now = now or utcnow()
    invite = session.scalar(select(AdminInvite).where(AdminInvite.code_hash == _hash(code))
                            .with_for_update())
    if invite is None:
        raise AdminError("no_invite", target=code)
    if invite.used_at is None:
        before = {"role": invite.role.value, "expires_at": as_utc(invite.expires_at).isoformat()}
        if as_utc(invite.expires_at) > now:
            invite.expires_at = now
        audit(session, actor, "admin.invite_revoked", "admin_invite", invite.id, before,
              {"expires_at": as_utc(invite.expires_at).isoformat()})
        return {"invite": invite.id, "role": invite.role.value, "used_by": None, "revoked": []}
    grant = session.scalar(select(AdminGrant).where(
        AdminGrant.openid == invite.used_by, AdminGrant.role == invite.role,
        AdminGrant.pool_id == invite.pool_id, AdminGrant.village_id == invite.village_id)
        .with_for_update())
    removed = []
    if grant is not None:
        removed.append(_grant_row(session, grant))
        audit(session, actor, "admin.revoke", "admin_grant", grant.id, removed[0],
              {"invite": invite.id})
        session.delete(grant)
        session.flush()
        end_sessions(session, invite.used_by, actor, "revoked")
    return {"invite": invite.id, "role": invite.role.value, "used_by": invite.used_by,
            "revoked": removed}

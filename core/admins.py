"""Administrators: one-time invite codes, binding, and the scope of each role."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import audit
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


def bind(session: Session, openid: str, code: str) -> AdminGrant:
    invite = session.scalar(select(AdminInvite).where(AdminInvite.code_hash == _hash(code))
                            .with_for_update())
    if invite is None:
        raise AdminError("bad_code")
    if invite.used_at is not None:
        raise AdminError("code_used")
    if as_utc(invite.expires_at) < utcnow():
        raise AdminError("code_expired")
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
    pools = frozenset(g.pool_id for g in grants
                      if g.pool_id is not None and g.role is not AdminRole.village_admin)
    villages = frozenset(g.village_id for g in grants if g.village_id is not None)
    return Scope(roles, pools, villages, everything)

"""The audit log: who changed what, before and after. Written in the caller's transaction."""
from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import AuditLog


def audit(session: Session, actor: str, action: str, entity: str | None = None,
          entity_id: str | int | None = None, before: dict | None = None,
          after: dict | None = None) -> AuditLog:
    row = AuditLog(actor=actor, action=action, entity=entity,
                   entity_id=None if entity_id is None else str(entity_id),
                   before=before, after=after)
    session.add(row)
    return row

"""Notifications to a household: one outbox row per linked WeChat user (head and proxies),
written in the caller's transaction. Texts come from templates/messages/."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox
from core.messages import render
from core.models import HouseholdLink


def linked_openids(session: Session, household_id: int) -> list[str]:
    return list(session.scalars(select(HouseholdLink.openid)
                                .where(HouseholdLink.household_id == household_id)
                                .order_by(HouseholdLink.id)))


def notify_household(session: Session, household_id: int, template: str, **context) -> int:
    """Render `template` once and queue it for every user linked to the household."""
    text = render(template, **context)
    openids = linked_openids(session, household_id)
    for openid in openids:
        outbox.send_text(session, openid, text)
    return len(openids)

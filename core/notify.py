"""Notifications to a household, written in the caller's transaction. Texts come from
templates/messages/.

- `notify_household(session, household_id, template, event=None, variables=None, **context)`
  renders `template` once. With no `event`: one `wechat.send` row per linked WeChat user
  (head and proxies). With an `event` of NOTIFY_TEMPLATES (core/notices.py): one `notice` row
  for the household, which the outbox tries customer-service → template/subscription → SMS
  (bot/outbox/notice.py) and marks with the channel that told it — written even when no
  WeChat user is linked (an imported household is told by SMS, or listed by `/待通知`).
- `variables`: the event's variables (household, claim, member masked, result, amount in fen,
  date, reason, next_step) for the template's fields and the SMS parameters.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox
from core.messages import render
from core.models import HouseholdLink, OutboxMessage, OutboxStatus, utcnow
from core.notices import EVENTS

NOTICE = "notice"


def linked_openids(session: Session, household_id: int) -> list[str]:
    return list(session.scalars(select(HouseholdLink.openid)
                                .where(HouseholdLink.household_id == household_id)
                                .order_by(HouseholdLink.id)))


def notify_household(session: Session, household_id: int, template: str, *,
                     event: str | None = None, variables: dict | None = None,
                     **context) -> int:
    """Render `template` once and queue it for the household (see the module's text); returns
    the number of WeChat users it is for."""
    text = render(template, **context)
    openids = linked_openids(session, household_id)
    if event is not None:
        queue_notice(session, household_id, event, text, variables or {}, openids)
        return len(openids)
    for openid in openids:
        outbox.send_text(session, openid, text)
    return len(openids)


def json_variables(variables: dict) -> dict:
    """Dates as ISO text, the rest as given (amounts stay integer fen)."""
    out = {}
    for key, value in variables.items():
        if isinstance(value, datetime):
            value = value.date()
        out[key] = value.isoformat() if isinstance(value, date) else value
    return out


def notice_row(household_id: int, event: str, text: str, variables: dict,
               openids: list[str], now: datetime | None = None) -> dict:
    """The column values of one notice row (also for bulk inserts)."""
    if event not in EVENTS:
        raise ValueError(f"unknown notice event {event!r}")
    now = now or utcnow()
    return {"kind": NOTICE, "status": OutboxStatus.pending, "attempts": 0,
            "next_attempt_at": now, "created_at": now, "event": event,
            "household_id": household_id, "recipient": None,
            "payload": {"household_id": household_id, "event": event, "text": text,
                        "variables": json_variables(variables), "openids": list(openids)}}


def queue_notice(session: Session, household_id: int, event: str, text: str, variables: dict,
                 openids: list[str]) -> OutboxMessage:
    row = OutboxMessage(**notice_row(household_id, event, text, variables, openids))
    session.add(row)
    return row

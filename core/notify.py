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


# -- households not told ------------------------------------------------------------------------

UNTOLD_AFTER_HOURS = 24
ERRORS_DAYS = 7


def untold(session: Session, scope, now: datetime | None = None,
           events: tuple[str, ...] = ("claim_decided", "appeal_decided")) -> dict:
    """For `/待通知`: the households in the administrator's scope not told of a decided claim
    24 hours after the decision (the notice has no channel yet: held, or dead), oldest first;
    and the channels' refusals of the last 7 days in that scope ({(channel, code): count})."""
    from datetime import timedelta

    from core.models import Household, Village

    now = now or utcnow()
    rows = session.execute(
        select(OutboxMessage, Household.number, Village)
        .join(Household, Household.id == OutboxMessage.household_id)
        .join(Village, Village.id == Household.village_id)
        .where(OutboxMessage.kind == NOTICE, OutboxMessage.channel.is_(None),
               OutboxMessage.event.in_(events),
               OutboxMessage.created_at <= now - timedelta(hours=UNTOLD_AFTER_HOURS),
               OutboxMessage.status != OutboxStatus.sent)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)).all()
    items = []
    for row, number, village in rows:
        if not scope.covers_village(village):
            continue
        p = row.payload or {}
        errors = p.get("errors") or []
        created = outbox.as_utc(row.created_at)
        items.append({
            "household": number, "village": village.name,
            "claim": (p.get("variables") or {}).get("claim"),
            "result": (p.get("variables") or {}).get("result"),
            "hours": int((now - created).total_seconds() // 3600),
            "linked": bool(p.get("openids")), "sms": p.get("sms"),
            "error": f"{errors[-1]['channel']} {errors[-1]['code']}" if errors else None})
    refusals: dict[tuple[str, str], int] = {}
    recent = session.execute(
        select(OutboxMessage.payload, Village)
        .join(Household, Household.id == OutboxMessage.household_id)
        .join(Village, Village.id == Household.village_id)
        .where(OutboxMessage.kind == NOTICE,
               OutboxMessage.created_at >= now - timedelta(days=ERRORS_DAYS))).all()
    for payload, village in recent:
        if not scope.covers_village(village):
            continue
        for e in (payload or {}).get("errors") or []:
            key = (e.get("channel", "?"), str(e.get("code", "?")))
            refusals[key] = refusals.get(key, 0) + 1
    return {"items": items, "refusals": refusals}

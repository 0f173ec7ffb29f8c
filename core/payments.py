"""Payments: the household's order for a scheme year, the payments applied to it (WeChat Pay
callbacks and offline cash or transfers), activation, exceptions, the deadline.

- **Order**: one open order per household and scheme year (a partial unique index holds it). It
  covers the household's members whose enrolment in that year is pending; each member's
  contribution is split by the scheme (`Contribution.member_shares`): the household pays the
  personal shares, a subsidized category's personal share is charged to the collective, and a
  member of an excluded category cannot join — left out of the order, never activated (a
  household of only such members cannot pay at all). Asking again returns the same order unless the members (or
  the scheme's contribution) changed — `members_digest` — then the old order is `expired` and a
  new one made. `open → paid | expired`; open orders expire after the payment deadline (the
  enrolment window's close: "交费截止日期后，不再接受交费").
- **Applying a payment** (`apply_wechat_payment`, `record_offline`): idempotent on the
  transaction id; a WeChat payment must match the order's amount, appid and mchid, and arrive
  for an open order in time, else it is recorded as a `PaymentException` for an administrator
  and nothing is activated. Activation, in the caller's one transaction: the payment row, the
  order `paid`, the members' enrolments `paid`, the ledger entry (SPEC "Money": the personal part
  into fund:cash, every other share as receivable:<source>, each as income:<source>), the
  village tag on the payer, audit rows and the household's confirmation through the outbox.
- **Gateway**: what this module asks of a payment service (`Gateway`); the WeChat Pay adapter
  lives in bot/clients/wechatpay.py, and the app hands it to whoever needs it (bot/web/app.py
  `make_context`; the dialogues through `Ctx.gateway`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import ledger, outbox, scheme_years
from core.audit import audit
from core.crypto import mask_name
from core.errors import DomainError
from core.messages import render
from core.models import (AdminGrant, AdminRole, Enrolment, EnrolmentStatus, Household,
                         HouseholdLink, LinkRole, Member, OrderStatus, Payment, PaymentException,
                         PaymentOrder, PaymentReminder, SchemeYear, WechatUser, utcnow)
from core.notices import words
from core.notify import linked_openids, notify_household

log = logging.getLogger("huzhu.payments")

CHANNELS = ("wechatpay", "cash", "transfer", "subsidy")
OFFLINE_CHANNELS = ("cash", "transfer")
REMINDER_DAYS = (7, 1)


class PaymentError(DomainError):
    """A refusal with a stable code; templates/messages/payment_refused.j2 words it.

    Codes: no_household, window_closed (closes), not_enrolled, already_paid, excluded_member
    (name, category), wrong_amount (due_fen, got_fen), bad_channel, nothing_due."""


# ---------------------------------------------------------------------------------------------
# The gateway (bot/clients/wechatpay.py is the WeChat Pay v3 one; the app context builds it).

class GatewayError(Exception):
    """The payment service could not be reached or refused the request."""


class Gateway(Protocol):
    appid: str
    mchid: str

    def native(self, out_trade_no: str, description: str, amount_fen: int,
               time_expire: datetime | None) -> str: ...

    def close(self, out_trade_no: str) -> None: ...


# ---------------------------------------------------------------------------------------------
# Deadline.

def deadline(year: SchemeYear, order: PaymentOrder | None = None) -> date:
    """The payment deadline: the last day of the enrolment window; for a newborn's order (paid
    outside the window, scheme enrolment.newborn_days) the last day of the scheme year."""
    if order is not None and (order.breakdown or {}).get("newborn"):
        return year.end
    return year.enrolment_closes


def deadline_end(year: SchemeYear, tz: ZoneInfo, order: PaymentOrder | None = None) -> datetime:
    """The first moment after the deadline (of `order`: a newborn's runs to the year's end),
    local time."""
    return datetime.combine(deadline(year, order) + timedelta(days=1), time(0), tz)


def _newborns_pending(session: Session, household: Household, year: SchemeYear) -> bool:
    return any(e.newborn and e.status is EnrolmentStatus.pending
               for e in _enrolments(session, household, year))


def payable_year(session: Session, household: Household, today: date) -> SchemeYear:
    """The scheme year whose payment window is open today — or, outside it, the running year
    when the household has a newborn added outside the window still to pay for — else
    PaymentError(window_closed)."""
    year = scheme_years.enrolling(session, household.pool_id, today)
    if year is None or not any(e.status is EnrolmentStatus.pending
                               for e in _enrolments(session, household, year)):
        running = scheme_years.running(session, household.pool_id, today)
        if running is not None and _newborns_pending(session, household, running):
            return running
    if year is None:
        last = scheme_years.last_closed(session, household.pool_id, today)
        nxt = scheme_years.next_opening(session, household.pool_id, today)
        raise PaymentError("window_closed", closes=last.enrolment_closes if last else None,
                           opens=nxt.enrolment_opens if nxt else None)
    return year


# ---------------------------------------------------------------------------------------------
# Quote and order.

@dataclass
class Quote:
    """What a household owes for a scheme year, computed, not stored."""
    household_id: int
    scheme_year_id: int
    members: list[dict]  # {member_id, name (masked), id_masked, category, shares: {source: fen}}
    totals: dict[str, int]  # source -> fen over all members
    amount_fen: int  # what the household pays (the personal shares)
    digest: str
    # members of a category the scheme excludes ("cannot join"): left out of the order
    excluded: list[dict] = field(default_factory=list)  # {member_id, name (masked), category}
    newborn: bool = False  # newborns paid for outside the payment window

    @property
    def whole_fen(self) -> int:
        return sum(self.totals.values())

    def breakdown(self) -> dict:
        return {"members": self.members, "totals": self.totals, "whole_fen": self.whole_fen,
                "excluded": self.excluded, "newborn": self.newborn}


def _enrolments(session: Session, household: Household, year: SchemeYear) -> list[Enrolment]:
    return list(session.scalars(
        select(Enrolment).join(Member, Member.id == Enrolment.member_id)
        .where(Member.household_id == household.id, Enrolment.scheme_year_id == year.id)
        .order_by(Member.id)))


def household_paid(session: Session, household: Household, year: SchemeYear) -> bool:
    """Every enrolment of the household in the year is paid (and there is at least one)."""
    rows = _enrolments(session, household, year)
    return bool(rows) and all(e.status is EnrolmentStatus.paid for e in rows)


def quote(session: Session, household: Household, year: SchemeYear,
          today: date | None = None, rows: list[Enrolment] | None = None) -> Quote:
    """The members with a pending enrolment in `year` and their shares (PaymentError when
    there is nothing to pay or a member's category may not join). Outside the year's payment
    window (`today` given) only newborns added outside it are due, at the scheme's
    newborn_share if it sets one. `rows`: the household's enrolments in `year` (members
    loaded), when the caller has read them already (record_offline_many)."""
    if rows is None:
        rows = _enrolments(session, household, year)
    pending = [e for e in rows if e.status is EnrolmentStatus.pending]
    newborn_only = today is not None and not year.enrolment_opens <= today <= year.enrolment_closes
    if newborn_only:
        pending = [e for e in pending if e.newborn]
    if pending and household.awaits_village:  # enrolment.village_confirms: /确认登记 first
        raise PaymentError("awaits_village", village=household.village.full_name)
    if not pending:
        if any(e.status is EnrolmentStatus.paid for e in rows):
            raise PaymentError("already_paid")
        raise PaymentError("not_enrolled")
    scheme = year.scheme
    contribution = scheme.contribution
    members, excluded, totals = [], [], {}
    for e in pending:
        m = e.member
        if not contribution.may_join(m.category):
            excluded.append({"member_id": m.id, "name": mask_name(m.name), "category": m.category})
            continue
        shares = contribution.member_shares(
            m.category, scheme.enrolment.newborn_share_fen if e.newborn else None)
        members.append({"member_id": m.id, "name": mask_name(m.name),
                        "id_masked": m.id_number_masked, "category": m.category,
                        "shares": shares, "newborn": e.newborn})
        for source, fen in shares.items():
            totals[source] = totals.get(source, 0) + fen
    if not members:
        if any(e.status is EnrolmentStatus.paid for e in rows):
            raise PaymentError("already_paid")
        raise PaymentError("excluded_member", name=excluded[0]["name"],
                           category=excluded[0]["category"])
    digest = hashlib.sha256(json.dumps({
        "members": [[m["member_id"], m["category"]] for m in members],
        "excluded": [[m["member_id"], m["category"]] for m in excluded],
        "contribution": [contribution.per_person_fen, dict(contribution.shares_fen),
                         list(contribution.subsidized), list(contribution.excluded),
                         dict(contribution.payers), scheme.enrolment.newborn_share_fen],
    }, sort_keys=True).encode()).hexdigest()
    return Quote(household.id, year.id, members, totals, totals.get("personal", 0), digest,
                 excluded, newborn_only)


def open_order(session: Session, household_id: int, year_id: int,
               lock: bool = False) -> PaymentOrder | None:
    q = select(PaymentOrder).where(PaymentOrder.household_id == household_id,
                                   PaymentOrder.scheme_year_id == year_id,
                                   PaymentOrder.status == OrderStatus.open)
    if lock:
        q = q.with_for_update()
    return session.scalar(q)


def new_trade_no(today: date) -> str:
    """HZ + date + 16 random hex digits: unique, unguessable, at most 32 characters."""
    return f"HZ{today:%Y%m%d}{secrets.token_hex(8).upper()}"


@dataclass
class OrderResult:
    order: PaymentOrder
    superseded: list[PaymentOrder] = field(default_factory=list)  # to close at the gateway
    created: bool = False
    settled: bool = False  # nothing to pay: activated at once (every share from a source)


def order_for(session: Session, household: Household, actor: str, now: datetime) -> OrderResult:
    """The household's open order for the year whose payment window is open (`now` local):
    the same one again unless its members changed. An order of 0.00 (every member's share
    paid by a source) is settled at once."""
    today = now.date()
    year = payable_year(session, household, today)
    q = quote(session, household, year, today)
    existing = open_order(session, household.id, year.id, lock=True)
    if existing is not None and existing.members_digest == q.digest:
        return OrderResult(existing)
    superseded = []
    if existing is not None:
        existing.status = OrderStatus.expired
        audit(session, actor, "payment.order_superseded", "payment_order", existing.out_trade_no,
              {"status": "open", "amount_fen": existing.amount_fen},
              {"status": "expired", "why": "members_changed"})
        session.flush()
        superseded.append(existing)
    order = PaymentOrder(out_trade_no=new_trade_no(today), household_id=household.id,
                         scheme_year_id=year.id, amount_fen=q.amount_fen, breakdown=q.breakdown(),
                         members_digest=q.digest, status=OrderStatus.open)
    try:
        with session.begin_nested():
            session.add(order)
    except IntegrityError:  # another message made the open order a moment ago
        other = open_order(session, household.id, year.id)
        if other is None:
            raise
        return OrderResult(other, superseded)
    audit(session, actor, "payment.order_created", "payment_order", order.out_trade_no, None,
          {"household": household.number, "amount_fen": order.amount_fen,
           "totals": q.totals, "members": len(q.members)})
    result = OrderResult(order, superseded, created=True)
    if order.amount_fen == 0:
        _activate(session, order, channel="subsidy", transaction_id=f"SUBSIDY-{order.out_trade_no}",
                  amount_fen=0, actor=actor, paid_at=now, payer_openid=None)
        result.settled = True
    return result


# ---------------------------------------------------------------------------------------------
# Applying payments.

@dataclass
class Outcome:
    status: str  # applied | duplicate | exception | ignored
    payment: Payment | None = None
    exception: PaymentException | None = None


def _parse_time(value: str | None, tz: ZoneInfo) -> datetime:
    if value:
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
        except ValueError:
            pass
    return datetime.now(tz)


def apply_wechat_payment(session: Session, resource: dict, *, appid: str, mchid: str,
                         tz: ZoneInfo, actor: str = "wechatpay") -> Outcome:
    """Apply a verified, decrypted WeChat Pay transaction (the callback's resource).
    Idempotent on transaction_id; anything that does not match the open order in time is
    recorded as a PaymentException and activates nothing."""
    tx = str(resource.get("transaction_id") or "")
    out_trade_no = str(resource.get("out_trade_no") or "")
    if not tx or not out_trade_no or len(tx) > 64 or len(out_trade_no) > 32:
        raise ValueError("not a payment transaction")
    order = session.scalar(select(PaymentOrder).where(PaymentOrder.out_trade_no == out_trade_no)
                           .with_for_update())
    if session.scalar(select(Payment.id).where(Payment.transaction_id == tx)) is not None:
        return Outcome("duplicate")
    if session.scalar(select(PaymentException.id)
                      .where(PaymentException.transaction_id == tx)) is not None:
        return Outcome("duplicate")
    if resource.get("trade_state") != "SUCCESS":
        return Outcome("ignored")
    amount = resource.get("amount") or {}
    paid_at = _parse_time(resource.get("success_time"), tz).astimezone(tz)
    payer = (resource.get("payer") or {}).get("openid")
    detail = {"appid": resource.get("appid"), "mchid": resource.get("mchid"),
              "total_fen": amount.get("total"), "payer_total_fen": amount.get("payer_total"),
              "currency": amount.get("currency"), "success_time": resource.get("success_time"),
              "payer": payer}
    kind = None
    if order is None:
        kind = "unknown_order"
    else:
        detail.update(household=order.household.number, order_status=order.status.value,
                      due_fen=order.amount_fen)
        year = session.get(SchemeYear, order.scheme_year_id)
        if resource.get("appid") != appid or resource.get("mchid") != mchid:
            kind = "merchant_mismatch"
        elif amount.get("total") != order.amount_fen or amount.get("currency", "CNY") != "CNY":
            kind = "amount_mismatch"
        elif order.status is OrderStatus.paid:
            kind = "already_paid"
        elif order.status is OrderStatus.expired:
            kind = "order_expired"
        elif paid_at.date() > deadline(year, order):
            kind = "late_payment"
    if kind is not None:
        exc = record_exception(session, kind, out_trade_no=out_trade_no, transaction_id=tx,
                               detail=detail, order=order, actor=actor)
        return Outcome("exception", exception=exc)
    payment = _activate(session, order, channel="wechatpay", transaction_id=tx,
                        amount_fen=order.amount_fen, actor=actor, paid_at=paid_at,
                        payer_openid=payer)
    return Outcome("applied", payment=payment)


def due(session: Session, household: Household, today: date) -> tuple[SchemeYear, Quote]:
    """What the household owes now (PaymentError when nothing can be paid). Changes nothing."""
    year = payable_year(session, household, today)
    return year, quote(session, household, year, today)


def record_offline(session: Session, household: Household, amount_fen: int, channel: str,
                   actor: str, now: datetime) -> Payment:
    """An offline payment (cash to the village administrator, or a bank transfer): the amount
    must be exactly what is due — partial or excess payments are refused with the due amount."""
    if channel not in OFFLINE_CHANNELS:
        raise PaymentError("bad_channel", channel=channel)
    _, q = due(session, household, now.date())
    if amount_fen != q.amount_fen:
        raise PaymentError("wrong_amount", due_fen=q.amount_fen, got_fen=amount_fen)
    result = order_for(session, household, actor, now)
    order = result.order
    if result.settled or order.status is OrderStatus.paid:
        return session.scalar(select(Payment).where(Payment.order_id == order.id))
    return _activate(session, order, channel=channel,
                     transaction_id=f"{channel.upper()}-{order.out_trade_no}",
                     amount_fen=amount_fen, actor=actor, paid_at=now, payer_openid=None)


def record_offline_many(session: Session, payments: list[tuple[int, int]], channel: str,
                        actor: str, now: datetime) -> int:
    """Offline payments of many households at once (a village's cash list: `payments` as
    (household id, amount in fen)), each with exactly the effect of `record_offline` — the
    amount checked against what is due, the order, the payment, the enrolments paid, the
    ledger entry, the audit rows and the household's confirmation — all in the caller's one
    transaction, written in bulk: the households' enrolments read in one query, the rows
    inserted with COPY on PostgreSQL (core/bulk.py), the enrolments moved by one UPDATE.
    Any refusal (PaymentError, its detail naming the household) raises before anything is
    written: the caller's transaction is to be undone. A household with an open order already,
    or whose members' shares are all paid by a source, takes `record_offline`'s own path.
    Returns the number of payments recorded."""
    from sqlalchemy import update
    from sqlalchemy.orm import selectinload

    from core.bulk import insert_many
    from core.households import reserve_ids
    from core.models import AuditLog, JournalEntry, JournalLine, OutboxMessage
    from core.notify import notice_row
    from core.stats import refresh_tally

    if channel not in OFFLINE_CHANNELS:
        raise PaymentError("bad_channel", channel=channel)
    if not payments:
        return 0
    today, paid_utc = now.date(), now.astimezone(timezone.utc)
    amounts = dict(payments)
    households = {h.id: h for h in session.scalars(
        select(Household).where(Household.id.in_(list(amounts))))}
    if len(households) != len(amounts):
        raise PaymentError("no_household")
    years: dict[int, SchemeYear | None] = {}
    for pool_id in {h.pool_id for h in households.values()}:
        years[pool_id] = scheme_years.enrolling(session, pool_id, today)
    enrolments: dict[int, list[Enrolment]] = {hid: [] for hid in households}
    year_ids = [y.id for y in years.values() if y is not None]
    for e in session.scalars(
            select(Enrolment).join(Member, Member.id == Enrolment.member_id)
            .where(Member.household_id.in_(list(households)),
                   Enrolment.scheme_year_id.in_(year_ids))
            .options(selectinload(Enrolment.member)).order_by(Member.id)):
        if e.scheme_year_id == years[households[e.member.household_id].pool_id].id:
            enrolments[e.member.household_id].append(e)
    with_order = set(session.scalars(select(PaymentOrder.household_id).where(
        PaymentOrder.household_id.in_(list(households)),
        PaymentOrder.status == OrderStatus.open)))
    bulk, one_by_one = [], []
    for hid, household in households.items():
        year = years[household.pool_id]
        rows = enrolments[hid]
        if (year is None or hid in with_order
                or not any(e.status is EnrolmentStatus.pending for e in rows)):
            one_by_one.append(hid)  # closed window, newborns, an order already: the usual path
            continue
        try:
            q = quote(session, household, year, today, rows)
        except PaymentError as exc:
            exc.details.setdefault("household", household.number)
            raise
        if amounts[hid] != q.amount_fen:
            raise PaymentError("wrong_amount", due_fen=q.amount_fen, got_fen=amounts[hid],
                               household=household.number)
        if q.amount_fen == 0:
            one_by_one.append(hid)
            continue
        bulk.append((household, year, q))
    for hid in one_by_one:
        try:
            record_offline(session, households[hid], amounts[hid], channel, actor, now)
        except PaymentError as exc:
            exc.details.setdefault("household", households[hid].number)
            raise
    if not bulk:
        return len(one_by_one)
    openids: dict[int, list[str]] = {}
    for hid, openid in session.execute(
            select(HouseholdLink.household_id, HouseholdLink.openid)
            .where(HouseholdLink.household_id.in_([h.id for h, _y, _q in bulk]))
            .order_by(HouseholdLink.id)):
        openids.setdefault(hid, []).append(openid)
    order_ids = reserve_ids(session, PaymentOrder.__table__, len(bulk))
    entry_ids = reserve_ids(session, JournalEntry.__table__, len(bulk))
    orders, paid, audits, entries, lines, notices, enrolment_ids = [], [], [], [], [], [], []
    by_entry: dict[int, dict[str, int]] = {}
    for order_id, entry_id, (household, year, q) in zip(order_ids, entry_ids, bulk):
        trade_no = new_trade_no(today)
        transaction_id = f"{channel.upper()}-{trade_no}"
        breakdown = q.breakdown()
        orders.append({"id": order_id, "out_trade_no": trade_no, "household_id": household.id,
                       "scheme_year_id": year.id, "amount_fen": q.amount_fen,
                       "breakdown": breakdown, "members_digest": q.digest,
                       "status": OrderStatus.paid, "created_at": paid_utc,
                       "paid_at": paid_utc})
        paid.append({"order_id": order_id, "household_id": household.id,
                     "scheme_year_id": year.id, "amount_fen": q.amount_fen,
                     "transaction_id": transaction_id, "created_at": paid_utc})
        audits += [
            {"action": "payment.order_created", "entity": "payment_order",
             "entity_id": trade_no, "before": None,
             "after": {"household": household.number, "amount_fen": q.amount_fen,
                       "totals": q.totals, "members": len(q.members)}},
            {"action": "payment.received", "entity": "payment", "entity_id": transaction_id,
             "before": None,
             "after": {"household": household.number, "order": trade_no, "channel": channel,
                       "amount_fen": q.amount_fen}},
            {"action": "payment.order_paid", "entity": "payment_order", "entity_id": trade_no,
             "before": {"status": "open"},
             "after": {"status": "paid", "transaction_id": transaction_id}}]
        members = {m["member_id"] for m in q.members}
        for e in enrolments[household.id]:
            if e.member_id in members and e.status is not EnrolmentStatus.paid:
                enrolment_ids.append(e.id)
                audits.append({"action": "enrolment.paid", "entity": "enrolment",
                               "entity_id": str(e.id), "before": {"status": e.status.value},
                               "after": {"status": "paid", "order": trade_no}})
        entry_lines = {a: int(v) for a, v in ledger.contribution_lines(q.totals).items() if v}
        if sum(entry_lines.values()) != 0:
            raise ledger.LedgerError(f"payment {transaction_id} does not balance")
        entries.append({"id": entry_id, "pool_id": household.pool_id, "booked_on": today,
                        "kind": "contribution", "ref": f"payment:{transaction_id}",
                        "memo": f"{household.number} {trade_no} {channel}"[:255]})
        lines += [{"entry_id": entry_id, "account": a, "amount_fen": v}
                  for a, v in sorted(entry_lines.items())]
        by_entry[entry_id] = entry_lines
        text = render("payment_confirmed", household=household.number, members=q.members,
                      amount_fen=q.amount_fen, whole_fen=breakdown["whole_fen"],
                      channel=channel, year=year)
        row = notice_row(household.id, "payment_received", text, {
            "household": household.number, "amount": q.amount_fen, "date": now,
            "result": words("result", "payment_received"),
            "next_step": words("next_step", "payment_received")},
            openids.get(household.id, []), paid_utc)
        notices.append({"household_id": household.id, "payload": row["payload"]})
    insert_many(session, PaymentOrder, orders)
    insert_many(session, Payment, paid, {"channel": channel, "recorded_by": actor})
    insert_many(session, JournalEntry, entries, {"created_at": paid_utc})
    insert_many(session, JournalLine, lines)
    ledger.add_to_totals(session, [(e["pool_id"], e["booked_on"], e["kind"], by_entry[e["id"]])
                                   for e in entries])
    for start in range(0, len(enrolment_ids), 10_000):
        session.execute(update(Enrolment).where(
            Enrolment.id.in_(enrolment_ids[start:start + 10_000]),
            Enrolment.status != EnrolmentStatus.paid).values(
            status=EnrolmentStatus.paid, paid_at=paid_utc)
            .execution_options(synchronize_session=False))
    # the households' participation counts (household_tally) in the same transaction
    refresh_tally(session, [h.id for h, _y, _q in bulk])
    insert_many(session, AuditLog, audits, {"at": paid_utc, "actor": actor})
    insert_many(session, OutboxMessage, notices, {
        "kind": row["kind"], "status": row["status"], "attempts": 0,
        "next_attempt_at": paid_utc, "created_at": paid_utc, "event": "payment_received"})
    for rows in enrolments.values():
        for e in rows:
            session.expire(e)
    return len(one_by_one) + len(bulk)


def _activate(session: Session, order: PaymentOrder, *, channel: str, transaction_id: str,
              amount_fen: int, actor: str, paid_at: datetime, payer_openid: str | None) -> Payment:
    household = order.household
    year = session.get(SchemeYear, order.scheme_year_id)
    paid_utc = paid_at.astimezone(timezone.utc)
    payment = Payment(order_id=order.id, household_id=household.id, scheme_year_id=year.id,
                      amount_fen=amount_fen, channel=channel, transaction_id=transaction_id,
                      recorded_by=actor, created_at=paid_utc)
    session.add(payment)
    session.flush()  # the unique transaction id stops a second payment here
    order.status, order.paid_at = OrderStatus.paid, paid_utc
    audit(session, actor, "payment.received", "payment", transaction_id, None,
          {"household": household.number, "order": order.out_trade_no, "channel": channel,
           "amount_fen": amount_fen})
    audit(session, actor, "payment.order_paid", "payment_order", order.out_trade_no,
          {"status": "open"}, {"status": "paid", "transaction_id": transaction_id})
    member_ids = [m["member_id"] for m in order.breakdown["members"]]
    enrolments = session.scalars(select(Enrolment).where(Enrolment.member_id.in_(member_ids),
                                                         Enrolment.scheme_year_id == year.id))
    for e in enrolments:
        if e.status is EnrolmentStatus.paid:
            continue
        before = e.status.value
        e.status, e.paid_at = EnrolmentStatus.paid, paid_utc
        audit(session, actor, "enrolment.paid", "enrolment", e.id, {"status": before},
              {"status": "paid", "order": order.out_trade_no})
    ledger.post(session, household.pool_id, "contribution", f"payment:{transaction_id}",
                ledger.contribution_lines(order.breakdown["totals"]), booked_on=paid_at.date(),
                memo=f"{household.number} {order.out_trade_no} {channel}")
    _tag_payer(session, household, payer_openid, actor)
    members = order.breakdown["members"]
    notify_household(session, household.id, "payment_confirmed", household=household.number,
                     members=members, amount_fen=amount_fen, whole_fen=order.breakdown["whole_fen"],
                     channel=channel, year=year, event="payment_received", variables={
                         "household": household.number, "amount": amount_fen,
                         "date": paid_at, "result": words("result", "payment_received"),
                         "next_step": words("next_step", "payment_received")})
    session.flush()
    return payment


def _tag_payer(session: Session, household: Household, payer_openid: str | None,
               actor: str) -> None:
    """The payer's village tag (WechatUser.village_id): set when the payer has none, or is
    the household's head; a relative who pays from another village keeps their own."""
    if not payer_openid:
        return
    user = session.scalar(select(WechatUser).where(WechatUser.openid == payer_openid))
    if user is None or user.village_id == household.village_id:
        return
    is_head = session.scalar(select(HouseholdLink.id).where(
        HouseholdLink.household_id == household.id, HouseholdLink.openid == payer_openid,
        HouseholdLink.role == LinkRole.head)) is not None
    if user.village_id is not None and not is_head:
        return
    before = user.village_id
    user.village_id = household.village_id
    audit(session, actor, "user.village_tag", "wechat_user", payer_openid,
          {"village_id": before}, {"village_id": household.village_id})


def admin_openids(session: Session, household: Household | None) -> list[str]:
    """Administrators who look after a household's payments: its village's, its pool's and
    the super administrators (only these when the household is not known)."""
    q = select(AdminGrant.openid).where(AdminGrant.role == AdminRole.super)
    if household is not None:
        q = select(AdminGrant.openid).where(
            (AdminGrant.role == AdminRole.super)
            | ((AdminGrant.role == AdminRole.pool_admin) & (AdminGrant.pool_id == household.pool_id))
            | ((AdminGrant.role == AdminRole.village_admin)
               & (AdminGrant.village_id == household.village_id)))
    return sorted(set(session.scalars(q)))


def record_exception(session: Session, kind: str, *, out_trade_no: str | None,
                     transaction_id: str | None, detail: dict, order: PaymentOrder | None,
                     actor: str) -> PaymentException:
    """A payment that could not be applied: kept for an administrator, who is told, as is the
    household (its money arrived but did not activate anything)."""
    exc = PaymentException(kind=kind, out_trade_no=out_trade_no, transaction_id=transaction_id,
                           detail=detail)
    session.add(exc)
    session.flush()
    audit(session, actor, "payment.exception", "payment_exception", exc.id, None,
          {"kind": kind, "out_trade_no": out_trade_no, "transaction_id": transaction_id})
    household = order.household if order is not None else None
    text = render("payment_exception_admin", exc=exc, kind=kind, detail=detail,
                  household=household.number if household else None)
    for openid in admin_openids(session, household):
        outbox.send_text(session, openid, text)
    if household is not None:
        notify_household(session, household.id, "payment_exception_household", kind=kind,
                         household=household.number, detail=detail)
    log.warning("payment exception kind=%s out_trade_no=%s transaction=%s", kind, out_trade_no,
                transaction_id)
    return exc


def list_exceptions(session: Session, include_resolved: bool = False) -> list[PaymentException]:
    q = select(PaymentException).order_by(PaymentException.id)
    if not include_resolved:
        q = q.where(PaymentException.resolved_at.is_(None))
    return list(session.scalars(q))


def resolve_exception(session: Session, exception_id: int, actor: str, note: str) -> PaymentException:
    exc = session.get(PaymentException, exception_id)
    if exc is None:
        raise PaymentError("no_exception", id=exception_id)
    if exc.resolved_at is None:
        exc.resolved_at = utcnow()
        exc.detail = {**exc.detail, "resolution": note}
        audit(session, actor, "payment.exception_resolved", "payment_exception", exc.id,
              None, {"note": note})
    return exc


# ---------------------------------------------------------------------------------------------
# The deadline's jobs: expiry and reminders.

def expire_orders(session: Session, today: date, tz: ZoneInfo, actor: str = "system") -> int:
    """Open orders of scheme years whose payment deadline is past become `expired`; pending
    enrolments made before the deadline become `lapsed` (a newborn added later keeps its own)."""
    n = 0
    rows = session.scalars(select(PaymentOrder).join(SchemeYear, SchemeYear.id ==
                                                     PaymentOrder.scheme_year_id)
                           .where(PaymentOrder.status == OrderStatus.open,
                                  SchemeYear.enrolment_closes < today))
    for order in rows:
        if (order.breakdown or {}).get("newborn") and session.get(
                SchemeYear, order.scheme_year_id).end >= today:
            continue  # a newborn's order stays payable while its year runs
        order.status = OrderStatus.expired
        audit(session, actor, "payment.order_expired", "payment_order", order.out_trade_no,
              {"status": "open"}, {"status": "expired", "why": "deadline"})
        n += 1
    years = scheme_years.closed_before(session, today)
    for year in years:
        cutoff = deadline_end(year, tz).astimezone(timezone.utc)
        for e in session.scalars(select(Enrolment).where(
                Enrolment.scheme_year_id == year.id, Enrolment.status == EnrolmentStatus.pending,
                Enrolment.created_at < cutoff)):
            e.status = EnrolmentStatus.lapsed
            audit(session, actor, "enrolment.lapsed", "enrolment", e.id, {"status": "pending"},
                  {"status": "lapsed", "why": "not paid by the deadline"})
    session.flush()
    return n


def send_reminders(session: Session, today: date, by_sms: bool = False) -> int:
    """Reminders 7 days and 1 day before the deadline to households with members still
    unpaid, one per household and reminder (whichever is due: a server that was down on the
    seventh day still sends it later, but never the 7-day one in the last day). `by_sms`: SMS
    is configured, so a household with no WeChat user but a phone is reminded too."""
    sent = 0
    years = scheme_years.enrolling_all(session, today)
    for year in years:
        days_left = (year.enrolment_closes - today).days
        which = next((d for d in sorted(REMINDER_DAYS) if days_left <= d), None)
        if which is None:
            continue
        household_ids = sorted(set(session.scalars(
            select(Member.household_id).join(Enrolment, Enrolment.member_id == Member.id)
            .where(Enrolment.scheme_year_id == year.id,
                   Enrolment.status == EnrolmentStatus.pending))))
        done = set(session.scalars(select(PaymentReminder.household_id).where(
            PaymentReminder.scheme_year_id == year.id, PaymentReminder.days_before == which)))
        for hid in household_ids:
            if hid in done:
                continue
            household = session.get(Household, hid)
            if not linked_openids(session, hid) and not (by_sms and household.phone_enc):
                continue  # nobody to remind
            try:
                q = quote(session, household, year)
            except PaymentError:
                continue
            try:
                with session.begin_nested():
                    session.add(PaymentReminder(household_id=hid, scheme_year_id=year.id,
                                                days_before=which))
            except IntegrityError:
                continue
            notify_household(session, hid, "payment_reminder", household=household.number,
                             amount_fen=q.amount_fen, deadline=year.enrolment_closes,
                             days_left=days_left, event="payment_reminder", variables={
                                 "household": household.number, "amount": q.amount_fen,
                                 "date": year.enrolment_closes,
                                 "result": words("result", "payment_reminder"),
                                 "next_step": words("next_step", "payment_reminder")})
            sent += 1
    return sent

"""`/收款 <household> <amount> [现金|转账]`: an administrator records an offline payment for a
household of a village in their scope. The amount must be exactly what is due; the command
answers with a summary and records only after `确认` (money moves)."""
from __future__ import annotations

from sqlalchemy import select

from core import outbox, payments
from core.admins import Scope, scope_of
from core.audit import audit
from core.messages import render
from core.models import AdminRole, Household, OrderStatus, PaymentOrder
from core.money import parse_yuan
from handlers import dialogue
from handlers.admin import Refused, command, usage
from handlers.dialogue import Dialogue, Step, register, say
from handlers.types import Ctx, Incoming, Reply

CHANNEL_WORDS = {"现金": "cash", "转账": "transfer", "cash": "cash", "transfer": "transfer"}
CONFIRM_WORDS = ("确认", "确定", "是")
ROLES = {AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super}


def _refuse(code: str, **detail) -> Refused:
    return Refused("payment_record_refused", code=code, usage=usage("收款"), **detail)


def _check(ctx: Ctx, scope: Scope, number: str,
           amount_fen: int) -> tuple[Household, payments.Quote]:
    """The household and what it owes, or Refused: nothing is changed here."""
    household = ctx.session.scalar(select(Household).where(Household.number == number.upper()))
    if household is None:
        raise _refuse("no_household", number=number)
    if not scope.covers_village(household.village):
        raise _refuse("scope", number=household.number)
    try:
        _, q = payments.due(ctx.session, household, ctx.today)
    except payments.PaymentError as e:
        raise _refuse(e.code, household=household.number, **e.details)
    if amount_fen != q.amount_fen:
        raise _refuse("wrong_amount", household=household.number, due_fen=q.amount_fen,
                      got_fen=amount_fen)
    return household, q


@command("收款", roles=ROLES, min_args=2)
def record_payment(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    if len(args) > 3:
        raise _refuse("usage")
    _, _, data = _checked(ctx, scope, args[0], args[1], args[2] if len(args) > 2 else None)
    return dialogue.start(ctx, RECORD, Incoming(ctx.openid, "text", text=" ".join(args)), data)


def _checked(ctx: Ctx, scope: Scope, number: str, amount_text: str,
             channel_word: str | None):
    """`/收款`'s arguments checked (the channel word, the amount, the household and its exact
    amount due): (household, quote, the dialogue's data); refused as the chat refuses."""
    channel = CHANNEL_WORDS.get(channel_word or "现金")
    if channel is None:
        raise _refuse("bad_channel")
    try:
        amount_fen = parse_yuan(amount_text)
    except ValueError:
        raise _refuse("bad_amount", text=amount_text)
    household, q = _check(ctx, scope, number, amount_fen)
    return household, q, {"household": household.number, "amount_fen": amount_fen,
                          "channel": channel}


def _summary_text(household: Household, q, data: dict) -> str:
    return render("payment_record_summary", household=household.number,
                  village=household.village.full_name, members=q.members,
                  due_fen=q.amount_fen, amount_fen=data["amount_fen"], channel=data["channel"])


def _summary(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    household = ctx.session.scalar(select(Household).where(Household.number == data["household"]))
    _, q = payments.due(ctx.session, household, ctx.today)
    return say(_summary_text(household, q, data), state="confirm", data=data)


def _confirm(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if msg.text not in CONFIRM_WORDS:
        return say(render("payment_record_hint"), state="confirm", data=data)
    return say(confirmed(ctx, data))


def summary(ctx: Ctx, number: str, amount_text: str, channel_word: str) -> tuple[dict, str]:
    """The checks of `/收款` before its 确认, for the console's first step: (data, summary
    text). Refused (audited by the caller through `refusal`) when the chat would refuse."""
    scope = scope_of(ctx.session, ctx.openid)
    if not scope.roles & ROLES:
        raise _refuse("scope", number=number)
    household, q, data = _checked(ctx, scope, number, amount_text, channel_word)
    return data, _summary_text(household, q, data)


def confirmed(ctx: Ctx, data: dict) -> str:
    """`/收款` after 确认 (the chat's dialogue and the console): checked again, recorded with
    the exact-amount rule of core.payments, the order's code closed after the commit. The
    answer's text; a refusal is audited and worded."""
    scope = scope_of(ctx.session, ctx.openid)
    try:
        if not scope.roles & ROLES:
            raise _refuse("scope", number=data["household"])
        household, q = _check(ctx, scope, data["household"], data["amount_fen"])
        payments.record_offline(ctx.session, household, data["amount_fen"], data["channel"],
                                ctx.openid, ctx.now)
    except payments.PaymentError as e:
        return refusal(ctx, data, _refuse(e.code, household=data["household"], **e.details))
    except Refused as r:
        return refusal(ctx, data, r)
    _close_at_gateway(ctx, household)
    return render("payment_recorded", household=household.number,
                  channel=data["channel"], amount_fen=data["amount_fen"], n=len(q.members))


def refusal(ctx: Ctx, data: dict, r: Refused) -> str:
    audit(ctx.session, ctx.openid, "admin.refused", "command", "收款", None,
          {"args": [data.get("household"), data.get("amount_fen"), data.get("channel")],
           "why": r.context.get("code")})
    return render(r.template, **r.context)


def _close_at_gateway(ctx: Ctx, household: Household) -> None:
    """The household's WeChat Pay code (if one was made) can no longer be paid: closed at
    WeChat Pay by the outbox after the commit (`pay.close`, bot/outbox/pay_qr.py), never in
    this transaction; if it fails, a later WeChat payment becomes an exception anyway."""
    order = ctx.session.scalar(select(PaymentOrder).where(
        PaymentOrder.household_id == household.id, PaymentOrder.status == OrderStatus.paid,
        PaymentOrder.code_url.is_not(None)).order_by(PaymentOrder.id.desc()).limit(1))
    if order is None:
        return
    outbox.enqueue(ctx.session, "pay.close", {"out_trade_no": order.out_trade_no})


RECORD = register(Dialogue(name="payment_record", entry=_summary, states={"confirm": _confirm}))

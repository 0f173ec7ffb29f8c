"""The payment dialogue (`2 缴费`): the household's order for the scheme year whose payment
window is open, broken down per member and source, with a WeChat Pay Native QR code (the
gateway's code_url queued as a `pay.qr` outbox row: bot/outbox/pay_qr.py draws and pushes the
image) and a link to a page showing the same code. The confirmation follows the payment
callback (core.payments)."""
from __future__ import annotations

import logging

from core import outbox, payments, scheme_years
from core.households import household_for_user
from core.messages import render
from core.models import PaymentOrder, SchemeYear
from handlers.dialogue import Dialogue, Step, register, say
from handlers.types import Ctx, Incoming, Reply

log = logging.getLogger("huzhu.payment")


def pay_link(cfg, order: PaymentOrder) -> str:
    return f"{cfg.PUBLIC_URL.rstrip('/')}/pay/qr/{order.out_trade_no}"


def _refused(code: str, **detail) -> Step:
    return say(render("payment_refused", code=code, **detail))


def _entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    household = household_for_user(ctx.session, ctx.openid)
    if household is None:
        return _refused("no_household")
    try:
        result = payments.order_for(ctx.session, household, ctx.openid, ctx.now)
    except payments.PaymentError as e:
        if e.code == "window_closed":
            year = scheme_years.running(ctx.session, household.pool_id, ctx.today)
            if year is not None and payments.household_paid(ctx.session, household, year):
                return _refused("already_paid")
        return _refused(e.code, **e.details)
    order = result.order
    gw = None
    for old in result.superseded:
        gw = gw or _gateway(ctx)
        _close_quietly(gw, old.out_trade_no)
    if result.settled:
        return say(render("payment_free", household=household.number))
    year = ctx.session.get(SchemeYear, order.scheme_year_id)
    try:
        gw = gw or _gateway(ctx)
        if gw is None:
            raise payments.GatewayError("no gateway")
        code_url = gw.native(order.out_trade_no,
                             render("payment_description", household=household.number, year=year),
                             order.amount_fen, payments.deadline_end(year, ctx.cfg.tz))
    except payments.GatewayError as exc:
        log.warning("native order failed out_trade_no=%s: %s", order.out_trade_no, exc)
        if not order.code_url:
            return say(render("payment_gateway_down", household=household.number,
                              amount_fen=order.amount_fen))
        code_url = order.code_url  # the code made before (valid two hours at WeChat Pay)
    order.code_url = code_url
    b = order.breakdown
    text = render("payment_order", household=household.number, members=b["members"],
                  excluded=b.get("excluded", []),
                  totals=b["totals"], whole_fen=b["whole_fen"], amount_fen=order.amount_fen,
                  deadline=payments.deadline(year), link=pay_link(ctx.cfg, order))
    # the code as an image, after the text: drawn and pushed by the outbox
    outbox.enqueue(ctx.session, "pay.qr", {"openid": ctx.openid, "code_url": code_url,
                                           "out_trade_no": order.out_trade_no})
    return Step([Reply(text=text)])


def _gateway(ctx: Ctx):
    try:
        return ctx.gateway
    except payments.GatewayError as exc:
        log.warning("no payment gateway: %s", exc)
        return None


def _close_quietly(gw, out_trade_no: str) -> None:
    """A superseded order is closed at WeChat Pay so its code can no longer be paid; if that
    fails, a payment for it still only becomes an exception for an administrator."""
    if gw is None:
        return
    try:
        gw.close(out_trade_no)
    except Exception as exc:  # best effort: network, already closed, …
        log.info("closing superseded order %s failed: %s", out_trade_no, exc)


register(Dialogue(name="payment", entry=_entry, states={}, calls_out=True))

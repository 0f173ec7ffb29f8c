"""The payment dialogue (`2 缴费`): the household's order for the scheme year whose payment
window is open, broken down per member and source, and a link to a page showing its WeChat Pay
Native QR code. No network call here: the order is committed with a `pay.qr` outbox row, and
the outbox (bot/outbox/pay_qr.py) makes the Native order at WeChat Pay, stores its code_url in
a second short transaction and pushes the code as an image; a superseded order is closed at
WeChat Pay the same way (`pay.close`). The confirmation follows the payment callback
(core.payments)."""
from __future__ import annotations

from core import outbox, payments, scheme_years
from core.households import household_for_user
from core.messages import render
from core.models import PaymentOrder, SchemeYear
from handlers.dialogue import Dialogue, Step, register, say
from handlers.types import Ctx, Incoming, Reply


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
    # the network is called by the outbox, after this transaction's commit: a superseded
    # order is closed at WeChat Pay (`pay.close`), the Native order made and its code pushed
    # (`pay.qr`, bot/outbox/pay_qr.py)
    for old in result.superseded:
        outbox.enqueue(ctx.session, "pay.close", {"out_trade_no": old.out_trade_no})
    if result.settled:
        return say(render("payment_free", household=household.number))
    year = ctx.session.get(SchemeYear, order.scheme_year_id)
    b = order.breakdown
    text = render("payment_order", household=household.number, members=b["members"],
                  excluded=b.get("excluded", []),
                  totals=b["totals"], whole_fen=b["whole_fen"], amount_fen=order.amount_fen,
                  deadline=payments.deadline(year, order), link=pay_link(ctx.cfg, order))
    outbox.enqueue(ctx.session, "pay.qr", {"openid": ctx.openid,
                                           "out_trade_no": order.out_trade_no})
    return Step([Reply(text=text)])


register(Dialogue(name="payment", entry=_entry, states={}))

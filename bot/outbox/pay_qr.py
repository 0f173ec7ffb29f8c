"""Outbox deliverers of the payment dialogue (handlers/payment.py), which calls no network
itself:

- `pay.qr` {openid, out_trade_no}: with no transaction open, makes the Native order at WeChat
  Pay (the gateway's `native`; asking again for the same order gives its code again), stores the
  code_url in a second short transaction, draws it with `qrcode` as a PNG under
  DATA_DIR/pay/qr (once per code_url), uploads it as media and sends it to the payer as an
  image. The page behind the text's link (bot/web/pay_notify.py `/pay/qr/…`) shows the same
  PNG once the code_url is stored. When WeChat Pay fails, the code made before is used; with
  none, the outbox retries with backoff and on the last attempt the household is told what to
  do (`payment_gateway_down`). An order paid or superseded meanwhile needs no code.
- `pay.close` {out_trade_no}: a superseded order closed at WeChat Pay so its code can no longer
  be paid (retried; if it never succeeds, a payment for it only becomes an exception for an
  administrator).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import qrcode
from sqlalchemy import select

from bot.outbox.deliver import (Context, PermanentError, RetryableError, deliverer,
                                send_message)
from core import payments
from core.messages import render
from core.models import Household, OrderStatus, OutboxMessage, PaymentOrder, SchemeYear

log = logging.getLogger("huzhu.pay.qr")


def qr_png(data_dir: Path, code_url: str, name: str) -> Path:
    """The code_url as a PNG under DATA_DIR/pay/qr (made once per code_url)."""
    digest = hashlib.sha256(code_url.encode()).hexdigest()[:10]
    path = data_dir / "pay" / "qr" / f"{name}-{digest}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        img = qrcode.make(code_url, box_size=8, border=4)
        tmp = path.with_suffix(".tmp")
        img.save(tmp, format="PNG")
        tmp.replace(path)
    return path


def _gateway(ctx: Context):
    if ctx.gateway is None:
        raise payments.GatewayError("no payment gateway")
    return ctx.gateway()


def _order(s, out_trade_no: str) -> PaymentOrder | None:
    return s.scalar(select(PaymentOrder).where(PaymentOrder.out_trade_no == out_trade_no))


@deliverer("pay.qr")
def send_code(ctx: Context, row: OutboxMessage) -> str | None:
    payload = row.payload or {}
    try:
        openid, out_trade_no = payload["openid"], payload["out_trade_no"]
    except (KeyError, TypeError) as exc:
        raise PermanentError(f"bad pay.qr payload: {exc!r}") from exc
    # 1. what to order, read in a short transaction
    with ctx.db.session() as s:
        order = _order(s, out_trade_no)
        if order is None:
            raise PermanentError(f"pay.qr: no order {out_trade_no}")
        if order.status is not OrderStatus.open:
            return None  # paid or superseded meanwhile: no code to send
        household = s.get(Household, order.household_id).number
        year = s.get(SchemeYear, order.scheme_year_id)
        description = render("payment_description", household=household, year=year)
        amount_fen, known = order.amount_fen, order.code_url
        time_expire = payments.deadline_end(year, ctx.cfg.tz, order)
    # 2. the Native order at WeChat Pay, with no transaction open
    try:
        code_url = _gateway(ctx).native(out_trade_no, description, amount_fen, time_expire)
    except payments.GatewayError as exc:
        log.warning("native order failed out_trade_no=%s: %s", out_trade_no, exc)
        if not known:
            if row.attempts + 1 < ctx.cfg.OUTBOX_MAX_ATTEMPTS:
                raise RetryableError(f"native order failed: {exc}") from exc
            # the last attempt: the household is told what to do instead of waiting
            return send_message(ctx, openid, {"type": "text", "content": render(
                "payment_gateway_down", household=household, amount_fen=amount_fen)})
        code_url = known  # the code made before (valid two hours at WeChat Pay)
    # 3. the code stored in a second short transaction
    if code_url != known:
        with ctx.db.session() as s:
            order = _order(s, out_trade_no)
            if order.status is not OrderStatus.open:
                return None
            order.code_url = code_url
    try:
        png = qr_png(ctx.cfg.data_dir, code_url, out_trade_no)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"bad code_url: {exc!r}") from exc
    return send_message(ctx, openid, {"type": "image", "path": str(png)})


@deliverer("pay.close")
def close_order(ctx: Context, row: OutboxMessage) -> None:
    try:
        out_trade_no = (row.payload or {})["out_trade_no"]
    except (KeyError, TypeError) as exc:
        raise PermanentError(f"bad pay.close payload: {exc!r}") from exc
    try:
        gw = _gateway(ctx)
    except payments.GatewayError as exc:  # no gateway configured: nothing was ordered there
        log.info("closing %s: %s", out_trade_no, exc)
        return None
    gw.close(out_trade_no)  # a failure is retried with backoff
    return None

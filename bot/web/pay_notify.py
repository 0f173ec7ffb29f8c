"""`POST /pay/notify`: WeChat Pay's payment callback, and `GET /pay/qr/<out_trade_no>`: the
payment code as a page (the text link sent with the QR image).

The callback is answered as API v3 expects: 204 with no body when it is taken (applied, already
applied, or recorded as an exception for an administrator), 4xx with `{code, message}` when it
is refused — a forged or stale signature, an undecryptable or malformed body — and 5xx when
it could not be handled now (WeChat Pay then sends it again). A refused callback changes
nothing.
"""
from __future__ import annotations

import base64
import logging
import re

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from core import payments
from core.messages import render
from core.models import Household, PaymentOrder, SchemeYear

log = logging.getLogger("huzhu.pay.notify")
bp = Blueprint("pay", __name__)

ATTEMPTS = 4  # transactions tried when concurrent callbacks collide
_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-]{6,32}$")


def _fail(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"code": "FAIL", "message": message}), status


@bp.post("/pay/notify")
def notify():
    x = current_app.extensions["huzhu"]
    limit = x.cfg.MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        return _fail(413, "body too large")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _fail(413, "body too large")
    try:
        gw = x.gateway()
    except payments.GatewayError as exc:
        log.error("payment callback: no gateway: %s", exc)
        return _fail(500, "payment gateway not configured")
    data, why = gw.verify_callback(request.headers, body)
    if data is None:
        status = 500 if why.startswith("cannot decrypt") else 401
        log.warning("payment callback refused status=%s why=%s ip=%s", status, why,
                    request.remote_addr)
        return _fail(status, "签名验证失败" if status == 401 else "解密失败")
    if data.get("event_type") != "TRANSACTION.SUCCESS":
        log.info("payment callback event=%s ignored", data.get("event_type"))
        return Response(status=204)
    resource = data["resource"]
    for attempt in range(ATTEMPTS):
        try:
            with x.db.session() as s:
                outcome = payments.apply_wechat_payment(s, resource, appid=gw.appid,
                                                        mchid=gw.mchid, tz=x.cfg.tz)
            break
        except ValueError as exc:
            log.warning("payment callback malformed resource: %s", exc)
            return _fail(400, "报文不完整")
        except (IntegrityError, DBAPIError) as exc:
            # the same transaction applied by a concurrent callback (unique keys), or a
            # serialization failure: try again, and the next round sees what was committed
            log.info("payment callback attempt %s collided: %s", attempt + 1, type(exc).__name__)
    else:
        log.error("payment callback for %s failed %s times", resource.get("out_trade_no"), ATTEMPTS)
        return _fail(500, "稍后重试")
    log.info("payment callback out_trade_no=%s outcome=%s", resource.get("out_trade_no"),
             outcome.status)
    x.waker.wake()
    return Response(status=204)


@bp.get("/pay/qr/<out_trade_no>")
def qr_page(out_trade_no: str):
    """The order's payment code, for the link sent beside the image (long-press to pay)."""
    x = current_app.extensions["huzhu"]
    if not _TRADE_NO.match(out_trade_no):
        return Response("not found", status=404, mimetype="text/plain")
    from bot.outbox.pay_qr import qr_png

    with x.db.session() as s:
        order = s.scalar(select(PaymentOrder).where(PaymentOrder.out_trade_no == out_trade_no))
        if order is None:
            return Response("not found", status=404, mimetype="text/plain")
        household = s.get(Household, order.household_id)
        year = s.get(SchemeYear, order.scheme_year_id)
        png_b64 = ""
        status = order.status.value
        if status == "open" and order.code_url:
            png = qr_png(x.cfg.data_dir, order.code_url, out_trade_no)
            png_b64 = base64.b64encode(png.read_bytes()).decode()
        elif status == "open":
            status = "coming"  # the outbox has not made the Native order yet
        html = render("payment_page", status=status, household=household.number,
                      amount_fen=order.amount_fen, deadline=payments.deadline(year),
                      png_b64=png_b64)
    return Response(html, mimetype="text/html")

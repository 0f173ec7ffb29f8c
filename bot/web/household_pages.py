"""The household's pages: `GET /h/claims/<token>`, the claims page a notice's template links to.

The link (core/household_links.py) is signed for one household. Opening it goes through
WeChat's web authorization (网页授权, `snsapi_base`, silent inside WeChat), as the review
pages do; the page is shown only to a WeChat user linked to the household (head or proxy), and
says no more than the chat does: what 查询进度 answers (members' names masked) and the latest
notices in full. With subscription notices configured (`via: subscribe` in NOTIFY_TEMPLATES)
it carries WeChat's subscribe button (`wx-open-subscribe`, signed with the JS-SDK ticket).
Anyone else gets the same "not found" page; answers are never cached.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select

from bot.web.wechat_login import who_opens
from core.audit import audit
from core.claims import progress
from core.household_links import BadLink, read_claims_token
from core.messages import render, render_page
from core.models import Household, HouseholdLink, OutboxMessage
from core.outbox import as_utc

log = logging.getLogger("huzhu.household_pages")
bp = Blueprint("household_pages", __name__)

STATE_COOKIE = "huzhu_household_state"
NOTICES_SHOWN = 5
CLAIMS_SHOWN = 50
HEADERS = {
    "Cache-Control": "private, no-store", "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline' "
                               "https://res.wx.qq.com; style-src 'unsafe-inline'; "
                               "connect-src https:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
}


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def _page(status: int, what: str, **context) -> Response:
    return Response(render_page("household_claims", status=what, **context), status=status,
                    mimetype="text/html")


@bp.get("/h/claims/<token>")
def claims_page(token: str):
    x = current_app.extensions["huzhu"]
    try:
        household_id = read_claims_token(x.cfg, token)
    except BadLink as e:
        return _page(410 if e.why == "expired" else 404, "expired" if e.why == "expired"
                     else "not_found")
    here = f"{x.cfg.PUBLIC_URL.rstrip('/')}/h/claims/{token}"
    step = who_opens(x.cfg, here, STATE_COOKIE, "household page")
    if step.redirect is not None:
        return step.redirect
    if step.openid is None:
        return _page(404, "not_found")
    opener = step.openid
    with x.db.session() as s:
        household = s.get(Household, household_id)
        linked = household is not None and s.scalar(select(HouseholdLink.id).where(
            HouseholdLink.household_id == household_id,
            HouseholdLink.openid == opener)) is not None
        if not linked:
            audit(s, opener, "household.page_refused", "household",
                  household.number if household else household_id, None, {"why": "not_linked"})
            return _page(404, "not_found")
        items, total = progress(s, household, limit=CLAIMS_SHOWN)
        text = render("claim_progress", items=items, total=total)
        notices = [{"at": as_utc(r.created_at).astimezone(x.cfg.tz),  # the villager's day
                    "text": r.payload.get("text", "")}
                   for r in s.scalars(select(OutboxMessage).where(
                       OutboxMessage.kind == "notice",
                       OutboxMessage.household_id == household_id)
                       .order_by(OutboxMessage.id.desc()).limit(NOTICES_SHOWN))]
        number = household.number
    subscribe_ids = sorted({t.template_id for t in x.deliver_context.notices.wechat.values()
                            if t.via == "subscribe"})
    jsapi = None
    if subscribe_ids:
        query = request.query_string.decode()
        try:  # the page's own URL, as the browser has it, is what the JS-SDK signs
            jsapi = x.deliver_context.wechat.jsapi_config(f"{here}?{query}" if query else here)
        except Exception as exc:
            log.warning("household page: JS-SDK ticket failed: %s", type(exc).__name__)
    return _page(200, "ok", household=number, progress=text, notices=notices,
                 subscribe_ids=subscribe_ids, jsapi=jsapi)

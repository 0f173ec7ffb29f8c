"""WeChat's web authorization (网页授权) for a link opened in WeChat's browser: who opens it.

The first visit is sent to WeChat's authorization page with a random `state`, kept in a cookie
for this link's path only; WeChat sends the browser back with a `code` and that state, and the
code is exchanged for the opener's openid. No database transaction is open during the exchange
(ARCHITECTURE "No network call inside a transaction"). Used by the household's claims page
(`household_pages.py`) and the reviewers' photo links (`review_photos.py`)."""
from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Response, redirect, request

from bot.clients.wechat import authorize_url, openid_of_code

log = logging.getLogger("huzhu.web")

STATE_SECONDS = 600  # time to come back from WeChat's authorization


@dataclass(frozen=True)
class Opener:
    """One of: `redirect` (the first visit: send it), `openid` (who opened the link), or
    `refused` — "state" (the state does not match this browser's cookie) or "authorization"
    (WeChat did not take the code)."""
    redirect: Response | None = None
    openid: str | None = None
    refused: str | None = None


def who_opens(cfg, here: str, cookie: str, what: str) -> Opener:
    """The opener of the link `here` (its full public URL); `cookie` names the state cookie,
    `what` the link in the log line of a failed authorization."""
    code = request.args.get("code", "")
    if not code:
        state = secrets.token_urlsafe(16)
        response = redirect(authorize_url(cfg, here, state), 302)
        response.set_cookie(cookie, state, max_age=STATE_SECONDS, httponly=True,
                            secure=here.startswith("https://"), samesite="Lax",
                            path=urlsplit(here).path)
        return Opener(redirect=response)
    expected = request.cookies.get(cookie, "")
    if not expected or not hmac.compare_digest(expected, request.args.get("state", "")):
        return Opener(refused="state")
    try:  # no transaction is open during the call
        return Opener(openid=openid_of_code(cfg, code))
    except Exception as exc:  # a wrong, used or expired code; WeChat down
        log.warning("%s: web authorization failed: %s", what, type(exc).__name__)
        return Opener(refused="authorization")

"""Outbox deliverers: one function per outbox kind (payloads: see core/outbox.py).

The worker (bot/outbox/worker.py) calls `DELIVERERS[row.kind](ctx, row)` with the row detached and no
transaction open, then marks the row. A deliverer
- returns None: delivered (the worker marks it sent);
- returns HELD: it cannot be delivered until the user writes again (the worker holds it);
- raises PermanentError: it can never be delivered (the row is dead at once);
- raises anything else (RetryableError, network errors): retried with backoff.
More kinds plug in from the other modules of `bot/outbox/` with `@deliverer("kind")`.
"""
from __future__ import annotations

import threading
from typing import Callable

import requests

from bot.clients.wechat import WeChat, WeChatClientException
from bot.clients.wecom import GroupBot, WeComError
from core.config import Config
from core.db import Database
from core.models import OutboxMessage

HELD = "held"


class Hold:
    """Hold the row until `until` (a notice waiting for its SMS time), not 30 days."""

    def __init__(self, until):
        self.until = until

# errcodes no retry will fix: bad openid, user unsubscribed or blocked us, malformed message
PERMANENT_WECHAT = {40003, 40008, 43004, 43019, 44004, 47001}


class PermanentError(Exception):
    """Delivering this row can never succeed: mark it dead now."""


class RetryableError(Exception):
    """Delivering failed this time: retry later with backoff."""


class Context:
    """What deliverers use: configuration, database, and clients built on first use (one
    Context is shared by the worker's threads)."""

    def __init__(self, cfg: Config, db: Database, gateway=None):
        self.cfg = cfg
        self.db = db
        self.gateway = gateway  # the app's payment gateway: a callable building it on first use
        self._lock = threading.Lock()
        self._wechat: WeChat | None = None
        self._http: requests.Session | None = None
        self._notices = None
        self._sms = None

    @property
    def wechat(self) -> WeChat:
        with self._lock:
            if self._wechat is None:
                self._wechat = WeChat(self.cfg, self.db)
            return self._wechat

    @property
    def notices(self):
        """NOTIFY_TEMPLATES and SMS_TEMPLATES, read once (core.notices.Notices)."""
        from core.config import config_path
        from core.notices import Notices, load_sms_templates, load_templates

        with self._lock:
            if self._notices is None:
                v = self.cfg.values
                self._notices = Notices(
                    wechat=load_templates(config_path(v["NOTIFY_TEMPLATES"]))
                    if v.get("NOTIFY_TEMPLATES") else {},
                    sms=load_sms_templates(config_path(v["SMS_TEMPLATES"]))
                    if v.get("SMS_PROVIDER") and v.get("SMS_TEMPLATES") else {})
            return self._notices

    @property
    def sms(self):
        """The SMS provider of SMS_PROVIDER (bot/clients/sms.py), or None."""
        from bot.clients.sms import sms_provider

        with self._lock:
            if self._sms is None and self.cfg.values.get("SMS_PROVIDER"):
                self._sms = sms_provider(self.cfg)
            return self._sms

    @property
    def http(self) -> requests.Session:
        with self._lock:
            if self._http is None:
                self._http = requests.Session()
            return self._http


Deliverer = Callable[[Context, OutboxMessage], "str | None"]
DELIVERERS: dict[str, Deliverer] = {}


def deliverer(kind: str) -> Callable[[Deliverer], Deliverer]:
    def register(fn: Deliverer) -> Deliverer:
        DELIVERERS[kind] = fn
        return fn
    return register


@deliverer("wechat.send")
def send_wechat(ctx: Context, row: OutboxMessage) -> str | None:
    try:
        openid, message = row.payload["openid"], row.payload["message"]
    except (KeyError, TypeError) as exc:
        raise PermanentError(f"bad wechat.send payload: {exc!r}") from exc
    return send_message(ctx, openid, message)


def send_message(ctx: Context, openid: str, message: dict) -> str | None:
    """One message to one follower through the customer-service API (bot/clients/wechat.py),
    its errors sorted into permanent and retryable; HELD when the follower's window is closed."""
    try:
        how = ctx.wechat.deliver(openid, message)
    except (KeyError, TypeError, ValueError, FileNotFoundError) as exc:
        raise PermanentError(f"bad wechat.send payload: {exc!r}") from exc
    except WeChatClientException as exc:
        if exc.errcode is None:  # not an answer from WeChat: an HTTP error
            status = exc.response.status_code if exc.response is not None else "no response"
            raise RetryableError(f"WeChat HTTP {status}") from exc
        error = f"WeChat {exc.errcode}: {exc.errmsg}"
        raise (PermanentError if exc.errcode in PERMANENT_WECHAT else RetryableError)(error) from exc
    return HELD if how == "held" else None


@deliverer("wecom.post")
def post_wecom(ctx: Context, row: OutboxMessage) -> None:
    """{key, markdown} or {key, image_path}. A long markdown goes as several messages; each
    part posted is counted in the row's payload["parts_sent"] at once, so a retry (after
    WeCom's rate limit, say) goes on from the next part instead of posting any twice."""
    payload = row.payload
    try:
        bot = GroupBot.from_config(ctx.cfg, payload["key"], ctx.http)
        if "markdown" in payload:
            parts = bot.markdown_parts(payload["markdown"])
            for i in range(payload.get("parts_sent", 0), len(parts)):
                bot.send_markdown_part(parts[i])
                _save_progress(ctx, row, i + 1)
        elif "image_path" in payload:
            bot.send_image(payload["image_path"])
        else:
            raise PermanentError("wecom.post needs markdown or image_path")
    except (KeyError, TypeError, ValueError, FileNotFoundError) as exc:
        raise PermanentError(f"bad wecom.post payload: {exc!r}") from exc
    except WeComError as exc:
        raise (RetryableError if exc.retryable else PermanentError)(str(exc)) from exc


def _save_progress(ctx: Context, row: OutboxMessage, parts_sent: int) -> None:
    row.payload = {**row.payload, "parts_sent": parts_sent}
    if row.id is None:
        return
    with ctx.db.session() as s:
        stored = s.get(OutboxMessage, row.id)
        if stored is not None:
            stored.payload = {**stored.payload, "parts_sent": parts_sent}

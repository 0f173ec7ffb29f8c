"""The WeChat official-account API client.

wechatpy's WeChatClient, with every URL under WECHAT_API_BASE (the emulator in demo and tests),
and the access token from POST {base}/cgi-bin/stable_token kept where every process sees it:
the `access_token` table, or Redis when REDIS_URL is set. One process at a time refreshes it
(PostgreSQL: an advisory lock; SQLite: a lock file beside the database; Redis: a SET NX lock)
with no database transaction open while WeChat is asked,
five minutes before it expires, and once when WeChat answers 40001/40014/42001.

`WeChat.deliver` is the notification rule of SPEC "Villager dialogue": a customer-service
message inside the 48-hour window, a template message outside it, else "held".
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote

import requests
from sqlalchemy import func, select, update
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from core.config import REAL_WECHAT_API, Config
from core.db import Database
from core.models import AccessToken, WechatUser
from core.outbox import as_utc

__all__ = ["WeChat", "WeChatClientException", "TOKEN_ERRORS", "WINDOW_ERRORS"]

TOKEN_ERRORS = {40001, 40014, 42001}  # invalid credential, invalid token, expired token
WINDOW_ERRORS = {45015, 45047}  # out of the 48-hour window, out of the pushes per inbound
WINDOW = timedelta(hours=48)
PUSHES_PER_INBOUND = 5
REFRESH_MARGIN = timedelta(minutes=5)
IMAGE_SUFFIX = {b"\x89PNG": ("png", "image/png"), b"\xff\xd8\xff": ("jpg", "image/jpeg"),
                b"GIF8": ("gif", "image/gif")}

Fetch = Callable[[bool], tuple[str, int]]  # force_refresh -> (token, expires_in)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- where the access token lives -------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: datetime

    def usable(self, rejected: str | None) -> bool:
        return self.value != rejected and self.expires_at - _utcnow() > REFRESH_MARGIN


def _fetch_new(fetch: Fetch, rejected: str | None) -> _Token:
    """Ask WeChat for the current token; force a new one only if it is the one just rejected."""
    value, expires_in = fetch(False)
    if rejected is not None and value == rejected:
        value, expires_in = fetch(True)
    return _Token(value, _utcnow() + timedelta(seconds=expires_in))


class _TokenStore:
    """The token shared by every process, with a copy in this one."""

    def __init__(self, app_id: str):
        self.app_id = app_id
        self._cached: _Token | None = None

    def token(self, fetch: Fetch, rejected: str | None = None) -> str:
        current = self._cached
        if current is None or not current.usable(rejected):
            current = self._load()
            if current is None or not current.usable(rejected):
                current = self._refresh(fetch, rejected)
            self._cached = current
        return current.value

    def _load(self) -> _Token | None:
        raise NotImplementedError

    def _refresh(self, fetch: Fetch, rejected: str | None) -> _Token:
        raise NotImplementedError


class _DatabaseTokens(_TokenStore):
    def __init__(self, db: Database, app_id: str):
        super().__init__(app_id)
        self.db = db
        self._lock_key = zlib.crc32(f"huzhu.access_token:{app_id}".encode())

    def _load(self) -> _Token | None:
        with self.db.session() as s:
            row = s.get(AccessToken, self.app_id)
            return _Token(row.token, as_utc(row.expires_at)) if row else None

    def _refresh(self, fetch: Fetch, rejected: str | None) -> _Token:
        # one refresher at a time, and no transaction open while WeChat is asked (on SQLite
        # it would hold the one write lock, and every villager's message would wait)
        with self._only_refresher():
            current = self._load()
            if current is not None and current.usable(rejected):
                return current  # another process refreshed it while we waited
            new = _fetch_new(fetch, rejected)
            with self.db.session() as s:
                row = s.get(AccessToken, self.app_id)
                if row is None:
                    s.add(AccessToken(app_id=self.app_id, token=new.value,
                                      expires_at=new.expires_at))
                else:
                    row.token, row.expires_at = new.value, new.expires_at
            return new

    @contextmanager
    def _only_refresher(self) -> Iterator[None]:
        """PostgreSQL: a session advisory lock on a connection with no transaction open;
        SQLite: an exclusive lock on a file beside the database (this process's threads and
        the other processes)."""
        if self.db.is_postgres:
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(select(func.pg_advisory_lock(self._lock_key)))
                try:
                    yield
                finally:
                    c.execute(select(func.pg_advisory_unlock(self._lock_key)))
            return
        path = self.db.engine.url.database
        if not path or path == ":memory:":
            with _MEMORY_LOCK:
                yield
            return
        with _MEMORY_LOCK:
            fd = os.open(f"{path}-token.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock


_MEMORY_LOCK = threading.Lock()


class _RedisTokens(_TokenStore):
    def __init__(self, url: str, app_id: str):
        import redis

        super().__init__(app_id)
        self.redis = redis.Redis.from_url(url)
        self.key = f"huzhu:access_token:{app_id}"

    def _load(self) -> _Token | None:
        raw = self.redis.get(self.key)
        if raw is None:
            return None
        data = json.loads(raw)
        return _Token(data["token"], datetime.fromisoformat(data["expires_at"]))

    def _refresh(self, fetch: Fetch, rejected: str | None) -> _Token:
        # redis-py's Lock: SET NX PX, released only by its owner
        with self.redis.lock(f"{self.key}:lock", timeout=30, blocking_timeout=30):
            current = self._load()
            if current is not None and current.usable(rejected):
                return current
            new = _fetch_new(fetch, rejected)
            self.redis.set(self.key, json.dumps({"token": new.value,
                                                 "expires_at": new.expires_at.isoformat()}),
                           exat=int(new.expires_at.timestamp()))
            return new


# -- wechatpy, pointed at the configured base -------------------------------------------------

class _Client(WeChatClient):
    def __init__(self, cfg: Config, tokens: _TokenStore, timeout: float):
        super().__init__(cfg.WECHAT_APP_ID, cfg.WECHAT_APP_SECRET, timeout=timeout,
                         auto_retry=False)
        self.base = cfg.WECHAT_API_BASE.rstrip("/")
        self.API_BASE_URL = f"{self.base}/cgi-bin/"
        self.tokens = tokens

    @property
    def access_token(self) -> str:
        return self.tokens.token(self._stable_token)

    def fetch_access_token(self):  # wechatpy's hook; the store decides whether to fetch
        return self.tokens.token(self._stable_token)

    def _stable_token(self, force: bool) -> tuple[str, int]:
        res = self._http.post(f"{self.base}/cgi-bin/stable_token", timeout=self.timeout, json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
            "force_refresh": force})
        result = self._handle_result(self._checked(res))
        return result["access_token"], int(result.get("expires_in", 7200))

    def _checked(self, res: requests.Response) -> requests.Response:
        try:
            res.raise_for_status()
        except requests.RequestException as exc:
            raise WeChatClientException(None, None, client=self, request=exc.request,
                                        response=exc.response)
        return res

    def _request(self, method, url_or_endpoint, **kwargs):
        """One retry with a fresh token when WeChat rejects the one we sent."""
        params = kwargs.setdefault("params", {})
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            rejected = params.pop("access_token", None)
            params["access_token"] = self.tokens.token(self._stable_token, rejected=rejected)
            return super()._request(method, url_or_endpoint, **kwargs)

    def get_raw(self, url: str, **params) -> requests.Response:
        """A GET that answers bytes (the QR image, served without a token)."""
        return self._checked(self._http.get(url, params=params, timeout=self.timeout))


# -- the client the project uses --------------------------------------------------------------

class WeChat:
    """Every method makes HTTP calls and short transactions of its own: call it with no
    transaction open (on SQLite an open one would make the token look-up wait for it)."""

    def __init__(self, cfg: Config, db: Database, *, timeout: float = 10.0):
        self.cfg = cfg
        self.db = db
        if cfg.REDIS_URL:
            tokens: _TokenStore = _RedisTokens(cfg.REDIS_URL, cfg.WECHAT_APP_ID)
        else:
            tokens = _DatabaseTokens(db, cfg.WECHAT_APP_ID)
        self.client = _Client(cfg, tokens, timeout)
        self.template_id: str = cfg.values.get("WECHAT_TEMPLATE_ID") or ""

    @property
    def base(self) -> str:
        return self.client.base

    # -- messages ---------------------------------------------------------------------------
    def send_text(self, openid: str, text: str) -> None:
        self.client.message.send_text(openid, text)

    def send_image(self, openid: str, media_id: str) -> None:
        self.client.message.send_image(openid, media_id)

    def send_template(self, openid: str, template_id: str, data: dict,
                      url: str | None = None) -> int:
        """data: {field: value} or {field: {"value": value}}; returns WeChat's msgid."""
        data = {k: v if isinstance(v, dict) else {"value": v} for k, v in data.items()}
        return self.client.message.send_template(openid, template_id, data, url=url)["msgid"]

    def send_subscribe(self, openid: str, template_id: str, data: dict,
                       page: str | None = None) -> None:
        data = {k: v if isinstance(v, dict) else {"value": v} for k, v in data.items()}
        self.client.message.send_subscribe_message(openid, template_id, data, page=page)

    def jsapi_config(self, url: str) -> dict:
        """wx.config's values for a page at `url` (JS-SDK: the subscribe button); the ticket
        (ticket/getticket) is kept by wechatpy until it expires."""
        ticket = self.client.jsapi.get_jsapi_ticket()
        nonce, ts = secrets.token_hex(8), int(time.time())
        return {"appId": self.cfg.WECHAT_APP_ID, "timestamp": ts, "nonceStr": nonce,
                "signature": self.client.jsapi.get_jsapi_signature(nonce, ticket, ts, url)}

    # -- media ------------------------------------------------------------------------------
    def upload_media(self, path_or_bytes: str | Path | bytes, kind: str = "image") -> str:
        if isinstance(path_or_bytes, bytes):
            data = path_or_bytes
            ext, ctype = next((v for magic, v in IMAGE_SUFFIX.items() if data.startswith(magic)),
                              ("bin", "application/octet-stream"))
            name = f"{kind}.{ext}"
        else:
            path = Path(path_or_bytes)
            data, name, ctype = path.read_bytes(), path.name, None
        # bytes, not a file object: the upload can be sent again after a token refresh
        return self.client.media.upload(kind, (name, data, ctype))["media_id"]

    def download_media(self, media_id: str) -> tuple[bytes, str]:
        res = self.client.media.download(media_id)
        if isinstance(res, dict):  # a video answers {"video_url": …}, not bytes
            raise WeChatClientException(None, f"media {media_id} is not a file: {res}")
        return res.content, res.headers.get("Content-Type", "application/octet-stream")

    # -- QR codes, menus, tags --------------------------------------------------------------
    def create_scene_qrcode(self, scene_str: str, expire_seconds: int | None = None
                            ) -> tuple[str, str, bytes]:
        """A permanent QR code carrying scene_str (temporary when expire_seconds is given):
        (ticket, url, PNG bytes)."""
        data: dict = {"action_info": {"scene": {"scene_str": scene_str}}}
        if expire_seconds:
            data.update(action_name="QR_STR_SCENE", expire_seconds=expire_seconds)
        else:
            data["action_name"] = "QR_LIMIT_STR_SCENE"
        res = self.client.qrcode.create(data)
        # the image is served by mp.weixin.qq.com on the real platform
        show = "https://mp.weixin.qq.com" if self.base == REAL_WECHAT_API else self.base
        png = self.client.get_raw(f"{show}/cgi-bin/showqrcode?ticket={quote(res['ticket'])}")
        return res["ticket"], res["url"], png.content

    def create_menu(self, menu: dict) -> None:
        self.client.menu.create(menu)

    def tag_create(self, name: str) -> int:
        return self.client.tag.create(name)["id"]

    def tags(self) -> dict[str, int]:
        return {t["name"]: t["id"] for t in self.client.tag.get()}

    def tag_users(self, tag_id: int, openids: list[str]) -> None:
        for i in range(0, len(openids), 50):  # WeChat takes 50 openids a call
            self.client.tag.tag_user(tag_id, openids[i:i + 50])

    def mass_send_text_to_tag(self, tag_id: int, text: str) -> int:
        res = self.client.post("message/mass/sendall", data={
            "filter": {"is_to_all": False, "tag_id": tag_id},
            "msgtype": "text", "text": {"content": text}})
        return res["msg_id"]

    # -- the notification rule --------------------------------------------------------------
    def deliver(self, openid: str, message: dict) -> str:
        """Push `message` ({type: text, content} or {type: image, path}) to a user:
        "custom" inside the 48-hour window (and fewer than 5 pushes since the user last wrote),
        "template" outside it for text when WECHAT_TEMPLATE_ID is set (or when WeChat answers
        45015/45047), "held" when neither is possible — the caller then holds the message.
        A text message may carry `template_data` ({field: value}) for the template; by default
        the text goes in the field `content`, and `url` is the template's link."""
        if message.get("type") not in ("text", "image"):
            raise ValueError(f"unknown message type {message.get('type')!r}")
        if self.push_custom(openid, message):
            return "custom"
        if message["type"] == "text" and self.template_id:
            data = message.get("template_data") or {"content": message["content"]}
            self.send_template(openid, self.template_id, data, url=message.get("url"))
            return "template"
        return "held"

    def push_custom(self, openid: str, message: dict) -> bool:
        """A customer-service message if the user's window is open: True when sent, False when
        the window is closed (or WeChat says so: 45015/45047); other errors are raised."""
        if not self._take_push(openid):
            return False
        try:
            self._send_custom(openid, message)
            return True
        except WeChatClientException as exc:
            closed = exc.errcode in WINDOW_ERRORS
            self._give_back_push(openid, closed)
            if not closed:
                raise
            return False
        except BaseException:
            self._give_back_push(openid, closed=False)
            raise

    def _take_push(self, openid: str) -> bool:
        """Count one more push since the user last wrote, if the window is open: one atomic
        UPDATE, so concurrent workers never send a sixth (no lock is held while sending)."""
        user = WechatUser.__table__.c
        with self.db.session() as s:
            taken = s.execute(update(WechatUser.__table__).where(
                user.openid == openid,
                user.last_inbound_at > _utcnow() - WINDOW,
                user.pushes_since_inbound < PUSHES_PER_INBOUND,
            ).values(pushes_since_inbound=user.pushes_since_inbound + 1))
            return taken.rowcount == 1

    def _give_back_push(self, openid: str, closed: bool) -> None:
        """The push did not happen; when WeChat says the window is closed, it is used up."""
        user = WechatUser.__table__.c
        stmt = update(WechatUser.__table__).where(user.openid == openid)
        if closed:
            stmt = stmt.values(pushes_since_inbound=PUSHES_PER_INBOUND)
        else:
            stmt = stmt.where(user.pushes_since_inbound > 0).values(
                pushes_since_inbound=user.pushes_since_inbound - 1)
        with self.db.session() as s:
            s.execute(stmt)

    def _send_custom(self, openid: str, message: dict) -> None:
        if message["type"] == "text":
            self.send_text(openid, message["content"])
        else:
            self.send_image(openid, self.upload_media(message["path"], "image"))


# -- web authorization (网页授权) ------------------------------------------------------------------

class _OAuth(WeChatOAuth):
    """wechatpy's web authorization, with the configured bases and a timeout."""

    def __init__(self, cfg: Config, redirect_uri: str, state: str, timeout: float):
        super().__init__(cfg.WECHAT_APP_ID, cfg.WECHAT_APP_SECRET, redirect_uri,
                         scope="snsapi_base", state=state)
        self.API_BASE_URL = cfg.WECHAT_API_BASE.rstrip("/") + "/"
        self.OAUTH_BASE_URL = cfg.values.get("WECHAT_OPEN_BASE",
                                             "https://open.weixin.qq.com").rstrip("/") + "/connect/"
        self.timeout = timeout

    def _request(self, method, url_or_endpoint, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super()._request(method, url_or_endpoint, **kwargs)


def authorize_url(cfg: Config, redirect_uri: str, state: str) -> str:
    """Where to send a browser so that WeChat tells us, silently (snsapi_base), who it is: WeChat
    comes back to redirect_uri with ?code=…&state=…"""
    return _OAuth(cfg, redirect_uri, state, 5.0).authorize_url


def openid_of_code(cfg: Config, code: str, timeout: float = 5.0) -> str:
    """The openid behind a web-authorization code (sns/oauth2/access_token); a code works once.
    Raises WeChatOAuthException (a wrong, used or expired code) or requests' errors."""
    result = _OAuth(cfg, "", "", timeout).fetch_access_token(code)
    openid = result.get("openid")
    if not openid:
        raise WeChatOAuthException(None, "no openid in the answer")
    return str(openid)

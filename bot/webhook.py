"""The WeChat webhook: verify, decrypt, drop retries, route, answer within WeChat's 5 seconds.

Each accepted message is one database transaction: the user's record, whatever the dialogue
changes, and the dedupe row (unique key: MsgId, or FromUserName+CreateTime for events) holding
the passive reply. A retry of the same message gets the cached reply and changes nothing; two
copies handled at the same moment race for the unique key, and the loser's whole transaction is
rolled back.
When handling runs past the budget, the request answers `success` and the reply goes out
through the outbox instead — decided under a lock, so it goes out exactly once.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, request
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature, random_string

from bot.wechat import PUSHES_PER_INBOUND, WINDOW
from bot.wxml import BadXml, parse_flat
from core import outbox
from core.messages import render
from core.models import DialogueState, InboundMessage, WechatUser, utcnow
from handlers import router
from handlers.types import Ctx, Incoming, Reply

log = logging.getLogger("huzhu.webhook")
bp = Blueprint("wechat", __name__)

PASSIVE_LIMIT = 2000  # bytes of one passive text reply (WeChat allows 2048)


def _bad(status: int, why: str) -> Response:
    log.warning("webhook refused status=%s why=%s ip=%s", status, why, request.remote_addr)
    return Response(why, status=status, mimetype="text/plain")


@bp.get("/wechat")
def verify_url():
    hook: Webhook = current_app.extensions["huzhu.webhook"]
    args = request.args
    if not hook.signature_ok(args.get("signature", ""), args.get("timestamp", ""),
                             args.get("nonce", "")):
        return _bad(403, "bad signature")
    return Response(args.get("echostr", ""), mimetype="text/plain")


@bp.post("/wechat")
def receive():
    hook: Webhook = current_app.extensions["huzhu.webhook"]
    return hook.receive()


@dataclass
class _Ticket:
    """Who sends the reply: the request (in time) or the outbox (late)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    late: bool = False
    committing: bool = False


class Webhook:
    def __init__(self, app_ctx):
        self.x = app_ctx  # bot.app.AppContext
        cfg = app_ctx.cfg
        self.token = cfg.WECHAT_TOKEN
        self.crypto = (WeChatCrypto(cfg.WECHAT_TOKEN, cfg.WECHAT_AES_KEY, cfg.WECHAT_APP_ID)
                       if cfg.safe_mode else None)
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="huzhu-msg")

    # -- HTTP -------------------------------------------------------------------------------
    def signature_ok(self, signature: str, timestamp: str, nonce: str) -> bool:
        try:
            check_signature(self.token, signature, timestamp, nonce)
            return True
        except InvalidSignatureException:
            return False

    def receive(self) -> Response:
        cfg = self.x.cfg
        args = request.args
        if not self.signature_ok(args.get("signature", ""), args.get("timestamp", ""),
                                 args.get("nonce", "")):
            return _bad(403, "bad signature")
        length = request.content_length
        if length is not None and length > cfg.MAX_BODY_BYTES:
            return _bad(400, "body too large")
        body = request.stream.read(cfg.MAX_BODY_BYTES + 1)
        if len(body) > cfg.MAX_BODY_BYTES:
            return _bad(400, "body too large")
        try:
            fields = parse_flat(body)
        except BadXml as exc:
            return _bad(400, f"malformed xml ({exc})")
        encrypted = args.get("encrypt_type") == "aes"
        if self.crypto is not None:
            if not encrypted or "Encrypt" not in fields:
                return _bad(400, "safe mode expects an encrypted message")
            try:
                inner = self.crypto.decrypt_message(fields, args.get("msg_signature", ""),
                                                    args.get("timestamp", ""), args.get("nonce", ""))
            except InvalidSignatureException:
                return _bad(403, "bad msg_signature")
            except (InvalidAppIdException, ValueError, UnicodeDecodeError, KeyError) as exc:
                return _bad(400, f"cannot decrypt ({type(exc).__name__})")
            except Exception as exc:  # cryptography raises several kinds on a wrong key
                return _bad(400, f"cannot decrypt ({type(exc).__name__})")
            try:
                fields = parse_flat(inner.encode() if isinstance(inner, str) else inner)
            except BadXml as exc:
                return _bad(400, f"malformed xml ({exc})")
        elif encrypted:
            return _bad(400, "encrypted message but safe mode is off")
        msg = to_incoming(fields)
        if msg is None:
            return _bad(400, "not a WeChat message")
        started = time.monotonic()
        texts = self.dispatch(msg)
        log.info("inbound type=%s openid=%s key=%s ms=%.1f", msg.kind, _short(msg.openid),
                 msg.key, (time.monotonic() - started) * 1000)
        if not texts:
            return Response("success", mimetype="text/plain")
        reply_xml = TextReply(source=fields.get("ToUserName", ""), target=msg.openid,
                              content="\n\n".join(texts)).render()
        if self.crypto is not None:
            reply_xml = self.crypto.encrypt_message(reply_xml, args.get("nonce") or random_string(),
                                                    args.get("timestamp"))
        return Response(reply_xml, mimetype="application/xml")

    # -- handling ---------------------------------------------------------------------------
    def dispatch(self, msg: Incoming) -> list[str]:
        """The passive reply's texts, or [] for `success` (nothing to say, or it comes late)."""
        ticket = _Ticket()
        future = self.pool.submit(self._process, msg, ticket)
        try:
            return future.result(timeout=self.x.cfg.REPLY_BUDGET_SECONDS)
        except FutureTimeout:
            with ticket.lock:
                if not ticket.committing:
                    ticket.late = True
            if ticket.late:
                log.warning("reply late key=%s: it goes through the outbox", msg.key)
                return []
            return future.result()

    def _process(self, msg: Incoming, ticket: _Ticket) -> list[str]:
        db = self.x.db
        try:
            with db.session() as s:
                user, state = _user_and_state(s, msg)
                if _may_have_held(user):
                    outbox.wake(s, msg.openid)
                ctx = Ctx(session=s, cfg=self.x.cfg, vault=self.x.vault, user=user,
                          now=datetime.now(self.x.cfg.tz),
                          extra={"app": self.x, "dialogue_state": state})
                replies = router.handle(ctx, msg)
                texts = _passive_texts(s, msg.openid, replies)
                with ticket.lock:
                    if ticket.late:
                        for t in texts:
                            outbox.send_text(s, msg.openid, t)
                    ticket.committing = True
                try:
                    s.flush()  # whatever the dialogue changed
                    s.execute(_TOUCH_USER, {"user_id": user.id, "now": utcnow()})
                    s.execute(_INSERT_INBOUND, {"dedupe_key": msg.key, "openid": msg.openid,
                                                "msg_type": msg.kind, "reply": texts,
                                                "done": True})
                except IntegrityError:
                    # the same message, handled at this very moment by another request, got
                    # its dedupe row in first: all of this transaction is rolled back
                    raise _Retry()
            self.x.wake_outbox()
            return texts
        except _Retry:
            return self._cached_reply(msg, ticket)
        except Exception:
            log.error("handling failed key=%s openid=%s", msg.key, _short(msg.openid),
                      exc_info=True)
            with ticket.lock:
                ticket.committing = True
            return [render("internal_error")]

    def _cached_reply(self, msg: Incoming, ticket: _Ticket) -> list[str]:
        """A retry: the first delivery's reply, once it is committed (or `success`)."""
        with ticket.lock:
            ticket.committing = True
        with self.x.db.session() as s:
            row = s.scalar(select(InboundMessage).where(InboundMessage.dedupe_key == msg.key))
            if row is not None and row.done:
                return list(row.reply or [])
        return []


def _passive_texts(session, openid: str, replies: list[Reply]) -> list[str]:
    """Texts go in the passive reply (overflow and images through the outbox)."""
    texts: list[str] = []
    size = 0
    for r in replies:
        if r.image_path:
            outbox.enqueue(session, "wechat.send", {"openid": openid,
                                                    "message": {"type": "image",
                                                                "path": r.image_path}})
        if r.text:
            n = len(r.text.encode()) + 2
            if size + n <= PASSIVE_LIMIT:
                texts.append(r.text)
                size += n
            else:
                outbox.send_text(session, openid, r.text)
    return texts


def _may_have_held(user: WechatUser) -> bool:
    """Whether messages may be held for this user. A message is held only while the 48-hour
    window is closed or its 5 pushes are used up, and every inbound message wakes what is held;
    so if the previous inbound message is within 48 hours and fewer than 5 pushes followed it,
    nothing can be held and the look-up is skipped."""
    last = user.last_inbound_at
    return (last is None or utcnow() - outbox.as_utc(last) >= WINDOW
            or (user.pushes_since_inbound or 0) >= PUSHES_PER_INBOUND)


# The statements of every message, built once. The two writes are Core statements: neither
# row is read back in this transaction, so the ORM's unit of work has nothing to add.
_SEEN = select(InboundMessage.id).where(InboundMessage.dedupe_key == bindparam("key")).exists()
_USER_AND_STATE = (select(WechatUser, DialogueState, _SEEN)
                   .outerjoin(DialogueState, DialogueState.openid == WechatUser.openid)
                   .where(WechatUser.openid == bindparam("openid")))
_TOUCH_USER = (update(WechatUser.__table__)
               .where(WechatUser.__table__.c.id == bindparam("user_id"))
               .values(last_inbound_at=bindparam("now"), pushes_since_inbound=0))
_INSERT_INBOUND = InboundMessage.__table__.insert()


class _Retry(Exception):
    pass


def _user_and_state(session, msg: Incoming) -> tuple[WechatUser, DialogueState | None]:
    """The user (created on a first message) and their dialogue state, in one query that also
    tells whether this message was answered before (then _Retry). A user not yet there cannot
    have sent a message already answered: the user is created in that message's transaction."""
    row = session.execute(_USER_AND_STATE, {"openid": msg.openid, "key": msg.key}).first()
    if row is not None:
        if row[2]:
            raise _Retry()  # WeChat retried a message already answered
        return row[0], row[1]
    try:
        with session.begin_nested():
            user = WechatUser(openid=msg.openid, subscribed=True)
            session.add(user)
    except IntegrityError:  # created a moment ago by another message of the same user
        user = session.scalar(select(WechatUser).where(WechatUser.openid == msg.openid))
        if session.scalar(_SEEN.select(), {"key": msg.key}):
            raise _Retry()
        return user, session.get(DialogueState, msg.openid)
    return user, None


def _short(openid: str) -> str:
    return openid[:6] + "…" if len(openid) > 8 else openid


def to_incoming(f: dict[str, str]) -> Incoming | None:
    openid = f.get("FromUserName", "")
    msg_type = f.get("MsgType", "").lower()
    created = f.get("CreateTime", "")
    if not openid or not msg_type or not created.isdigit():
        return None
    received = datetime.fromtimestamp(int(created), timezone.utc)
    if msg_type == "event":
        event = f.get("Event", "").lower()
        key = "evt:" + hashlib.sha1(f"{openid}:{created}".encode()).hexdigest()
        event_key = f.get("EventKey", "")
        if event == "subscribe":
            scene = event_key[len("qrscene_"):] if event_key.startswith("qrscene_") else None
            return Incoming(openid, "event", event="subscribe", scene=scene, key=key,
                            received_at=received)
        if event == "scan":
            return Incoming(openid, "event", event="scan", scene=event_key, key=key,
                            received_at=received)
        if event == "unsubscribe":
            return Incoming(openid, "event", event="unsubscribe", key=key, received_at=received)
        if event == "click":
            return Incoming(openid, "event", event="click", text=event_key, key=key,
                            received_at=received)
        return Incoming(openid, "event", event=event or "unknown", key=key, received_at=received)
    msg_id = f.get("MsgId") or f"{openid}:{created}"
    key = "msg:" + msg_id
    if msg_type == "text":
        return Incoming(openid, "text", text=f.get("Content", ""), key=key, received_at=received)
    if msg_type == "voice":
        return Incoming(openid, "voice", text=f.get("Recognition", ""), media_id=f.get("MediaId"),
                        key=key, received_at=received)
    if msg_type == "image":
        return Incoming(openid, "image", media_id=f.get("MediaId"), pic_url=f.get("PicUrl"),
                        key=key, received_at=received)
    return Incoming(openid, "other", key=key, received_at=received)

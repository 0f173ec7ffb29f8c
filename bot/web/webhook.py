"""The WeChat webhook: verify, decrypt, drop retries, route, answer within WeChat's 5 seconds.

A villager's message is handled by the line: one thread that takes whatever messages have
queued up and handles them as one batch in one database transaction (bot/web/inbox.py): one read
for all their senders and dedupe keys, each message's dialogue in a SAVEPOINT of its own when
it writes, one write for all users' last inbound time and all dedupe rows (unique key: MsgId, or
FromUserName+CreateTime for events) holding the passive replies, one commit. In one process the
interpreter runs one thread at a time and SQLite has one writer, so handling messages side by
side in many threads only made them queue for each other at every database call.

Before anything is read, the query string must be signed and fresh: a `timestamp` within
300 s of the server's clock, and a signed query not already used with another message
(bot/web/nonces.py); otherwise 403. A refusal's body says only "forbidden" or "bad request";
the reason goes to the log. The dedupe key of a message is its sender and MsgId (an event's:
its sender and CreateTime), so another sender reusing a MsgId is handled as the new message
it is.

A retry of a message gets the stored reply and changes nothing; copies in one batch are handled
once; a copy handled by another process at the same moment loses the race for the unique key
and is answered with the first copy's reply. A message whose handler fails is undone alone and
stores nothing, so WeChat's retry of it is handled afresh. Administrator commands, which may
read a whole pool, and messages that start a dialogue calling out (WeChat Pay) run one per
transaction on a small pool of threads beside the line, as does each message of a batch that
failed as a whole; which line is the message's route's to say (handlers/router.py `route`,
the same decision the router then follows).

`POST /wechat` is answered by `WebhookApp`, a WSGI layer in front of the Flask app, straight
from the WSGI environ; Flask's request context, URL map and response objects cost about a fifth
of a message's processor time. The URL check (GET) and everything else go on to Flask.

The request's thread waits for its reply at most REPLY_BUDGET_SECONDS; past that it answers
`success` and the reply goes out through the outbox instead — decided under a lock, so it goes
out exactly once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from queue import Empty, SimpleQueue
from typing import Callable, Mapping
from urllib.parse import parse_qsl
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, request
from werkzeug.wsgi import get_content_length, get_input_stream
from sqlalchemy import select
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature, random_string

from bot.clients.wechat import PUSHES_PER_INBOUND, WINDOW
from bot.web.nonces import (RedisNonces, Replayed, expires_at, fresh_timestamp, query_id)
from bot.web.wxml import BadXml, parse_flat, text_reply
from core import outbox
from core.messages import render
from bot.web.inbox import (Answered, Conflict, Inbox, Query, Sender, Stale, Stored,
                           remember_query)
from core.config import REAL_WECHAT_API, ConfigError, plain_mode_refused
from core.models import InboundMessage, WechatUser, utcnow
from handlers import dialogue, router
from handlers.types import Ctx, Incoming, Reply

log = logging.getLogger("huzhu.webhook")
bp = Blueprint("wechat", __name__)

PASSIVE_LIMIT = 2000  # bytes of one passive text reply (WeChat allows 2048)
# How long a thread may hold the interpreter while another waits for it. The line gives the
# interpreter up at every database call and must wait to get it back from request threads busy
# signing and decrypting; at Python's default of 5 ms that wait made the slowest 1% of replies
# 5-8 ms slower (bench/webhook.py, safe mode, 32 connections: p99 44 -> 36 ms on SQLite,
# 46 -> 39 ms on PostgreSQL, the same messages/s).
SWITCH_INTERVAL_SECONDS = 0.001


def settle_threads() -> bool:
    """The web process's threads, this one and every one started after it, scheduled as
    `SCHED_BATCH` (Linux; elsewhere nothing changes): a thread woken does not take the
    processor from the thread that woke it. The line wakes each request thread whose reply is
    ready while it holds the interpreter; on a busy machine the woken thread took the processor
    at once, only to find the interpreter taken, and the line sat off the processor still
    holding it — a quarter of the line's interpreter time went in those wake-ups (py-spy). With
    the processors shared between web processes, worker and database, every wake-up cost that.
    bench/webhook.py, gunicorn -w 2, SQLite, quiet machine, three rounds each: 15 → 10 context
    switches a message, 650–970 → 625–675 µs of processor time a message, 2,161 → 2,298 msg/s
    (medians). Returns whether it was set."""
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None:
        return False
    try:
        setter(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Answer:
    """What the webhook answers one POST: status, body, content type (UTF-8)."""
    status: int
    body: str
    content_type: str = "text/plain"


# what a refused request is told: nothing of the reason (that goes to the log)
_REFUSED = {400: "bad request", 403: "forbidden"}


def _bad(status: int, why: str, remote_addr: str | None) -> Answer:
    log.warning("webhook refused status=%s why=%s ip=%s", status, why, remote_addr)
    return Answer(status, _REFUSED.get(status, "refused"))


@bp.get("/wechat")
def verify_url():
    hook: Webhook = current_app.extensions["huzhu.webhook"]
    args = request.args
    if not hook.signature_ok(args.get("signature", ""), args.get("timestamp", ""),
                             args.get("nonce", "")):
        a = _bad(403, "bad signature", request.remote_addr)
        return Response(a.body, status=a.status, mimetype=a.content_type)
    if fresh_timestamp(args.get("timestamp", "")) is None:
        a = _bad(403, "stale or malformed timestamp", request.remote_addr)
        return Response(a.body, status=a.status, mimetype=a.content_type)
    return Response(args.get("echostr", ""), mimetype="text/plain")


@bp.post("/wechat")
def receive():
    """What the WSGI layer in front does not take (`//wechat`, a server's own spelling of the
    path), answered the same way through Flask."""
    hook: Webhook = current_app.extensions["huzhu.webhook"]
    a = hook.answer(request.args, request.stream.read, request.content_length,
                    request.remote_addr)
    return Response(a.body, status=a.status, mimetype=a.content_type)


_STATUS = {200: "200 OK", 400: "400 Bad Request", 403: "403 Forbidden",
           500: "500 Internal Server Error"}


def _query_text(environ) -> str:
    """The query string as Flask reads it: WSGI hands the URL's bytes over as Latin-1 text, and
    they are UTF-8. WeChat's own are plain ASCII, which needs nothing."""
    query = environ.get("QUERY_STRING", "")
    if query.isascii():
        return query
    try:
        return query.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that decoded the bytes already
        return query


class WebhookApp:
    """WSGI in front of the Flask app: `POST /wechat` — every villager's message — is answered
    here straight from the WSGI environ, without Flask's request context, URL map and response
    objects (about a fifth of the processor time a message took); every other request goes on
    to Flask."""

    def __init__(self, flask_wsgi, hook: "Webhook"):
        self.flask_wsgi = flask_wsgi
        self.hook = hook

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/wechat" or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi(environ, start_response)
        args: dict[str, str] = {}
        for k, v in parse_qsl(_query_text(environ), keep_blank_values=True):
            args.setdefault(k, v)  # the first of repeated parameters, as Flask's request.args
        try:
            # the body as Flask reads it: never past Content-Length, and empty without one
            # unless the server marks its stream as ending by itself (chunked, with waitress)
            answer = self.hook.answer(args, get_input_stream(environ).read,
                                      get_content_length(environ), environ.get("REMOTE_ADDR"))
        except Exception:
            log.error("webhook failed", exc_info=True)
            answer = Answer(500, "internal error")
        data = answer.body.encode()
        start_response(_STATUS.get(answer.status, f"{answer.status} Error"),
                       [("Content-Type", f"{answer.content_type}; charset=utf-8"),
                        ("Content-Length", str(len(data)))])
        return [data]


@dataclass
class _Ticket:
    """Who sends the reply: the request (in time) or the outbox (late)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    late: bool = False
    committing: bool = False
    query: Query | None = None  # the signed query to store with the message (no Redis)


class Webhook:
    def __init__(self, app_ctx):
        self.x = app_ctx  # bot.web.app.AppContext
        cfg = app_ctx.cfg
        check_mode(cfg)
        self.token = cfg.WECHAT_TOKEN
        self.nonces = RedisNonces(cfg.REDIS_URL, cfg.WECHAT_APP_ID) if cfg.REDIS_URL else None
        self.crypto = (WeChatCrypto(cfg.WECHAT_TOKEN, cfg.WECHAT_AES_KEY, cfg.WECHAT_APP_ID)
                       if cfg.safe_mode else None)
        # administrator commands, and messages handled again one by one
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="huzhu-msg")
        self.inbox = Inbox(app_ctx.db)
        self.line = _Line(self.handle_batch)

    def close(self) -> None:
        """The server stops: no more threads for commands, the line's connection given back."""
        self.pool.shutdown(wait=False)
        self.inbox.close()

    # -- HTTP -------------------------------------------------------------------------------
    def signature_ok(self, signature: str, timestamp: str, nonce: str) -> bool:
        try:
            check_signature(self.token, signature, timestamp, nonce)
            return True
        except InvalidSignatureException:
            return False

    def answer(self, args: Mapping[str, str], read: Callable[[int], bytes],
               content_length: int | None, remote_addr: str | None) -> Answer:
        """One POST: its query parameters, a reader of its body and the body's declared
        length."""
        cfg = self.x.cfg
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        if not self.signature_ok(args.get("signature", ""), timestamp, nonce):
            return _bad(403, "bad signature", remote_addr)
        ts = fresh_timestamp(timestamp)
        if ts is None:
            return _bad(403, "stale or malformed timestamp", remote_addr)
        qid = query_id(ts, nonce)
        if qid is None:
            return _bad(403, "malformed nonce", remote_addr)
        if content_length is not None and content_length > cfg.MAX_BODY_BYTES:
            return _bad(400, "body too large", remote_addr)
        body = read(cfg.MAX_BODY_BYTES + 1)
        if len(body) > cfg.MAX_BODY_BYTES:
            return _bad(400, "body too large", remote_addr)
        try:
            fields = parse_flat(body)
        except BadXml as exc:
            return _bad(400, f"malformed xml ({exc})", remote_addr)
        encrypted = args.get("encrypt_type") == "aes"
        if self.crypto is not None:
            if not encrypted or "Encrypt" not in fields:
                return _bad(400, "safe mode expects an encrypted message", remote_addr)
            try:
                inner = self.crypto.decrypt_message(fields, args.get("msg_signature", ""),
                                                    args.get("timestamp", ""), args.get("nonce", ""))
            except InvalidSignatureException:
                return _bad(403, "bad msg_signature", remote_addr)
            except Exception as exc:  # a wrong key, bad padding, another app's message, …
                return _bad(400, f"cannot decrypt ({type(exc).__name__})", remote_addr)
            try:
                fields = parse_flat(inner.encode() if isinstance(inner, str) else inner)
            except BadXml as exc:
                return _bad(400, f"malformed xml ({exc})", remote_addr)
        elif encrypted:
            return _bad(400, "encrypted message but safe mode is off", remote_addr)
        msg = to_incoming(fields)
        if msg is None:
            return _bad(400, "not a WeChat message", remote_addr)
        query: Query | None = (qid, expires_at(ts))
        if self.nonces is not None:
            try:
                if not self.nonces.claim(qid, ts, msg.key):
                    return _bad(403, "signed query used before with another message",
                                remote_addr)
                query = None
            except self.nonces.errors as exc:  # Redis is down: the database remembers it
                log.warning("nonce store unavailable (%s): using the database",
                            type(exc).__name__)
        started = time.monotonic()
        try:
            texts = self.dispatch(msg, query)
        except Replayed:
            return _bad(403, "signed query used before with another message", remote_addr)
        log.info("inbound type=%s openid=%s key=%s ms=%.1f", msg.kind, _short(msg.openid),
                 msg.key, (time.monotonic() - started) * 1000)
        if not texts:
            return Answer(200, "success")
        reply_xml = text_reply(fields.get("ToUserName", ""), msg.openid, "\n\n".join(texts),
                               int(time.time()))
        if self.crypto is not None:
            reply_xml = self.crypto.encrypt_message(reply_xml, args.get("nonce") or random_string(),
                                                    args.get("timestamp"))
        return Answer(200, reply_xml, "application/xml")

    # -- handling ---------------------------------------------------------------------------
    def dispatch(self, msg: Incoming, query: Query | None = None) -> list[str]:
        """The passive reply's texts, or [] for `success` (nothing to say, or it comes late);
        Replayed if its signed query came before with another message."""
        ticket = _Ticket(query=query)
        route = router.route(msg)  # decided once: the line here, the handler in the router
        if route.beside_line(lambda: self._open_dialogue(msg.openid)):
            future = self.pool.submit(self._process, msg, route, ticket)
        else:
            future = self.line.submit(msg, route, ticket)
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

    def _open_dialogue(self, openid: str) -> str | None:
        """The sender's open dialogue, read before the message's transaction: asked only for a
        message that could start a dialogue calling out (its menu number means something else
        inside a dialogue), so other messages cost no look-up."""
        with self.x.db.sessions() as s:
            return dialogue.open_dialogue(s, openid)

    def _process(self, msg: Incoming, route: router.Route, ticket: _Ticket) -> list[str]:
        try:
            with self.inbox.unit() as unit:
                sender = unit.sender(msg.openid, msg.key, ticket.query)
                if _may_have_held(sender):
                    unit.woke_held = outbox.wake(unit.session, msg.openid) > 0
                texts = self._route(msg, route, sender, unit, state_known=True)
                with ticket.lock:
                    if ticket.late:
                        for t in texts:
                            outbox.send_text(unit.session, msg.openid, t)
                    ticket.committing = True
                enqueued = unit.finish(sender, msg.openid, msg.key, msg.kind, texts)
            if enqueued:
                self.x.waker.wake()
            return texts
        except Answered:
            # a retry of a message already answered, or a copy handled at this very moment
            # by another request that stored its dedupe row first (this transaction is undone)
            return self._cached_reply(msg, ticket, remember=True)
        except Replayed:
            with ticket.lock:
                ticket.committing = True
            raise
        except Exception:
            log.error("handling failed key=%s openid=%s", msg.key, _short(msg.openid),
                      exc_info=True)
            with ticket.lock:
                ticket.committing = True
            return [render("internal_error")]

    def _route(self, msg: Incoming, route: router.Route, sender: Sender, scope,
               state_known: bool, facts_known: bool | None = None) -> list[str]:
        """The router's answer to one message along its route, with `scope.session` as its ORM
        session; the texts for the passive reply (the rest is queued in the outbox).
        `state_known`: the sender's dialogue flag still holds (no message of theirs was handled
        since it was read); `facts_known` (by default the same): their household and appeal
        flags still hold (nothing at all was written since)."""
        if facts_known is None:
            facts_known = state_known
        ctx = Ctx(cfg=self.x.cfg, vault=self.x.vault, openid=msg.openid,
                  now=datetime.now(self.x.cfg.tz), session=lambda: scope.session,
                  user=lambda: scope.session.get_one(WechatUser, sender.user_id),
                  route=route,
                  # the sender was read with its dialogue flag: outside one, nothing to read
                  in_dialogue=False if state_known and not sender.in_dialogue else None,
                  gateway=self.x.gateway,
                  has_household=sender.has_household if facts_known else None,
                  may_appeal=sender.may_appeal if facts_known else None)
        return _passive_texts(scope, msg.openid, router.handle(ctx, msg))

    def handle_batch(self, items: list["_Queued"]) -> None:
        """Messages taken together by the line: one transaction, one commit. If the batch as a
        whole fails (another process touched the same rows, a database error), each message is
        handled again on its own. On SQLite a batch reads before it takes the write lock; if
        what it read went out of date before a message wrote (Stale), it is handled again
        holding the lock from the start."""
        try:
            try:
                results, answered, refused, enqueued = self._batch(items)
            except Stale:
                results, answered, refused, enqueued = self._batch(items, read_first=False)
        except Exception as exc:
            if not isinstance(exc, Conflict):
                log.error("batch of %d failed; handling them one by one", len(items),
                          exc_info=True)
            for item in items:
                try:
                    item.future.set_result(self._process(item.msg, item.route, item.ticket))
                except Replayed as refused:
                    item.future.set_exception(refused)
            return
        if enqueued:
            self.x.waker.wake()
        for item, texts in results:
            item.future.set_result(texts)
        for item in answered:
            item.future.set_result(self._cached_reply(item.msg, item.ticket))
        for item in refused:
            with item.ticket.lock:
                item.ticket.committing = True
            item.future.set_exception(Replayed())

    def _batch(self, items: list["_Queued"], read_first: bool = True):
        results: list[tuple[_Queued, list[str]]] = []
        answered: list[_Queued] = []
        refused: list[_Queued] = []  # signed queries used before with another message
        with self.inbox.batch(read_first) as batch:
            openids = list(dict.fromkeys(item.msg.openid for item in items))
            queries = [item.ticket.query[0] for item in items if item.ticket.query]
            senders, seen = batch.senders(openids, [item.msg.key for item in items], queries)
            owners = batch.query_owners
            remember: list[tuple[str, str, datetime]] = []
            handled: dict[str, tuple[list[str], bool]] = {}  # key → texts, stored
            done: list[tuple[_Queued, Sender, list[str], bool]] = []
            users_seen: set[str] = set()
            for item in items:
                msg, query = item.msg, item.ticket.query
                if query is not None:
                    owner = owners.get(query[0])
                    if owner is None:
                        owners[query[0]] = msg.key
                        remember.append((query[0], msg.key, query[1]))
                    elif owner != msg.key:
                        refused.append(item)
                        continue
                if msg.key in seen:
                    answered.append(item)
                    continue
                if msg.key in handled:  # two copies of one message in the same batch
                    results.append((item, handled[msg.key][0]))
                    continue
                sender = senders.get(msg.openid)
                if sender is None:
                    sender = senders[msg.openid] = batch.new_user(msg.openid)
                scope = batch.message()
                first = msg.openid not in users_seen
                users_seen.add(msg.openid)
                # what was read with the senders about households and claims holds until a
                # message of the batch writes anything (it might be a rejection or a link)
                facts_known = first and not batch.wrote
                try:
                    if first and _may_have_held(sender):
                        batch.woke_held |= outbox.wake(scope.session, msg.openid) > 0
                    # a second message of the same user in this batch reads the state the
                    # first one left
                    texts = self._route(msg, item.route, sender, scope, state_known=first,
                                        facts_known=facts_known)
                    scope.flush()
                    ok = True
                except Stale:
                    raise
                except Exception:
                    scope.undo()
                    log.error("handling failed key=%s openid=%s", msg.key, _short(msg.openid),
                              exc_info=True)
                    texts, ok = [render("internal_error")], False
                finally:
                    scope.close()
                if batch.stale:  # raised in a handler that went on regardless
                    raise Stale()
                handled[msg.key] = (texts, ok)
                done.append((item, sender, texts, ok))
            stored, touched = [], set()
            for item, sender, texts, ok in done:
                msg, ticket = item.msg, item.ticket
                with ticket.lock:
                    if ticket.late and ok:
                        for t in texts:
                            outbox.send_text(batch.session, msg.openid, t)
                    ticket.committing = True
                if ok:  # a failed message stores nothing: a retry is handled afresh
                    stored.append(Stored(sender, msg.openid, msg.key, msg.kind, texts))
                    touched.add(sender.user_id)
                results.append((item, texts))
            enqueued = batch.finish(stored, touched, remember)
        return results, answered, refused, enqueued

    def _cached_reply(self, msg: Incoming, ticket: _Ticket, remember: bool = False) -> list[str]:
        """A retry: the first delivery's reply, once it is committed (or `success`). With
        `remember`, its signed query is stored first (Replayed if another message has it)."""
        with ticket.lock:
            ticket.committing = True
        if remember and ticket.query is not None:
            remember_query(self.x.db, ticket.query, msg.key)
        with self.x.db.session() as s:
            row = s.scalar(select(InboundMessage).where(InboundMessage.dedupe_key == msg.key))
            if row is not None and row.done:
                return list(row.reply or [])
        return []


def check_mode(cfg) -> None:
    """Plain mode is refused on a production server unless WECHAT_ALLOW_PLAIN is true."""
    if plain_mode_refused(cfg):
        raise ConfigError(
            "HUZHU_WECHAT_AES_KEY: plain mode (no EncodingAESKey) is refused on a production "
            "server: set the official account to safe mode (安全模式) and its EncodingAESKey here, "
            "or HUZHU_WECHAT_ALLOW_PLAIN=true")


def describe_mode(cfg) -> tuple[int, str]:
    """What `huzhu serve` says at start about the webhook's mode: (log level, line)."""
    if cfg.safe_mode:
        return logging.INFO, "webhook in safe mode (安全模式): messages encrypted and signed"
    if cfg.production:
        return logging.WARNING, ("webhook in PLAIN mode on a production server "
                                 "(HUZHU_WECHAT_ALLOW_PLAIN=true): messages are not encrypted "
                                 "and their bodies not signed; prefer safe mode")
    if cfg.WECHAT_API_BASE.rstrip("/") == REAL_WECHAT_API:  # with the demo token
        return logging.WARNING, ("webhook in plain mode with the public demo token: anyone can "
                                 "sign messages; set HUZHU_WECHAT_TOKEN and safe mode before "
                                 "serving a real official account")
    return logging.INFO, "webhook in plain mode against the emulator (trying out, tests)"


class _Outcome:
    """A queued message's outcome, handed from the line to the request thread that waits for
    it: one lock, held until the outcome is there (a Future takes a condition, a lock made for
    each wait and a wake-up of every waiter: an eighth of the interpreter time a message
    spent waiting and handing over, py-spy). `result` as a Future's."""

    __slots__ = ("_ready", "_value", "_error", "_done")

    def __init__(self):
        self._ready = threading.Lock()
        self._ready.acquire()
        self._value: list[str] | None = None
        self._error: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, value: list[str]) -> None:
        self._value, self._done = value, True
        self._ready.release()

    def set_exception(self, error: BaseException) -> None:
        self._error, self._done = error, True
        self._ready.release()

    def result(self, timeout: float | None = None) -> list[str]:
        if not self._ready.acquire(timeout=-1 if timeout is None else timeout):
            raise FutureTimeout()
        self._ready.release()  # open for good: a second wait (after a timeout) passes too
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class _Queued:
    msg: Incoming
    route: router.Route
    ticket: _Ticket
    future: _Outcome = field(default_factory=_Outcome)


class _Line:
    """The one thread that handles villagers' messages, taking whatever has queued up as one
    batch. In one process the interpreter runs one thread at a time anyway, and SQLite one
    writer; handling messages side by side in many threads only made them wait for each
    other at every database call. Started on the first message; ends after a minute with
    nothing to do and starts again with the next.

    A batch costs the same few statements and round trips whatever its size. When the line
    finds messages already waiting as it ends a batch, it is behind: more are being read and
    parsed by the request threads, and would each wait for the whole next batch anyway. So it
    waits LINGER_SECONDS before it takes them, and they make one batch instead of two. A
    message that finds the line idle (or just started) is handled at once. bench/webhook.py,
    gunicorn -w 2, 32 connections: about 5 messages a batch without the wait, 9-10 with it;
    PostgreSQL's processor time a message 56-60 → 42-47 µs; ratio to the echo app (3 rounds
    of 8 s, medians) SQLite plain 0.68 → 0.74, safe 0.62 → 0.72, PostgreSQL plain 0.60 →
    0.69, safe 0.69 → 0.70. A longer wait (4 ms) left the processors idle.
    """

    MAX_BATCH = 64
    IDLE_SECONDS = 60.0
    LINGER_SECONDS = 0.002

    def __init__(self, handle: Callable[[list[_Queued]], None]):
        self.handle = handle
        self.queue: SimpleQueue[_Queued] = SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, msg: Incoming, route: router.Route, ticket: _Ticket) -> _Outcome:
        item = _Queued(msg, route, ticket)
        self.queue.put(item)
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="huzhu-line", daemon=True).start()
        return item.future

    def _take(self, items: list[_Queued]) -> None:
        """Whatever has queued up, added to `items` (up to MAX_BATCH)."""
        while len(items) < self.MAX_BATCH:
            try:
                items.append(self.queue.get_nowait())
            except Empty:
                return

    def _run(self) -> None:
        handled = False  # a batch was just handled (not: the line just started)
        while True:
            # a message already waiting as a batch ended: the line is behind
            behind = handled and not self.queue.empty()
            try:
                first = self.queue.get(timeout=self.IDLE_SECONDS)
            except Empty:
                with self._lock:
                    if self.queue.empty():
                        self._running = False
                        return
                continue
            items = [first]
            self._take(items)
            if behind and len(items) < self.MAX_BATCH:
                time.sleep(self.LINGER_SECONDS)
                self._take(items)
            try:
                self.handle(items)
            except BaseException as exc:  # never leave a request waiting for ever
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
            handled = True


def _passive_texts(unit, openid: str, replies: list[Reply]) -> list[str]:
    """Texts go in the passive reply (overflow and images through the outbox)."""
    texts: list[str] = []
    size = 0
    for r in replies:
        if r.image_path:
            outbox.enqueue(unit.session, "wechat.send", {"openid": openid,
                                                    "message": {"type": "image",
                                                                "path": r.image_path}})
        if r.text:
            n = len(r.text.encode()) + 2
            if size + n <= PASSIVE_LIMIT:
                texts.append(r.text)
                size += n
            else:
                outbox.send_text(unit.session, openid, r.text)
    return texts


def _may_have_held(sender: Sender) -> bool:
    """Whether messages may be held for this user. A message is held only while the 48-hour
    window is closed or its 5 pushes are used up, and every inbound message wakes what is held;
    so if the previous inbound message is within 48 hours and fewer than 5 pushes followed it,
    nothing can be held and the look-up is skipped."""
    last = sender.last_inbound_at
    return (last is None or utcnow() - last >= WINDOW
            or sender.pushes_since_inbound >= PUSHES_PER_INBOUND)


def _short(openid: str) -> str:
    return openid[:6] + "…" if len(openid) > 8 else openid


MAX_OPENID = 64  # characters (WeChat's openids have 28)
MAX_MSG_ID = 40  # characters (WeChat's MsgId is a 64-bit number)


def to_incoming(f: dict[str, str]) -> Incoming | None:
    """The message, or None if these fields are not one WeChat would send."""
    openid = f.get("FromUserName", "")
    msg_type = f.get("MsgType", "").lower()
    created = f.get("CreateTime", "")
    # CreateTime: seconds since 1970 in ASCII digits (not ² or ١٢, not 10^20 — an overflow)
    if (not openid or len(openid) > MAX_OPENID or not msg_type or len(msg_type) > 32
            or not created.isascii() or not created.isdigit() or len(created) > 10):
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
    # the sender and the MsgId: another sender's message with the same MsgId is another message
    msg_id = f.get("MsgId") or f"@{created}"
    if len(msg_id) > MAX_MSG_ID:
        return None
    key = f"msg:{openid}:{msg_id}"
    if msg_type == "text":
        return Incoming(openid, "text", text=f.get("Content", ""), key=key, received_at=received)
    if msg_type == "voice":
        return Incoming(openid, "voice", text=f.get("Recognition", ""), media_id=f.get("MediaId"),
                        key=key, received_at=received)
    if msg_type == "image":
        return Incoming(openid, "image", media_id=f.get("MediaId"), pic_url=f.get("PicUrl"),
                        key=key, received_at=received)
    return Incoming(openid, "other", key=key, received_at=received)

"""The database side of inbound messages, on the driver's own connection.

Every message costs the same few statements, so they are written here in the dialect's SQL
instead of going through the ORM, with the values passed through the same SQLAlchemy type
processors the ORM uses (the rows are the ones the ORM would write):

- `Batch`: the messages the webhook's line has taken together, in one transaction — one read
  for all their senders (with whether each is in a dialogue) and for which of their dedupe keys
  were answered before, one write for all the users' last inbound time and one for all the
  dedupe rows (on PostgreSQL the two writes are one statement), one commit — on PostgreSQL the
  transaction is begun by the batch's first write, so a batch that only read commits its one
  write alone, without BEGIN and COMMIT (`Batch.begin`). On SQLite the batch reads first and
  takes the write lock (the `.writer` file lock the processes queue on, then SQLite's own) only
  for its writes: the other web process's line reads and routes its own batch meanwhile, where
  holding the lock from the start made the two lines take turns. A batch in which a message
  writes after another process committed since the batch began reading is handled again,
  holding the lock from its start (`Stale`); one that writes only its bookkeeping writes it in
  a fresh transaction. Each message's
  handler gets an ORM session of its own (`MessageScope`); its first write sets a SAVEPOINT, so
  a message that fails is undone alone. On PostgreSQL a batch in which no message wrote
  anything of its own and nothing went to the outbox commits with `synchronous_commit` off:
  only the bookkeeping of read-only messages could be lost, and only if the database stopped
  within a fraction of a second (WeChat's retry is then answered afresh).
- `MessageUnit`: one message in one transaction (administrator commands, and the messages of a
  batch that failed as a whole): one read for the sender and whether the message was answered
  before, and at the end the same two writes. Its ORM session is opened only when a handler
  asks for it.

The unique dedupe key settles two copies of one message handled at the same moment: the
loser's INSERT fails and its transaction is rolled back.

Without Redis, the signed query string each message came with (bot/web/nonces.py) is read
with the senders and written with the dedupe rows, in the same statements on PostgreSQL: no
round trip of its own. A query already stored with another message refuses that message
(`Replayed`); two processes storing the same query at once settle it on its primary key.
"""
from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.web.nonces import Replayed
from core.db import READ_FIRST
from core.crypto import scrub_phones
from core.models import (ClaimStatus, InboundMessage, OutboxMessage, WebhookNonce, WechatUser,
                         utcnow)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from core.db import Database


_OUTBOX_ADDED = "huzhu.outbox_added"
_BATCH = "huzhu.batch"


class _MessageSession(Session):
    """The ORM session of a message or a batch: it remembers whether a flush wrote outbox rows,
    so the worker is woken after the commit. Only these sessions carry the listener; the
    application's other sessions are left as they are."""


@event.listens_for(_MessageSession, "before_flush")
def _before_flush(session: Session, _context, _instances) -> None:
    if not session.info.get(_OUTBOX_ADDED) and any(
            isinstance(o, OutboxMessage) for o in session.new):
        session.info[_OUTBOX_ADDED] = True


# a SELECT that takes locks (FOR UPDATE, FOR SHARE, …, an advisory lock for the transaction)
# must run inside the batch's transaction: it counts as a write
_LOCKING = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+|KEY\s+)?(?:UPDATE|SHARE)\b|pg_advisory",
                      re.IGNORECASE)


def _before_cursor_execute(conn, _cursor, statement, _parameters, _context, _executemany):
    """Every statement SQLAlchemy sends on the line's connection passes here — ORM flushes,
    ORM or Core DML, `text()`, bulk inserts, `session.connection()` — so any that is not a
    plain SELECT (or takes locks) counts as a write of the message in hand: the batch's
    transaction is begun if it was not (PostgreSQL), its SAVEPOINT is set first, and the
    batch commits durably. (The batch's own statements go through the driver's cursor.)"""
    batch = conn.info.get(_BATCH)
    if batch is not None and (statement.lstrip()[:6].upper() != "SELECT"
                              or _LOCKING.search(statement)):
        batch.before_write()


def cached(texts: list) -> list:
    """The reply as kept for WeChat's retries (and deleted after RETENTION_DAYS): phone numbers
    masked — the sign-up summary shows the one given, in full, to the sender only."""
    return [scrub_phones(t) if isinstance(t, str) else t for t in texts]


class Answered(Exception):
    """This message was answered before (a retry), or is being answered right now by another
    copy that got its dedupe row in first."""


# a signed query to remember: (`<timestamp>:<nonce>`, when it expires)
Query = tuple[str, datetime]


def remember_query(db: "Database", query: Query, key: str) -> None:
    """Store the query with this message in a transaction of its own (a retry answered from
    the cache); Replayed if it was stored with another message."""
    from sqlalchemy.exc import IntegrityError

    for _ in range(3):
        try:
            with db.session() as s:
                row = s.get(WebhookNonce, query[0])
                if row is None:
                    s.add(WebhookNonce(nonce=query[0], dedupe_key=key, expires_at=query[1]))
                elif row.dedupe_key != key:
                    raise Replayed()
            return
        except IntegrityError:  # stored by another process meanwhile: read it
            continue


@dataclass(frozen=True)
class Sender:
    """The user as the first statement read them."""
    user_id: int
    last_inbound_at: datetime | None  # UTC
    pushes_since_inbound: int
    in_dialogue: bool
    # read with the user (None: not read, a user created just now): whether they act for a
    # household, and whether one of their households has a rejected claim not appealed yet
    # — a text nothing else understands is then asked about as an appeal (handlers/appeal.py)
    has_household: bool | None = None
    may_appeal: bool | None = None


# the sender's facts read with the user's row (u: wechat_user), for Sender's last two fields
_FACTS = (
    "EXISTS (SELECT 1 FROM household_link l WHERE l.openid = u.openid), "
    "EXISTS (SELECT 1 FROM household_link l JOIN claim c ON c.household_id = l.household_id "
    f"WHERE l.openid = u.openid AND c.status = '{ClaimStatus.rejected.value}' "
    "AND c.appealed_at IS NULL)")


# PostgreSQL: the texts of a JSON array given as one parameter, as an array
_JSON_TEXTS = "ARRAY(SELECT json_array_elements_text(CAST(%s AS JSON)))"


def _flag(value) -> bool | None:
    return None if value is None else bool(value)


class _Sql:
    """The statements of one dialect, with the ORM's own value processors."""

    def __init__(self, dialect):
        self.postgres = dialect.name == "postgresql"
        p = "%s" if self.postgres else "?"

        def bind(column):
            return column.type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)

        def result(column):
            return (column.type.dialect_impl(dialect).result_processor(dialect, None)
                    or (lambda v: v))

        u, m = WechatUser.__table__.c, InboundMessage.__table__.c
        self.bind_time = bind(u.last_inbound_at)
        self.read_time = result(u.last_inbound_at)
        self.bind_reply = bind(m.reply)
        self.bind_bool = bind(m.done)
        self.load = (
            "SELECT u.id, u.last_inbound_at, u.pushes_since_inbound, d.openid IS NOT NULL, "
            f"EXISTS (SELECT 1 FROM inbound_message WHERE dedupe_key = {p}), "
            f"(SELECT dedupe_key FROM webhook_nonce WHERE nonce = {p}), {_FACTS} "
            "FROM wechat_user u LEFT OUTER JOIN dialogue_state d ON d.openid = u.openid "
            f"WHERE u.openid = {p}")
        new_user = ("INSERT INTO wechat_user (openid, subscribed, pushes_since_inbound, created_at) "
                    f"VALUES ({p}, {p}, 0, {p})")
        # on PostgreSQL another request may be creating the same user at this moment: the
        # INSERT waits for it and then does nothing (no id back), and the user is read again
        self.new_user = (new_user + " ON CONFLICT (openid) DO NOTHING RETURNING id"
                         if self.postgres else new_user)
        touch = ("UPDATE wechat_user SET last_inbound_at = {p}, pushes_since_inbound = 0 "
                 "WHERE id = {p}").format(p=p)
        inbound = ("INSERT INTO inbound_message (dedupe_key, openid, msg_type, received_at, done, "
                   "reply) VALUES ({p}, {p}, {p}, {p}, {p}, {p})").format(p=p)
        self.query_owner = f"SELECT dedupe_key FROM webhook_nonce WHERE nonce = {p}"
        remember = ("INSERT INTO webhook_nonce (nonce, dedupe_key, expires_at) "
                    "VALUES ({p}, {p}, {p})").format(p=p)
        # PostgreSQL: one round trip for both writes (three with the query)
        self.finish = ([f"WITH touched AS ({touch}) {inbound}"] if self.postgres
                       else [touch, inbound])
        self.finish_remember = (
            [f"WITH touched AS ({touch}), remembered AS ({remember}) {inbound}"] if self.postgres
            else [touch, inbound, remember])


class MessageUnit:
    """One inbound message's transaction (see the module's docstring)."""

    def __init__(self, conn: "Connection", sql: _Sql, integrity_error: type[Exception]):
        self.conn = conn
        self.sql = sql
        self._integrity_error = integrity_error
        self._cursor = conn.connection.driver_connection.cursor()
        self._session: Session | None = None
        self.woke_held = False  # messages held for the sender were made due
        self._query: Query | None = None  # a signed query to store with the dedupe row

    @property
    def session(self) -> Session:
        """The ORM session of this transaction, opened on first use."""
        if self._session is None:
            self._session = _MessageSession(bind=self.conn, expire_on_commit=False)
        return self._session

    def sender(self, openid: str, key: str, query: Query | None = None) -> Sender:
        """The user (created on their first message); Answered if this message was answered
        before, Replayed if its signed query came before with another message. A user who is
        not there yet cannot have sent a message already answered: the user is created in that
        message's transaction."""
        cur, sql = self._cursor, self.sql
        for _ in range(2):
            cur.execute(sql.load, (key, query[0] if query else None, openid))
            row = cur.fetchone()
            if row is not None:
                if row[5] is not None and row[5] != key:
                    raise Replayed()
                if query is not None and row[5] is None:
                    self._query = query
                if row[4]:
                    raise Answered()
                last = row[1]
                if last is not None and not isinstance(last, datetime):
                    last = sql.read_time(last)
                return Sender(row[0], _utc(last), row[2] or 0, bool(row[3]), _flag(row[6]),
                              _flag(row[7]))
            if query is not None:  # a new user: a query stored before is another message's
                cur.execute(sql.query_owner, (query[0],))
                if cur.fetchone() is not None:
                    raise Replayed()
                self._query = query
            cur.execute(sql.new_user, (openid, sql.bind_bool(True), sql.bind_time(utcnow())))
            if not sql.postgres:
                return Sender(cur.lastrowid, None, 0, False)
            created = cur.fetchone()
            if created is not None:
                return Sender(created[0], None, 0, False)
        raise RuntimeError("the user could not be read or created")

    def user(self, sender: Sender) -> WechatUser:
        return self.session.get_one(WechatUser, sender.user_id)

    def finish(self, sender: Sender, openid: str, key: str, kind: str, texts: list[str]) -> bool:
        """Write what the dialogue changed, the user's last inbound time and the dedupe row with
        the reply; Answered if another copy of the message stored its row first. Returns
        whether the message put anything in the outbox."""
        enqueued = self.woke_held
        if self._session is not None:
            self._session.flush()
            enqueued = enqueued or bool(self._session.info.get(_OUTBOX_ADDED))
        sql, now = self.sql, utcnow()
        touch = (sql.bind_time(now), sender.user_id)
        inbound = (key, openid, kind, sql.bind_time(now), sql.bind_bool(True),
                   sql.bind_reply(cached(texts)))
        q = self._query
        try:
            if q is not None:
                remember = (q[0], key, sql.bind_time(q[1]))
                if sql.postgres:
                    self._cursor.execute(sql.finish_remember[0], touch + remember + inbound)
                else:
                    for statement, params in zip(sql.finish_remember, (touch, inbound, remember)):
                        self._cursor.execute(statement, params)
            elif sql.postgres:
                self._cursor.execute(sql.finish[0], touch + inbound)
            else:
                self._cursor.execute(sql.finish[0], touch)
                self._cursor.execute(sql.finish[1], inbound)
        except self._integrity_error:
            raise Answered() from None
        return enqueued

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._cursor.close()


def _utc(value: datetime | None) -> datetime | None:
    from core.outbox import as_utc

    return as_utc(value) if value is not None else None


# -- several messages in one transaction ------------------------------------------------------

class Conflict(Exception):
    """The batch met another process's work on the same rows; handle its messages one by one."""


class Stale(Exception):
    """SQLite: a message of a batch that began by reading went to write after another process
    had committed; what the batch read may be out of date, so it is handled again, holding
    the write lock from its start."""


# SQLite: takes the write lock for a transaction that so far only read, writing nothing. It
# fails at once, without waiting, with SQLITE_BUSY_SNAPSHOT if another connection committed
# since it began reading, and with SQLITE_BUSY if another holds the write lock (a checkpoint
# that truncates the log takes it without the `.writer` lock)
_TAKE_WRITE_LOCK = "UPDATE wechat_user SET id = id WHERE 0"
_SQLITE_BUSY = 5  # the primary code of both


class _BatchSql:
    """A batch's statements: one read for all senders and dedupe keys, one write for all users'
    last inbound time and one for all dedupe rows, whatever the batch's size. The lists travel
    as one JSON parameter each (SQLite's json_each, PostgreSQL's json_array_elements_text and
    json_to_recordset), so the statements never change; on SQLite each read comes back as a
    single row."""

    def __init__(self, dialect):
        self.postgres = dialect.name == "postgresql"
        serializer = getattr(dialect, "_json_serializer", None)
        # Chinese as it is, not as \\u escapes: the replies' JSON is encoded faster, travels
        # and is stored in half the bytes, and reads back the same
        self.dumps = serializer or functools.partial(json.dumps, ensure_ascii=False)
        if self.postgres:
            # one round trip: the senders' rows, then one row per key answered before
            # (and one row per signed query stored before). The lists travel as one JSON
            # text each, not as arrays: psycopg writes an array element by element in Python
            # (with a regular expression per text), which took a sixth of a web process's
            # interpreter time under load; `ARRAY(SELECT …)` keeps the plan of `= ANY(array)`
            # (an index look-up per element).
            self.senders = (
                "SELECT u.openid, u.id, u.last_inbound_at, u.pushes_since_inbound, "
                f"d.openid IS NOT NULL, {_FACTS}, CAST(NULL AS TEXT), CAST(NULL AS TEXT) "
                "FROM wechat_user u "
                "LEFT OUTER JOIN dialogue_state d ON d.openid = u.openid "
                f"WHERE u.openid = ANY({_JSON_TEXTS}) "
                "UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, dedupe_key, NULL "
                f"FROM inbound_message WHERE dedupe_key = ANY({_JSON_TEXTS}) "
                "UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, dedupe_key, nonce "
                f"FROM webhook_nonce WHERE nonce = ANY({_JSON_TEXTS})")
            self.finish = (
                "WITH touched AS (UPDATE wechat_user SET last_inbound_at = %s, "
                "pushes_since_inbound = 0 WHERE id = ANY(ARRAY(SELECT CAST(value AS BIGINT) "
                "FROM json_array_elements_text(CAST(%s AS JSON))))), "
                "remembered AS (INSERT INTO webhook_nonce (nonce, dedupe_key, expires_at) "
                "SELECT n, k, e FROM json_to_recordset(CAST(%s AS JSON)) "
                "AS y(n TEXT, k TEXT, e TIMESTAMPTZ)) "
                "INSERT INTO inbound_message (dedupe_key, openid, msg_type, received_at, done, reply) "
                "SELECT k, o, t, %s, true, r "
                "FROM json_to_recordset(CAST(%s AS JSON)) AS x(k TEXT, o TEXT, t TEXT, r JSON) "
                # the commit's durability, set for this transaction in the same round trip
                # (SET LOCAL would be one more): 'off', or NULL for the server's own setting
                "WHERE (SELECT set_config('synchronous_commit', "
                "COALESCE(CAST(%s AS TEXT), current_setting('synchronous_commit')), true)) "
                "IS NOT NULL")
        else:
            self.senders = (
                "SELECT (SELECT json_group_array(json_array(u.openid, u.id, u.last_inbound_at, "
                f"u.pushes_since_inbound, d.openid IS NOT NULL, {_FACTS})) FROM wechat_user u "
                "LEFT OUTER JOIN dialogue_state d ON d.openid = u.openid "
                "WHERE u.openid IN (SELECT value FROM json_each(?))), "
                "(SELECT json_group_array(dedupe_key) FROM inbound_message "
                "WHERE dedupe_key IN (SELECT value FROM json_each(?))), "
                "(SELECT json_group_array(json_array(nonce, dedupe_key)) FROM webhook_nonce "
                "WHERE nonce IN (SELECT value FROM json_each(?)))")
            self.touch = ("UPDATE wechat_user SET last_inbound_at = ?, pushes_since_inbound = 0 "
                          "WHERE id IN (SELECT value FROM json_each(?))")
            self.inbound = (
                "INSERT INTO inbound_message (dedupe_key, openid, msg_type, received_at, done, "
                "reply) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]'), ?, ?, json_extract(value, '$[3]') "
                "FROM json_each(?)")
            self.remember = (
                "INSERT INTO webhook_nonce (nonce, dedupe_key, expires_at) "
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]') FROM json_each(?)")


@dataclass(frozen=True)
class Stored:
    """One message's dedupe row, written when the batch ends."""
    sender: Sender
    openid: str
    key: str
    kind: str
    texts: list[str]


class Batch:
    """Several messages handled one after the other in one transaction: a read for all of them
    at the start, a write for all of them at the end, one commit. Each message's handler has a
    session of its own whose writes follow a SAVEPOINT (MessageScope), so a handler that fails
    undoes only its own message."""

    def __init__(self, conn: "Connection", sql: _Sql, bsql: _BatchSql,
                 integrity_error: type[Exception], writer=None):
        self.conn = conn
        self.sql = sql
        self.bsql = bsql
        self.integrity_error = integrity_error
        self.cursor = self._cursor = conn.connection.driver_connection.cursor()
        self._session: Session | None = None
        self._messages = 0
        self.woke_held = False
        self.outbox_added = False
        self.wrote = False  # something besides the batch's own bookkeeping was written
        self.current: "MessageScope | None" = None  # the message being handled
        self.query_owners: dict[str, str] = {}  # signed query → the dedupe key stored with it
        # PostgreSQL: the connection runs in autocommit, and the batch's transaction is begun
        # by its first write (see Inbox.batch)
        self._deferred = bsql.postgres and conn.connection.driver_connection.autocommit
        # SQLite, reading first: the write lock to take before the first write (Inbox.batch)
        self._writer = writer
        self._writer_held = False
        self.stale = False  # Stale was raised: the batch is handled again, whatever caught it

    @property
    def session(self) -> Session:
        """A session of the batch's own (the late replies' outbox rows)."""
        if self._session is None:
            self._session = _MessageSession(bind=self.conn, expire_on_commit=False)
        return self._session

    def senders(self, openids: list[str], keys: list[str],
                queries: list[str] = ()) -> tuple[dict[str, Sender], set[str]]:
        """The senders already known, by openid, and the keys answered before; the signed
        queries stored before go to `query_owners`."""
        cur, sql, b = self._cursor, self.sql, self.bsql
        owners = self.query_owners
        if b.postgres:
            dumps = b.dumps
            cur.execute(b.senders, (dumps(openids), dumps(keys), dumps(list(queries))),
                        prepare=True)
            rows, seen = [], set()
            for row in cur.fetchall():
                if row[8] is not None:
                    owners[row[8]] = row[7]
                elif row[7] is not None:
                    seen.add(row[7])
                else:
                    rows.append(row[:7])
        else:
            cur.execute(b.senders, (json.dumps(openids), json.dumps(keys),
                                    json.dumps(list(queries))))
            users_json, seen_json, owners_json = cur.fetchone()
            rows = json.loads(users_json)
            seen = set(json.loads(seen_json))
            owners.update((q, k) for q, k in json.loads(owners_json))
        found = {}
        for openid, user_id, last, pushes, in_dialogue, households, appeal in rows:
            if last is not None and not isinstance(last, datetime):
                last = sql.read_time(last)
            found[openid] = Sender(user_id, _utc(last), pushes or 0, bool(in_dialogue),
                                   _flag(households), _flag(appeal))
        return found, seen

    def begin(self) -> None:
        """Before the batch's first write: its transaction begun (PostgreSQL), or on SQLite
        reading first, the write lock taken for the transaction that read (Stale if another
        process committed since). A no-op once done."""
        if self._deferred and self.conn.connection.driver_connection.info.transaction_status \
                == _IDLE:
            self._cursor.execute("BEGIN")
        elif self._writer is not None and not self._writer_held:
            self._take_writer(keep_reads=True)

    def _take_writer(self, keep_reads: bool) -> None:
        """SQLite: wait for the other processes' writes (the `.writer` lock), then take the
        write lock for this transaction. If that cannot be (another process committed since it
        began reading, or holds SQLite's lock): with `keep_reads`, Stale; without (only the
        batch's bookkeeping is left to write, which depends on nothing read), the write lock in
        a fresh transaction, waiting for it as every writer does."""
        self._writer.__enter__()
        self._writer_held = True
        try:
            self._cursor.execute(_TAKE_WRITE_LOCK)
        except Exception as exc:
            if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF != _SQLITE_BUSY:
                raise
            if keep_reads:
                self.stale = True
                raise Stale() from None
            self._cursor.execute("ROLLBACK")
            self._cursor.execute("BEGIN IMMEDIATE")

    def release_writer(self) -> None:
        """After the commit (or the rollback): the other processes may write."""
        if self._writer_held:
            self._writer_held = False
            self._writer.__exit__(None, None, None)

    def new_user(self, openid: str) -> Sender:
        sql = self.sql
        self.begin()
        self._cursor.execute(sql.new_user, (openid, sql.bind_bool(True), sql.bind_time(utcnow())))
        if not sql.postgres:
            return Sender(self._cursor.lastrowid, None, 0, False)
        created = self._cursor.fetchone()
        if created is None:  # another process created them a moment ago
            raise Conflict()
        return Sender(created[0], None, 0, False)

    def message(self) -> "MessageScope":
        self._messages += 1
        self.current = MessageScope(self, self._messages)
        return self.current

    def before_write(self) -> None:
        """A statement other than a SELECT is about to run for a message (or for the late
        replies): the batch's transaction begun, and the message's SAVEPOINT first."""
        self.begin()
        self.wrote = True
        if self.current is not None:
            self.current.before_write()

    def finish(self, stored: list[Stored], touched: set[int],
               remember: list[tuple[str, str, datetime]] = ()) -> bool:
        """Write the users' last inbound time, the dedupe rows and the signed queries to
        remember (query, dedupe key, expiry); returns whether anything was put in the outbox.
        A dedupe key or a query stored meanwhile by another process: Conflict."""
        enqueued = self.woke_held or self.outbox_added
        if self._session is not None:
            self._session.flush()
            enqueued = enqueued or bool(self._session.info.get(_OUTBOX_ADDED))
        if self._writer is not None and not self._writer_held:
            self._take_writer(keep_reads=False)
        sql, b, now = self.sql, self.bsql, utcnow()
        try:
            if b.postgres:
                # Only the messages' own bookkeeping (dedupe rows with their replies, last
                # inbound times, new users) and nothing sent: the commit need not wait for the
                # disk, as SQLite's `synchronous=NORMAL` does not. PostgreSQL stopping in the
                # next fraction of a second could lose it; then WeChat's retry is answered
                # afresh, with the same answer. Any other change keeps the durable commit.
                lazy = None if (self.wrote or enqueued) else "off"
                dumps = b.dumps
                self._cursor.execute(b.finish, (
                    now, dumps(sorted(touched)),
                    dumps([{"n": q, "k": k, "e": e.isoformat()} for q, k, e in remember]),
                    now, dumps([{"k": s.key, "o": s.openid, "t": s.kind, "r": cached(s.texts)}
                                for s in stored]), lazy), prepare=True)
            else:
                stamp = sql.bind_time(now)
                self._cursor.execute(b.touch, (stamp, json.dumps(sorted(touched))))
                if stored:  # each reply is an array in the list: json_extract gives its text
                    self._cursor.execute(b.inbound, (stamp, sql.bind_bool(True), b.dumps(
                        [[s.key, s.openid, s.kind, cached(s.texts)] for s in stored])))
                if remember:
                    self._cursor.execute(b.remember, (json.dumps(
                        [[q, k, sql.bind_time(e)] for q, k, e in remember]),))
        except self.integrity_error:
            raise Conflict() from None
        return enqueued

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._cursor.close()


class MessageScope:
    """One message of a batch, with an ORM session of its own on the batch's connection. The
    first statement other than a SELECT sent for it on that connection (however it is sent)
    sets a SAVEPOINT first, so a message that fails is undone alone with `undo()`; a message
    that only reads costs no SAVEPOINT."""

    def __init__(self, batch: "Batch", number: int):
        self.batch = batch
        self.name = f"huzhu_message_{number}"
        self._session: Session | None = None
        self._savepoint = False

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = _MessageSession(bind=self.batch.conn, expire_on_commit=False)
        return self._session

    def before_write(self) -> None:
        if not self._savepoint:
            self.batch.cursor.execute(f"SAVEPOINT {self.name}")
            self._savepoint = True

    def flush(self) -> None:
        """Write what the handler left pending (a failure here fails the message)."""
        if self._session is not None:
            self._session.flush()
            if self._session.info.get(_OUTBOX_ADDED):
                self.batch.outbox_added = True

    def undo(self) -> None:
        """Undo everything this message wrote; its session's objects are dropped."""
        if self._savepoint:
            self.batch.cursor.execute(f"ROLLBACK TO SAVEPOINT {self.name}")
        if self._session is not None:
            self._session.info.pop(_OUTBOX_ADDED, None)

    def close(self) -> None:
        if self.batch.current is self:
            self.batch.current = None
        if self._session is not None:
            self._session.close()
            self._session = None


# psycopg prepares a statement after this many runs, or when asked to (`prepare=True`)
_ONLY_WHEN_ASKED = 2**62
_IDLE = 0  # libpq's PQTRANS_IDLE: no transaction open on the connection


def _give_back(conn: "Connection") -> None:
    """Close the line's connection for good: on PostgreSQL its prepared statements, and their
    plans, end with it (back in the pool, the next line would find them there)."""
    with contextlib.suppress(Exception):
        if getattr(conn.connection.driver_connection, "prepare_threshold",
                   None) == _ONLY_WHEN_ASKED:
            conn.invalidate()
    with contextlib.suppress(Exception):
        conn.close()


class Inbox:
    """Opens message units and batches on a Database."""

    REPLAN_SECONDS = 300.0

    def __init__(self, db: "Database"):
        self.db = db
        dialect = db.engine.dialect
        self.sql = _Sql(dialect)
        self.bsql = _BatchSql(dialect)
        self.integrity_error = dialect.loaded_dbapi.IntegrityError
        self._line_lock = threading.Lock()
        self._line_conn: "Connection | None" = None
        self._planned = 0.0  # when the line's prepared statements were last planned afresh

    @contextlib.contextmanager
    def batch(self, read_first: bool = True) -> Iterator["Batch"]:
        """Several messages' transaction: committed at the end, rolled back on any error. For
        the one thread that handles batches: its connection is kept from one batch to the next
        (no pool check-out and, on PostgreSQL, no ping each time) and dropped after any error
        (but Stale), so a broken one is replaced by the next batch.

        On SQLite with `read_first` the transaction begins deferred and the write lock is
        taken before the first write (Batch.begin, Batch.finish); without it, at the start.

        On PostgreSQL the batch's read and write are prepared statements on that connection:
        planning them took more of the server's time than running them (bench/webhook.py).
        PostgreSQL may settle on one plan for them, and keep it: chosen while the tables were
        small, a scan of each whole table. So the connection plans without sequential scans
        (below), and is replaced every REPLAN_SECONDS, its statements prepared and planned
        afresh on the new one (tests/test_webhook.py)."""
        read_first = read_first and not self.bsql.postgres
        writer = self.db.writing()
        with self._line_lock, (contextlib.nullcontext() if read_first else writer):
            conn = self._line_conn
            if (conn is not None and self.bsql.postgres
                    and time.monotonic() - self._planned > self.REPLAN_SECONDS):
                _give_back(conn)  # its prepared statements go with it
                conn = self._line_conn = None
            fresh = conn is None
            if fresh:
                conn = self._line_conn = self.db.engine.connect()
                event.listen(conn, "before_cursor_execute", _before_cursor_execute)
                if self.bsql.postgres:  # the engine prepares nothing; here, what asks to be
                    driver = conn.connection.driver_connection
                    driver.prepare_threshold = _ONLY_WHEN_ASKED
                    # No transaction until a message writes (Batch.begin): a batch of messages
                    # that only read — most of them — costs two round trips, its read and its
                    # write (one statement, atomic alone), not four with BEGIN and COMMIT.
                    if driver.info.transaction_status != _IDLE:
                        driver.rollback()
                    driver.autocommit = True
                    self._planned = time.monotonic()
            batch = None
            try:
                conn.info[READ_FIRST] = read_first  # for this BEGIN only (core/db.py)
                try:
                    transaction = conn.begin()
                finally:
                    conn.info.pop(READ_FIRST, None)
                with transaction:
                    if fresh and self.bsql.postgres:
                        # Everything read on this connection is looked up by key (senders,
                        # dedupe keys, a villager's own rows). A plan kept for a prepared
                        # statement is chosen once, for the tables' sizes then: on a new
                        # database, a scan of each whole table, kept as they grow (seen in
                        # bench/webhook.py: 20 million rows read in one minute). Without scans
                        # to choose, the kept plan is the index look-up at any size.
                        conn.connection.driver_connection.execute(
                            "SET enable_seqscan = off")
                    batch = Batch(conn, self.sql, self.bsql, self.integrity_error,
                                  writer if read_first else None)
                    conn.info[_BATCH] = batch
                    try:
                        yield batch
                    finally:
                        conn.info.pop(_BATCH, None)
                        batch.close()
            except Stale:
                raise  # rolled back; the connection is sound
            except BaseException:
                self._line_conn = None
                _give_back(conn)
                raise
            finally:
                if batch is not None:
                    batch.release_writer()

    def close(self) -> None:
        """Give back the kept connection (when the server stops)."""
        with self._line_lock:
            if self._line_conn is not None:
                _give_back(self._line_conn)
                self._line_conn = None

    @contextlib.contextmanager
    def unit(self) -> Iterator[MessageUnit]:
        """One message's transaction: committed at the end, rolled back on any error."""
        with self.db.connection() as conn:
            unit = MessageUnit(conn, self.sql, self.integrity_error)
            try:
                yield unit
            finally:
                unit.close()

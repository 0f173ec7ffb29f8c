"""Engine, sessions and schema migration."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger("huzhu.db")


# conn.info key: this SQLite connection's next transaction begins deferred (it reads first)
READ_FIRST = "huzhu.read_first"


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            from core.files import create_private, private_dir, private_sqlite

            if not Path(path).parent.exists():
                private_dir(Path(path).parent)
            private_sqlite(path)  # a file an older version made 0644
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        # pages of write-ahead log after which a commit copies the log into the database file
        # itself (SQLite's default: 1000); a process with a Checkpointer leaves that to it
        engine.info = {"wal_autocheckpoint": 1000}

        @event.listens_for(engine, "do_connect")
        def _sqlite_file(_dialect, _record, _cargs, _cparams):
            # the file made 0600 before SQLite makes it (it would use 0644 & ~umask), at the
            # first connection as before; SQLite gives its -wal and -shm the file's mode
            if path and path != ":memory:":
                create_private(path)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA wal_autocheckpoint={int(engine.info['wal_autocheckpoint'])}")
            cur.close()
            if path and path != ":memory:":
                private_sqlite(path)  # -wal and -shm exist now

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # take the write lock at the start: SQLite serialises writers, and a deferred
            # transaction that upgrades later can fail with "database is locked". A connection
            # marked READ_FIRST (the webhook's line, bot/web/inbox.py) begins deferred and
            # takes the write lock itself before its first write.
            conn.exec_driver_sql("BEGIN" if conn.info.get(READ_FIRST) else "BEGIN IMMEDIATE")

        return engine
    # No server-side prepared statements (psycopg prepares a query after its 5th run on a
    # connection): PostgreSQL may then keep one generic plan for it, chosen while the tables
    # were small — a sequential scan of inbound_message for every batch of messages, ever
    # slower as it grows, until the next ANALYZE. Planned each time, the dedupe-key index is used.
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                         connect_args={"prepare_threshold": None})


class Database:
    def __init__(self, url: str):
        import core.stats  # noqa: F401  (keeps household_tally with every flush)

        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time; threads of this process, and other processes on
        # the same file, queue here instead of polling the file lock (its busy handler sleeps
        # up to 100 ms between tries)
        self._writer = (writer_lock(self.engine.url.database)
                        if self.engine.dialect.name == "sqlite" else None)
        self._checkpointer: Checkpointer | None = None
        # where a migration that encrypts existing rows finds the secret key (a function, so
        # that no key is read or made unless a row needs it); set by the application context
        self.secret: "Callable[[], bytes] | None" = None

    def checkpoint_in_background(self, every: float = 0.2) -> "Checkpointer | None":
        """SQLite: copy the write-ahead log into the database file from a thread of its own,
        every `every` seconds, instead of in whichever commit crosses 1000 pages of log — that
        commit waited for the copy and its fsync (tens of milliseconds), and every message
        queued behind it. The commits still do it themselves past 10,000 pages (40 MB), should
        this thread fall behind. Under the webhook's full load (two web processes, about 3
        pages of log a message) the log grew by 10,000 pages in under a second, so at one copy
        a second the commits had copied it themselves, holding the writer lock 20-35 ms, and
        more often as the tables grew: p99 over five rounds of bench/webhook.py 15 → 34 ms at
        1 s, 14-17 ms throughout at 0.2 s. A copy with nothing to copy costs next to nothing.
        Stopped with stop_checkpointer()."""
        path = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return None
        if self._checkpointer is None:
            self.engine.info["wal_autocheckpoint"] = 10_000
            self.engine.dispose()  # pooled connections take the new setting
            self._checkpointer = Checkpointer(path, every)
            self._checkpointer.start()
        return self._checkpointer

    def stop_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed at the end, rolled back on any error."""
        with self._writer or contextlib.nullcontext():
            with self.sessions() as s:
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise

    def writing(self):
        """SQLite: this process's turn to write (its threads queue here rather than polling
        the file lock); elsewhere nothing."""
        return self._writer or contextlib.nullcontext()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """One transaction on a bare connection (no ORM session): committed at the end, rolled
        back on any error."""
        with self.writing():
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn

    def upgrade(self) -> None:
        upgrade(self.engine, self.secret)

    def dispose(self) -> None:
        self.engine.dispose()


class WriterLock:
    """SQLite's one writer, queued for: a lock of this process's threads (re-entrant) and, for a
    database file, a `flock` on `<file>.writer` that the processes on that file (gunicorn's
    web processes, `huzhu worker`) queue on. SQLite's own lock still decides who writes; this
    one only makes the others wait their turn: a process blocked in flock wakes the moment the
    holder lets go, where one in SQLite's busy handler sleeps 1, 2, 5 … up to 100 ms between
    tries and, under load, kept finding the other process's next transaction already begun
    (bench/webhook.py under gunicorn: replies of the slowest 1% took hundreds of ms)."""

    def __init__(self, path: str | None):
        self.path = f"{path}.writer" if path and path != ":memory:" else None
        self._thread = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._held = False

    def _file(self) -> int | None:
        if self._fd is None and self.path is not None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # a read-only folder: SQLite's lock alone
                log.warning("no writer lock file %s: %s", self.path, exc)
                self.path = None
        return self._fd

    def __enter__(self) -> "WriterLock":
        self._thread.acquire()
        if self._depth == 0:
            fd = self._file()
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    self._thread.release()
                    raise
                self._held = True
        self._depth += 1
        return self

    def __exit__(self, *_exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._held:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()

    def _forked(self) -> None:
        """In a child process: the inherited descriptor shares the parent's lock; open anew."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # the parent's lock stays with the parent's descriptor
        self._thread = threading.RLock()
        self._depth, self._held, self._fd = 0, False, None


_WRITERS: dict[str, WriterLock] = {}
_WRITERS_LOCK = threading.Lock()


def writer_lock(path: str | None) -> WriterLock:
    """The one WriterLock of this process for an SQLite database (every Database on the same
    file shares it, so a thread nesting two of them does not wait for itself)."""
    if not path or path == ":memory:":
        return WriterLock(None)
    key = os.path.realpath(path)
    with _WRITERS_LOCK:
        lock = _WRITERS.get(key)
        if lock is None:
            lock = _WRITERS[key] = WriterLock(path)
        return lock


def _after_fork() -> None:
    for lock in _WRITERS.values():
        lock._forked()


os.register_at_fork(after_in_child=_after_fork)


class Checkpointer(threading.Thread):
    """Copies an SQLite database's write-ahead log into the file, on a connection of its own.
    PASSIVE: it never waits for, nor blocks, readers and writers."""

    def __init__(self, path: str, every: float):
        super().__init__(name="huzhu-checkpoint", daemon=True)
        self.path, self.every = path, every
        self.copied = 0  # pages copied so far
        self._stopping = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        try:
            while not self._stopping.wait(self.every):
                try:
                    busy, _log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.copied += max(copied, 0)
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)


def alembic_config(engine: Engine, secret: "Callable[[], bytes] | None" = None):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    cfg.attributes["secret_key"] = secret
    return cfg


_REVISION_LINE = re.compile(r"^(revision|down_revision|depends_on)\s*(?::[^=]*)?=\s*(.+?)\s*$",
                            re.MULTILINE)
_QUOTED = re.compile(r"""['"]([^'"]+)['"]""")


@lru_cache(maxsize=1)
def script_heads() -> frozenset[str]:
    """The head revisions of the migration scripts, read from their `revision` and
    `down_revision` lines without importing Alembic (whose import, Mako and Pygments included,
    costs a command some 0.4 s at start). Plain text matching, not `ast`: CPython 3.11's AST
    constructor is not safe to call from two threads at once. Anything other than None, a
    quoted id or a tuple of them — or a `depends_on` — and Alembic decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {key: value for key, value in _REVISION_LINE.findall(path.read_text("utf-8"))}
        ids = {key: _QUOTED.findall(value) for key, value in found.items()}
        plain = ("revision" in found and len(ids["revision"]) == 1
                 and found.get("depends_on", "None") == "None"
                 and (found.get("down_revision", "None") == "None" or ids["down_revision"]))
        if not plain:
            from alembic.script import ScriptDirectory

            return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())
        revisions.update(ids["revision"])
        parents.update(ids.get("down_revision", ()))
    return frozenset(revisions - parents)


def upgrade(engine: Engine, secret: "Callable[[], bytes] | None" = None) -> None:
    """Bring the schema to the newest revision (every branch head). A database already there is
    left alone without starting Alembic's migration environment (a command's start-up cost)."""
    heads = script_heads()
    try:
        with engine.connect() as conn:
            current = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    except Exception:  # no schema yet (or no version table): migrate
        current = set()
    if current == heads:
        return
    from alembic import command

    command.upgrade(alembic_config(engine, secret), "heads")

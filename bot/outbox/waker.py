"""The outbox's doorbell: whoever commits outbox rows rings it, the worker's loop waits on it.

The app context is given one when it is made (bot/web/app.py `make_context`), so every adapter
reaches it the same way: `x.waker.wake()` after a commit that queued messages. Ringing with no
worker listening (a command line run, a test without one) does nothing; the worker then finds
the rows on its next look (OUTBOX_IDLE_SECONDS).

The bell reaches every worker, wherever it runs:
- in the same process (`huzhu serve`: the worker is a thread): directly;
- on the same host (gunicorn's processes, `huzhu worker`, the command line, on any database):
  each listening worker binds a Unix datagram socket `<DATA_DIR>/bell/<pid>-<random>.sock`
  (removed when it stops); `wake()` sends one byte to every socket there, without blocking.
  A full socket already has a ring waiting; a socket whose process died refuses the byte and is
  removed then (and by every worker as it starts listening). A few microseconds per ring;
- on other hosts (OUTBOX_BELL = "postgres", PostgreSQL only): also `NOTIFY huzhu_outbox`,
  sent by a thread of the ringing process on a connection of its own, so the request that rang
  never waits for the database; each worker LISTENs on a connection of its own and rings its
  own socket.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import select
import socket
import threading
from pathlib import Path

log = logging.getLogger("huzhu.waker")

CHANNEL = "huzhu_outbox"
_SUFFIX = ".sock"
_MAX_PATH = 107  # sun_path holds 108 bytes with the closing NUL


class Waker:
    """`wake()` rings; `wait(timeout)` waits for a ring. With `bell_dir`, rings reach workers
    of other processes listening there (`listen()`); with `database_url` (OUTBOX_BELL =
    "postgres"), workers on other hosts too."""

    def __init__(self, bell_dir: str | Path | None = None,
                 database_url: str | None = None) -> None:
        self._rung = threading.Event()
        self.bell_dir = Path(bell_dir) if bell_dir is not None else None
        self.database_url = database_url
        self._sender: socket.socket | None = None
        self._sender_pid = 0
        self._own: socket.socket | None = None  # the socket this process's worker waits on
        self._own_name: str | None = None
        self._own_address: str | None = None
        self._notifier: _Notifier | None = None
        self._listener: _Listener | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, cfg) -> "Waker":
        url = cfg.DATABASE_URL if cfg.values.get("OUTBOX_BELL") == "postgres" else None
        return cls(Path(cfg.data_dir) / "bell", url)

    # ringing -------------------------------------------------------------------------------

    def wake(self) -> None:
        """Rows are waiting: the workers look at once instead of at their next idle tick."""
        self._rung.set()
        own = self._own_address
        if own is not None:
            self._poke(own)
        if self.bell_dir is not None:
            self._ring_dir()
        if self.database_url is not None:
            self._notify()

    def wake_here(self) -> None:
        """Rings for this process's worker only (it is stopping)."""
        self._rung.set()
        self._poke_own()

    def _socket(self) -> socket.socket:
        if self._sender is None or self._sender_pid != os.getpid():  # not a forked parent's
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sender, self._sender_pid = sock, os.getpid()
        return self._sender

    def _poke(self, address) -> bool:
        """One byte to one socket; False if nobody is bound there any more."""
        try:
            self._socket().sendto(b"\x01", address)
        except (BlockingIOError, InterruptedError):
            pass  # full: a ring is already waiting there
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):
                return False
            # ENOENT (removed meanwhile), ENOBUFS, EACCES: nothing to ring there
        return True

    def _ring_dir(self) -> None:
        try:
            names = os.listdir(self.bell_dir)
        except OSError:
            return  # no worker has listened here yet
        for name in names:
            if not name.endswith(_SUFFIX) or name == self._own_name:
                continue
            address = _address(self.bell_dir, name)
            if address is None:
                continue
            if not self._poke(address):
                _remove(self.bell_dir / name)  # its process is gone

    def _notify(self) -> None:
        notifier = self._notifier
        if notifier is None or notifier.pid != os.getpid():
            with self._lock:
                if self._notifier is None or self._notifier.pid != os.getpid():
                    self._notifier = _Notifier(self.database_url)
                notifier = self._notifier
        notifier.ring()

    # waiting ---------------------------------------------------------------------------------

    def listen(self) -> None:
        """Bind this process's socket in the bell folder (and LISTEN, across hosts), so rings
        of other processes reach `wait`. Sockets of dead processes found there are removed."""
        if self.bell_dir is None or self._own is not None:
            return
        from core.files import private_dir

        folder = private_dir(self.bell_dir)
        sweep(folder)
        name = f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        address = _address(folder, name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if address is None:
                raise OSError(errno.ENAMETOOLONG, "socket path too long")
            sock.bind(address)
        except OSError:
            sock.close()
            log.warning("outbox bell: cannot listen in %s; looking every idle interval", folder)
            return
        self._own, self._own_name, self._own_address = sock, name, address
        if self.database_url is not None:
            self._listener = _Listener(self.database_url, self._poke_own)
        log.info("outbox bell listening at %s", folder / name)

    def _poke_own(self) -> None:
        own = self._own_address
        if own is not None:
            self._poke(own)

    def close(self) -> None:
        """Stop listening: the socket and its file go."""
        own, name = self._own, self._own_name
        self._own = self._own_name = self._own_address = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if own is not None:
            own.close()
            if self.bell_dir is not None:
                _remove(self.bell_dir / name)

    def wait(self, timeout: float) -> bool:
        """Wait until rung or `timeout` seconds pass; whether it was rung."""
        own = self._own
        if own is None:
            rung = self._rung.wait(timeout)
            self._rung.clear()
            return rung
        rung = self._rung.is_set()
        if not rung:
            try:
                rung = bool(select.select([own], [], [], timeout)[0])
            except (OSError, ValueError):  # closed meanwhile
                rung = self._rung.wait(timeout)
        self._rung.clear()
        _drain(own)
        return rung


def sweep(folder: Path) -> int:
    """Remove the sockets in `folder` that nobody is bound to; how many."""
    removed = 0
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    probe.setblocking(False)
    try:
        for name in os.listdir(folder):
            address = _address(folder, name) if name.endswith(_SUFFIX) else None
            if address is None:
                continue
            try:
                probe.connect(address)
            except ConnectionRefusedError:
                removed += _remove(folder / name)
            except OSError:
                pass
    finally:
        probe.close()
    return removed


_folder_fds: dict[str, int] = {}


def _address(folder: Path, name: str) -> str | None:
    """The socket's address: its path, or for a path longer than a socket address holds, the
    same file reached through an open handle on its folder (/proc/self/fd/N/name)."""
    path = os.path.join(folder, name)
    if len(os.fsencode(path)) <= _MAX_PATH:
        return path
    key = os.fspath(folder)
    fd = _folder_fds.get(key)
    if fd is None:
        try:
            fd = os.open(key, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        fd = _folder_fds.setdefault(key, fd)
    path = f"/proc/self/fd/{fd}/{name}"
    return path if len(path) <= _MAX_PATH else None


def _remove(path: Path) -> int:
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0


def _drain(sock: socket.socket) -> None:
    for _ in range(1024):
        try:
            sock.recv(16)
        except (BlockingIOError, InterruptedError, OSError):
            return


def _conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class _Notifier:
    """Sends NOTIFY from a thread of its own, so that `wake()` costs an Event.set: rings that
    come while one is being sent are sent as one."""

    def __init__(self, url: str) -> None:
        self.pid = os.getpid()
        self._url = url
        self._due = threading.Event()
        self._conn = None
        threading.Thread(target=self._run, name="huzhu-bell-notify", daemon=True).start()

    def ring(self) -> None:
        self._due.set()

    def _run(self) -> None:
        import psycopg

        while True:
            self._due.wait()
            self._due.clear()
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(_conninfo(self._url), autocommit=True)
                self._conn.execute(f"NOTIFY {CHANNEL}")
            except Exception as exc:
                log.warning("outbox bell: NOTIFY failed (%s); trying again in 1 s",
                            type(exc).__name__)
                self._conn = None
                threading.Event().wait(1.0)
                self._due.set()


class _Listener:
    """LISTENs on a connection of its own and rings this process's socket on each NOTIFY."""

    def __init__(self, url: str, ring) -> None:
        self._url = url
        self._ring = ring
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="huzhu-bell-listen", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self._url), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    log.info("outbox bell: LISTEN %s", CHANNEL)
                    self._ring()  # whatever was rung while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._ring()
            except Exception as exc:
                log.warning("outbox bell: LISTEN failed (%s); trying again in 5 s",
                            type(exc).__name__)
                self._stop.wait(5.0)

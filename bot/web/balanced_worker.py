"""gunicorn's threaded worker, taking new connections least-connected first.

    gunicorn -w 4 -k bot.web.balanced_worker.BalancedWorker --threads 16 ... "bot.web.app:create_app()"

Under gunicorn's `gthread` worker every process accepts from the one listening socket, and a
connection stays with the process that accepted it for as long as the client keeps it open.
Clients that hold their connections (a TLS proxy's kept-alive upstream connections, a load
balancer's pool, a load generator) open them in a burst, and whichever process happens to be
running takes most of the burst: 30 or all 32 of 32 connections on one of two processes in a
quarter of the webhook benchmark's rounds, which then ran on one core at half speed.

`BalancedWorker` is that worker with one rule added: a process takes a new connection only
while it holds at most `SLACK` connections more than the process holding fewest. The processes
publish their counts on a board of shared memory made by gunicorn's master before it starts
them (one slot per process: its pid, its open connections, when it last said so — every
`LOOK_SECONDS` and at each connection it takes). A process joins the board once it has loaded
the app; one that has not spoken for `STALE_SECONDS` (stopping, or killed) is left out, and its
slot taken by the next to start. The process holding fewest may always take one, so a
connection never waits for a rule that no process may meet; a process that stopped taking
them looks again every `LOOK_SECONDS`, or at once when a request of its own ends.
"""
from __future__ import annotations

import mmap
import multiprocessing
import os
import struct
import threading
import time

from gunicorn.workers.gthread import ThreadWorker

SLACK = 1               # connections a process may hold above the fewest held by another
LOOK_SECONDS = 0.02     # how often a process says it lives, and looks again if it stopped taking
STALE_SECONDS = 0.5     # a process that has not said so for this long counts as gone
SLOTS = 64              # processes the board has room for; any beyond take connections freely

_SLOT = struct.Struct("ddd")  # pid, open connections, monotonic time it last said so
_HEAD = struct.Struct("d")    # slots ever claimed (the part of the board a reader looks at)


class Board:
    """The processes' open connections, in shared memory made before the processes start."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        self.memory = mmap.mmap(-1, _HEAD.size + _SLOT.size * slots)
        self.claiming = multiprocessing.Lock()

    def _read(self, slot: int) -> tuple[float, float, float]:
        return _SLOT.unpack_from(self.memory, _HEAD.size + slot * _SLOT.size)

    def _write(self, slot: int, pid: int, connections: int, beat: float) -> None:
        _SLOT.pack_into(self.memory, _HEAD.size + slot * _SLOT.size, pid, connections, beat)

    def _used(self) -> int:
        return int(_HEAD.unpack_from(self.memory, 0)[0])

    def claim(self, pid: int) -> int | None:
        """A free slot for the process (or one left by a process gone), or None if full. A
        slot whose process has gone quiet but lives (its beat held up) stays its own."""
        with self.claiming:
            now = time.monotonic()
            for slot in range(self.slots):
                owner, _connections, beat = self._read(slot)
                if not owner or (now - beat > STALE_SECONDS and not _alive(int(owner))):
                    self._write(slot, pid, 0, now)
                    _HEAD.pack_into(self.memory, 0, max(self._used(), slot + 1))
                    return slot
        return None

    def publish(self, slot: int, pid: int, connections: int) -> None:
        self._write(slot, pid, connections, time.monotonic())

    def release(self, slot: int) -> None:
        self._write(slot, 0, 0, 0.0)

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections held by another live process, or None if there is none."""
        now, fewest = time.monotonic(), None
        used = self.memory[_HEAD.size:_HEAD.size + _SLOT.size * self._used()]
        for other, (owner, connections, beat) in enumerate(_SLOT.iter_unpack(used)):
            if other == slot or not owner or now - beat > STALE_SECONDS:
                continue
            if fewest is None or connections < fewest:
                fewest = int(connections)
        return fewest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: there is one
        pass
    return True


class BalancedWorker(ThreadWorker):
    """gthread, taking a new connection only while it holds at most SLACK more than the process
    holding fewest (module docstring)."""

    board: Board | None = None

    @classmethod
    def setup(cls) -> None:
        """Called by gunicorn's master as it loads the worker class, before any fork."""
        if cls.board is None:
            cls.board = Board()

    def __init__(self, *args, **kwargs):
        self._slot: int | None = None
        self._cap = 0
        super().__init__(*args, **kwargs)

    # gthread reads this at every turn of its loop and stops accepting at the limit
    @property
    def worker_connections(self) -> int:
        if self._slot is None:
            return self._cap
        fewest = self.board.fewest_elsewhere(self._slot)
        return self._cap if fewest is None else min(self._cap, fewest + SLACK + 1)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._cap = value

    def run(self) -> None:
        # on the board only once the app is loaded: a process still starting takes nothing
        if self.board is not None:
            self._slot = self.board.claim(self.pid)
        if self._slot is not None:
            threading.Thread(target=self._beat, name="balanced-worker", daemon=True).start()
        try:
            super().run()
        finally:
            if self._slot is not None:
                self.board.release(self._slot)

    def accept(self, listener) -> None:
        super().accept(listener)
        self._publish()

    def _publish(self) -> None:
        if self._slot is not None:  # (none when the board is full: this one takes freely)
            self.board.publish(self._slot, self.pid, self.nr_conns)

    def _beat(self) -> None:
        """Every LOOK_SECONDS: say this process lives and how many connections it holds; and
        while it takes none because another holds fewer, that other may meanwhile have taken
        enough to let this one take them again: wake the loop to see."""
        while self.alive:
            self._publish()
            if not self._accepting and self.nr_conns < self.worker_connections:
                self.method_queue.defer(_nothing)
            time.sleep(LOOK_SECONDS)


def _nothing() -> None:
    pass

"""The web processes share kept-alive connections (bot/web/balanced_worker.py): gunicorn with two
`BalancedWorker` processes over loopback, a burst of connections held open as a TLS proxy or a
load balancer holds them, each answered by the process that took it (the app answers its pid)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = "bot.web.balanced_worker.BalancedWorker"

# a process started while this file exists takes seconds to load the app, as huzhu's app does
SLOW_START = os.environ.get("BALANCE_TEST_SLOW_START")
if SLOW_START and Path(SLOW_START).exists():
    time.sleep(3)


def app(environ, start_response):
    """Which process answered; a little work first, as a real request does."""
    deadline = time.perf_counter() + 0.002
    while time.perf_counter() < deadline:
        pass
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, worker_class: str, slow_start: Path, workers: int = 2):
        self.port = _port()
        self.slow_start = slow_start
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", worker_class,
             "--threads", "4", "-b", f"127.0.0.1:{self.port}", "--log-level", "warning",
             "tests.test_balanced_worker:app"], cwd=ROOT,
            env={**os.environ, "BALANCE_TEST_SLOW_START": str(slow_start)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers = workers
        deadline = time.monotonic() + 30
        while len(self.answering()) < workers:  # every process has loaded the app
            assert time.monotonic() < deadline, "gunicorn's processes did not start"
            time.sleep(0.1)

    def answering(self) -> set[int]:
        """The processes that answered a burst of one-off requests."""
        pids = set()
        for _ in range(20):
            try:
                conn = Conn(self.port)
                pids.add(conn.get())
                conn.close()
            except OSError:
                time.sleep(0.05)
        return pids

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


class Conn:
    """One kept-alive HTTP/1.1 connection."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self) -> None:
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def read(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "the connection closed"
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += self.sock.recv(4096)
        self.buf = rest[length:]
        return int(rest[:length])

    def get(self) -> int:
        self.send()
        return self.read()

    def close(self) -> None:
        self.sock.close()


def burst(port: int, n: int) -> tuple[list[Conn], Counter]:
    """n connections opened at once, then a request on each: which process holds how many."""
    conns = [Conn(port) for _ in range(n)]
    for c in conns:
        c.send()
    return conns, Counter(c.read() for c in conns)


@pytest.fixture
def server(tmp_path):
    s = Server(WORKER, tmp_path / "slow-start")
    yield s
    s.stop()


def test_a_burst_of_kept_alive_connections_is_shared_between_the_web_processes(server):
    for _ in range(5):
        conns, held = burst(server.port, 32)
        assert len(held) == 2 and min(held.values()) >= 14, held
        # and they stay with their process: every later request on a connection goes there
        for c in conns:
            pid = c.get()
            held[pid] -= 1
        assert set(held.values()) == {0}
        for c in conns:
            c.close()
        time.sleep(0.3)  # the processes see the connections closed


def test_connections_opened_while_others_are_held_are_answered_at_once(server):
    held, spread = burst(server.port, 32)
    assert min(spread.values()) >= 14, spread
    # a quiet server, every process holding its share: new connections wait for no rule
    time.sleep(1.5)
    for _ in range(10):
        started = time.monotonic()
        extra = Conn(server.port)
        extra.get()
        assert time.monotonic() - started < 0.5
        held.append(extra)
    for c in held:
        c.close()


def test_a_killed_process_does_not_hold_up_new_connections(server):
    held, spread = burst(server.port, 16)
    victim = min(spread)
    server.slow_start.touch()  # the process gunicorn starts next loads the app for 3 s
    os.kill(victim, signal.SIGKILL)
    # the survivor takes new connections at once, though it holds more than the dead one
    # last said it held, and while gunicorn's new process is still loading the app
    for _ in range(10):
        started = time.monotonic()
        c = Conn(server.port)
        assert c.get() != victim
        assert time.monotonic() - started < 1.0
        held.append(c)
    for c in held:
        c.close()
    server.slow_start.unlink()
    # the new process takes its share of the next burst
    deadline = time.monotonic() + 30
    while len(server.answering()) < 2:
        assert time.monotonic() < deadline, "gunicorn did not start a new process"
    time.sleep(0.5)
    conns, spread = burst(server.port, 32)
    assert victim not in spread and len(spread) == 2 and min(spread.values()) >= 14, spread
    for c in conns:
        c.close()


def test_the_board_counts_live_processes_only_and_has_room_for_a_fixed_number():
    from bot.web.balanced_worker import STALE_SECONDS, Board

    board = Board(slots=2)
    me = board.claim(os.getpid())
    assert me == 0 and board.fewest_elsewhere(me) is None  # alone: takes freely
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    other = board.claim(gone.pid)
    board.publish(other, gone.pid, 5)
    assert board.fewest_elsewhere(me) == 5
    assert board.claim(os.getppid()) is None  # full: a third process takes connections freely
    time.sleep(STALE_SECONDS + 0.1)
    assert board.fewest_elsewhere(me) is None  # quiet too long: left out
    assert board.claim(os.getppid()) == other  # its process is gone: the slot is taken again
    board.release(me)
    assert board.fewest_elsewhere(other) is None

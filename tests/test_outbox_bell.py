"""The outbox's doorbell across processes: a `huzhu worker` process idle for 30 s delivers a
message queued by another process at once when that process rings (as gunicorn's processes and
the command line do after their commits); a worker on another host (another DATA_DIR) hears it
through PostgreSQL's NOTIFY. Ringing never fails nor waits: no worker, a dead worker's socket, a
worker whose socket is full."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.devtools.chat import Villager
from bot.outbox.waker import Waker, sweep
from bot.web.app import AppContext
from core import outbox
from core.db import Database
from tests.conftest import make_cfg, start_bot
from tests.factories import M, make_household

ROOT = Path(__file__).resolve().parents[1]


def _worker(cfg, db_url: str, emulator: str, log: Path, data_dir: Path | None = None,
            **extra) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATABASE_URL=db_url, HUZHU_DATA_DIR=str(data_dir or cfg.data_dir),
               HUZHU_WECHAT_TOKEN=cfg.WECHAT_TOKEN, HUZHU_WECHAT_APP_ID=cfg.WECHAT_APP_ID,
               HUZHU_WECHAT_API_BASE=emulator, HUZHU_WECHAT_OPEN_BASE=emulator,
               HUZHU_PAY_API_BASE=emulator, HUZHU_WECOM_WEBHOOK_BASE=emulator,
               HUZHU_PAY_PROVIDER="emulator", HUZHU_OUTBOX_IDLE_SECONDS="30",
               HUZHU_LOG_LEVEL="INFO", **{f"HUZHU_{k}": v for k, v in extra.items()})
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def _until(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _sent_to(v: Villager, openid: str) -> list[str]:
    return [c["json"]["text"]["content"] for c in v.calls()
            if (c.get("json") or {}).get("touser") == openid
            and (c.get("json") or {}).get("msgtype") == "text"]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _ring_test(web, cfg, db, emulator, worker, log):
    """`web`: the web app without a worker, as one of gunicorn's processes; it rings with
    its app context's waker (`make_context`'s)."""
    ringer = web.x.waker
    v = Villager(web.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
    with db.session() as s:
        make_household(s, web.x.vault, [M("王大山")], openid="o_bell")
    try:
        assert _until(lambda: "outbox bell listening" in log.read_text(), 60), log.read_text()
        assert v.text("o_bell", "帮助").reply  # the user writes: the 48-hour window opens
        time.sleep(3.0)  # the worker's first look at the outbox is behind it (on a loaded
        # machine it comes seconds after start): it idles now
        v.http.delete(f"{emulator}/_emulator/calls", timeout=5)

        with db.session() as s:  # queued without a ring: the idle worker does not look
            outbox.send_text(s, "o_bell", "第一条：无铃")
        time.sleep(1.0)
        assert _sent_to(v, "o_bell") == []

        ringer.wake()  # another process rings after its commit: delivered at once
        rung = time.monotonic()
        assert _until(lambda: _sent_to(v, "o_bell") == ["第一条：无铃"], 5)
        first = time.monotonic() - rung

        with db.session() as s:
            outbox.send_text(s, "o_bell", "第二条")
        ringer.wake()
        rung = time.monotonic()
        assert _until(lambda: len(_sent_to(v, "o_bell")) == 2, 5)
        second = time.monotonic() - rung
        assert max(first, second) < 3, (first, second)  # the idle interval is 30 s
    finally:
        _stop(worker)
        web.stop()
    return log.read_text()


def test_a_worker_process_delivers_at_once_when_another_process_rings(app_ctx, cfg, db,
                                                                      db_url, emulator,
                                                                      tmp_path):
    log = tmp_path / "worker.log"
    worker = _worker(cfg, db_url, emulator, log)
    _ring_test(start_bot(app_ctx, worker=False), cfg, db, emulator, worker, log)
    # stopped: its socket is gone, and ringing now reaches nobody and does not fail
    assert list((cfg.data_dir / "bell").glob("*.sock")) == []
    app_ctx.waker.wake()


def test_a_worker_on_another_host_hears_the_ring_through_postgresql(app_ctx, cfg, db, db_url,
                                                                   emulator, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite every worker shares one host")
    log = tmp_path / "worker.log"
    elsewhere = tmp_path / "other-host"  # another DATA_DIR: no socket of this host reaches it
    worker = _worker(cfg, db_url, emulator, log, data_dir=elsewhere, OUTBOX_BELL="postgres")
    ringer = make_cfg(tmp_path, db_url, emulator, OUTBOX_BELL="postgres")
    x = AppContext(cfg=ringer, db=Database(db_url))
    try:
        assert _until(lambda: "LISTEN huzhu_outbox" in log.read_text(), 60), log.read_text()
        _ring_test(start_bot(x, worker=False), cfg, db, emulator, worker, log)
    finally:
        x.db.dispose()


def test_ringing_with_nobody_listening_does_nothing(tmp_path):
    folder = tmp_path / "bell"
    waker = Waker(folder)
    waker.wake()  # no folder yet: nothing made, nothing raised
    assert not folder.exists()
    folder.mkdir()
    (folder / "notes.txt").write_text("not a socket")
    (folder / "123-fake.sock").write_text("a file named like a socket")
    waker.wake()
    assert (folder / "notes.txt").exists()
    assert waker.wait(0.01) is True  # the ring is this process's own (a worker thread's)
    assert waker.wait(0.01) is False


def test_a_dead_workers_socket_is_removed_and_a_live_one_rung(tmp_path):
    folder = tmp_path / "bell"
    folder.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(folder / "999999-dead.sock"))
    dead.close()  # the process died: its file stays behind
    live = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    live.bind(str(folder / "1-live.sock"))
    live.settimeout(1)
    try:
        Waker(folder).wake()
        assert live.recv(16) == b"\x01"
        assert sorted(p.name for p in folder.iterdir()) == ["1-live.sock"]

        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(str(folder / "999998-dead.sock"))
        dead.close()
        assert sweep(folder) == 1  # what a worker does as it starts listening
        worker = Waker(folder)
        worker.listen()
        try:
            names = sorted(p.name for p in folder.iterdir())
            assert len(names) == 2 and "1-live.sock" in names
            Waker(folder).wake()  # another process rings: the listening worker wakes
            assert worker.wait(2) is True
            assert worker.wait(0.05) is False
        finally:
            worker.close()
        assert [p.name for p in folder.iterdir()] == ["1-live.sock"]
    finally:
        live.close()


def test_a_full_socket_never_makes_the_ringer_wait(tmp_path):
    folder = tmp_path / "bell"
    folder.mkdir()
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    busy.bind(str(folder / "2-busy.sock"))  # a worker that does not read (busy with OCR)
    try:
        waker = Waker(folder)
        started = time.perf_counter()
        for _ in range(5000):
            waker.wake()
        per_ring = (time.perf_counter() - started) / 5000
        assert per_ring < 0.001, per_ring
        assert busy.recv(16) == b"\x01"
    finally:
        busy.close()


def test_a_long_data_folder_still_gets_its_bell(tmp_path):
    folder = tmp_path / ("d" * 60) / ("e" * 60) / "bell"  # beyond a socket address's 108 bytes
    worker = Waker(folder)
    worker.listen()
    try:
        assert len(list(folder.glob("*.sock"))) == 1
        Waker(folder).wake()
        assert worker.wait(2) is True
    finally:
        worker.close()
    assert list(folder.glob("*.sock")) == []

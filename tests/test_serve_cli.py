"""`huzhu serve` as a user runs it: a subprocess with no configuration but the emulator's URL,
answering `huzhu chat`, healthy, pushing the custom menu, and stopping cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def huzhu(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_serve_chat_health_menu_and_sigterm(tmp_path, emulator, db_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATA_DIR=str(tmp_path / "var"), HUZHU_DATABASE_URL=db_url,
               HUZHU_WECHAT_API_BASE=emulator, HUZHU_PUBLIC_URL=f"http://127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.3)
        assert health["database"] == "ok"
        out = huzhu("chat", "--openid", "o_cli", "--text", "帮助", "--wait", "0", env=env)
        assert out.returncode == 0, out.stderr
        assert "1 参加互助" in out.stdout
        # the worker says it is alive within its first heartbeat
        deadline = time.monotonic() + 20
        while not requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()[
                "worker"]["alive"]:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        pushed = huzhu("menu", "push", env=env)
        assert pushed.returncode == 0, pushed.stderr
        calls = requests.get(f"{emulator}/_emulator/calls", params={"path": "/cgi-bin/menu/create"},
                             timeout=5).json()
        names = json.dumps(calls[-1]["json"], ensure_ascii=False)
        assert "参加互助" in names and "MENU_CLAIM" in names
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0

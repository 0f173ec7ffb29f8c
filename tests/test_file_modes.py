"""What huzhu writes to disk is readable by its owner only, whatever the umask: the data
folder 0700; the database (and SQLite's -wal and -shm), the key, photos, exports and backups
0600 — made by `huzhu db upgrade`, `huzhu serve`, `huzhu backup` and the photo and export
writers, under umask 022."""
from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests
from PIL import Image

from tests.test_serve_cli import free_port


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _umask_022():
    os.umask(0o022)


def _env(data: Path, emulator: str, **more) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATA_DIR=str(data), HUZHU_DATABASE_URL=f"sqlite:///{data / 'huzhu.db'}",
               HUZHU_WECHAT_API_BASE=emulator, **more)
    return env


def _huzhu(*args, env):
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, preexec_fn=_umask_022)


def test_a_fresh_data_folder_and_everything_in_it_are_the_owners_only(tmp_path, emulator):
    data = tmp_path / "var"
    port = free_port()
    env = _env(data, emulator, HUZHU_PUBLIC_URL=f"http://127.0.0.1:{port}")
    out = _huzhu("db", "upgrade", env=env)
    assert out.returncode == 0, out.stderr
    assert _mode(data) == 0o700 and _mode(data / "huzhu.db") == 0o600

    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_umask_022)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.3)
        chat = _huzhu("chat", "--openid", "o_modes", "--text", "帮助", "--wait", "0", env=env)
        assert chat.returncode == 0, chat.stderr
        for side in ("-wal", "-shm"):  # while the server runs, SQLite's files beside the db
            assert _mode(Path(f"{data / 'huzhu.db'}{side}")) == 0o600, side
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)

    # the photo and export writers, and the key, in this process under the same umask
    old = os.umask(0o022)
    try:
        from core.config import load_config, secret_key
        from core.media import store
        from core.payouts import batch_file, write_bank_file

        cfg = load_config(env)
        secret_key(cfg)
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), "white").save(buf, format="JPEG")
        photo = store(data, buf.getvalue()).path
        export = batch_file(data, type("B", (), {"number": "P2026-01-001"})())
        write_bank_file(export, "P2026-01-001", [])
    finally:
        os.umask(old)
    passphrase = tmp_path / "pass"
    passphrase.write_text("a long enough passphrase for the test")
    backup = _huzhu("backup", "--passphrase-file", str(passphrase), env=env)
    assert backup.returncode == 0, backup.stderr

    folders = [data, data / "media", photo.parent, data / "exports", data / "backups"]
    files = [data / "huzhu.db", data / "secret.key", photo, export,
             *(data / "backups").iterdir(), *[p for p in data.iterdir() if p.is_file()]]
    assert len(list((data / "backups").iterdir())) == 1
    assert {str(p): oct(_mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
    assert {str(p): oct(_mode(p)) for p in files} == {str(p): "0o600" for p in files}


def test_an_older_data_folder_is_closed_at_start(tmp_path, emulator):
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "secret.key").write_text("an-old-key")
    os.chmod(data / "secret.key", 0o644)
    db = data / "huzhu.db"
    db.touch()
    os.chmod(db, 0o644)
    out = _huzhu("db", "upgrade", env=_env(data, emulator))
    assert out.returncode == 0, out.stderr
    assert (_mode(data), _mode(data / "secret.key"), _mode(db)) == (0o700, 0o600, 0o600)

"""Configuration: defaults, HUZHU_* overrides, one clear line naming the key on a wrong value."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.config import ConfigError, load_config


def test_defaults_and_overrides():
    cfg = load_config({})
    assert cfg.DATABASE_URL == "sqlite:///var/huzhu.db" and cfg.PAY_PROVIDER == "emulator"
    assert cfg.TIMEZONE == "Asia/Shanghai" and not cfg.safe_mode
    cfg = load_config({"HUZHU_TIMEZONE": "UTC", "HUZHU_MAX_BODY_BYTES": "2048"})
    assert cfg.TIMEZONE == "UTC" and cfg.MAX_BODY_BYTES == 2048


@pytest.mark.parametrize("env,key", [
    ({"HUZHU_WECHAT_AES_KEY": "short"}, "HUZHU_WECHAT_AES_KEY"),
    ({"HUZHU_DATABASE_URL": "mysql://root@localhost/x"}, "HUZHU_DATABASE_URL"),
    ({"HUZHU_WECHAT_APP_SECRET": ""}, "HUZHU_WECHAT_APP_SECRET"),
    ({"HUZHU_PAY_PROVIDER": "alipay"}, "HUZHU_PAY_PROVIDER"),
    ({"HUZHU_PAY_PROVIDER": "wechatpay"}, "HUZHU_PAY_MCH_ID"),
    ({"HUZHU_TIMEZONE": "Mars/Base"}, "HUZHU_TIMEZONE"),
    ({"HUZHU_MAX_BODY_BYTES": "lots"}, "HUZHU_MAX_BODY_BYTES"),
    ({"HUZHU_OUTBOX_IDLE_SECONDS": "0"}, "HUZHU_OUTBOX_IDLE_SECONDS"),
    ({"HUZHU_OUTBOX_IDLE_SECONDS": "soon"}, "HUZHU_OUTBOX_IDLE_SECONDS"),
    ({"HUZHU_OUTBOX_BELL": "redis"}, "HUZHU_OUTBOX_BELL"),
    ({"HUZHU_OUTBOX_BELL": "postgres"}, "HUZHU_OUTBOX_BELL"),  # on SQLite
])
def test_a_wrong_value_names_the_key(env, key):
    with pytest.raises(ConfigError) as err:
        load_config(env)
    assert str(err.value).startswith(key)


def test_missing_secret_is_fine_against_the_emulator():
    cfg = load_config({"HUZHU_WECHAT_APP_SECRET": "",
                       "HUZHU_WECHAT_API_BASE": "http://127.0.0.1:9000"})
    assert cfg.WECHAT_API_BASE == "http://127.0.0.1:9000"


def test_the_program_stops_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_WECHAT_AES_KEY="x" * 42, HUZHU_DATA_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "bot.cli", "serve"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "HUZHU_WECHAT_AES_KEY" in lines[0] and "43" in lines[0]


_RACE = """
import sys, time
from core.config import load_config, secret_key
cfg = load_config({"HUZHU_DATA_DIR": sys.argv[1], "HUZHU_SECRET_KEY": ""})
while time.time() < float(sys.argv[2]):  # all start generating at the same instant
    pass
print(secret_key(cfg).decode())
"""


def test_processes_starting_together_on_a_new_data_folder_agree_on_one_key(tmp_path):
    """gunicorn's workers and a worker process starting at once on a new data folder: every
    one gets the same complete key, and only that key is on disk."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    data = tmp_path / "data"
    start_at = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(data), start_at],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    keys = {out.strip() for out, _ in outs}
    assert len(keys) == 1 and len(keys.pop()) >= 40
    assert sorted(f.name for f in data.iterdir()) == ["secret.key"]
    assert (data / "secret.key").read_text().strip() == outs[0][0].strip()
    assert (data / "secret.key").stat().st_mode & 0o777 == 0o600


def test_an_empty_key_file_stops_with_a_clear_line(tmp_path):
    from core.config import secret_key

    (tmp_path / "secret.key").write_bytes(b"")
    cfg = load_config({"HUZHU_DATA_DIR": str(tmp_path), "HUZHU_SECRET_KEY": ""})
    with pytest.raises(ConfigError, match="secret.key: empty"):
        secret_key(cfg)


def test_without_hard_links_the_key_is_still_made_once(tmp_path, monkeypatch):
    """A data folder on a file system without hard links (FAT, some network shares): the key
    is created under its name directly, readable only by its owner, and kept."""
    from core.config import secret_key

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    cfg = load_config({"HUZHU_DATA_DIR": str(tmp_path / "fat"), "HUZHU_SECRET_KEY": ""})
    key = secret_key(cfg)
    assert len(key) >= 40 and secret_key(cfg) == key
    path = tmp_path / "fat" / "secret.key"
    assert sorted(f.name for f in path.parent.iterdir()) == ["secret.key"]
    assert path.stat().st_mode & 0o777 == 0o600

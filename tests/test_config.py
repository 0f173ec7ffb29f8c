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

"""The outbox: delivered by the worker, retried with backoff, dead after the last attempt and
shown in /healthz and `huzhu outbox list --json`; messages outside the window are held."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import requests
from sqlalchemy import select

from core import outbox
from core.models import OutboxMessage, OutboxStatus, WechatUser, utcnow


def wait_for(pred, seconds=8.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def status_of(db, row_id):
    with db.session() as s:
        return s.get(OutboxMessage, row_id)


def test_a_message_is_delivered_to_the_user(bot, db, villager, emulator):
    villager.text("o_out", "帮助")  # opens the 48-hour window
    with db.session() as s:
        row = outbox.send_text(s, "o_out", "您的申请已受理")
        s.flush()
        rid = row.id
    bot.x.waker.wake()
    assert wait_for(lambda: status_of(db, rid).status is OutboxStatus.sent)
    calls = villager.calls(touser="o_out")
    assert [c["json"]["text"]["content"] for c in calls] == ["您的申请已受理"]


def test_failures_back_off_then_die_and_health_shows_it(bot, db, villager, emulator, cfg):
    villager.text("o_dead", "帮助")
    requests.post(f"{emulator}/_emulator/fail", json={"path": "/cgi-bin/message/custom/send",
                                                      "errcode": "http500", "count": 100},
                  timeout=5)
    try:
        with db.session() as s:
            row = outbox.send_text(s, "o_dead", "不会送达")
            s.flush()
            rid = row.id
        bot.x.waker.wake()
        assert wait_for(lambda: status_of(db, rid).attempts >= 1)
        first = status_of(db, rid)
        assert first.status is OutboxStatus.pending and first.last_error
        # back-off: the next attempt is in the future, doubling each time
        with db.session() as s:
            r = s.get(OutboxMessage, rid)
            r.attempts = cfg.OUTBOX_MAX_ATTEMPTS - 1
            r.next_attempt_at = utcnow()
        bot.x.waker.wake()
        assert wait_for(lambda: status_of(db, rid).status is OutboxStatus.dead)
    finally:
        requests.post(f"{emulator}/_emulator/fail", json={
            "path": "/cgi-bin/message/custom/send", "errcode": "http500", "count": 0}, timeout=5)
    health = requests.get(f"{bot.url}/healthz", timeout=5).json()
    assert health["outbox"]["dead"] == 1 and health["status"] == "degraded"


def test_backoff_doubles():
    row = OutboxMessage(kind="wechat.send", payload={}, attempts=0, status=OutboxStatus.pending)
    before = utcnow()
    outbox.mark_failed(row, "x", max_attempts=5, backoff_seconds=10)
    d1 = (row.next_attempt_at - before).total_seconds()
    outbox.mark_failed(row, "x", max_attempts=5, backoff_seconds=10)
    d2 = (row.next_attempt_at - before).total_seconds()
    assert 9 <= d1 <= 11 and 19 <= d2 <= 21 and row.status is OutboxStatus.pending
    for _ in range(3):
        outbox.mark_failed(row, "x", max_attempts=5, backoff_seconds=10)
    assert row.status is OutboxStatus.dead


def test_outside_the_window_without_template_it_is_held_until_the_user_writes(
        bot, db, villager):
    villager.text("o_held", "帮助")
    with db.session() as s:
        user = s.scalar(select(WechatUser).where(WechatUser.openid == "o_held"))
        user.last_inbound_at = utcnow() - timedelta(hours=49)
        row = outbox.send_text(s, "o_held", "审核结果出来了")
        s.flush()
        rid = row.id
    bot.x.waker.wake()
    assert wait_for(lambda: (status_of(db, rid).last_error or "").startswith("held"))
    assert status_of(db, rid).status is OutboxStatus.pending
    assert villager.calls(touser="o_held") == []
    r = villager.text("o_held", "0", wait=4)
    assert "审核结果出来了" in r.pushed_texts
    assert status_of(db, rid).status is OutboxStatus.sent


def test_outbox_list_json(cfg, db, app_ctx):
    import os
    import subprocess
    import sys

    with db.session() as s:
        outbox.send_text(s, "o_list", "hello")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    out = subprocess.run([sys.executable, "-m", "bot.cli", "outbox", "list", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["kind"] == "wechat.send" and rows[0]["status"] == "pending"

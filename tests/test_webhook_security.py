"""The webhook against an attacker: stale or replayed signed queries, MsgIds reused by another
sender, hostile numbers, answers that name nothing internal, plain mode in production, the
security headers of the pages, invisible characters in texts."""
from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select
from wechatpy.utils import random_string

from bot.devtools.chat import Villager, sign
from core.config import ConfigError, load_config
from core.outbox import as_utc
from core.models import DialogueState, InboundMessage, WebhookNonce, WechatUser, utcnow
from tests.conftest import AES_KEY, make_cfg, start_bot

REDIS_URL = os.environ.get("HUZHU_TEST_REDIS_URL")


def counts(db) -> tuple[int, int]:
    with db.session() as s:
        return (s.scalar(select(func.count()).select_from(InboundMessage)),
                s.scalar(select(func.count()).select_from(WechatUser)))


def post(url: str, token: str, xml: str, ts: str | None = None, nonce: str | None = None,
         **extra) -> requests.Response:
    ts = ts if ts is not None else str(int(time.time()))
    nonce = nonce or random_string(10)
    params = {"timestamp": ts, "nonce": nonce, "signature": sign(token, ts, nonce), **extra}
    return requests.post(f"{url}/wechat", params=params, data=xml.encode(), timeout=10)


# -- freshness ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ts", ["1", "abc", "", "-5", "1.5e9", "１７００００００００",
                                "99999999999999999999", "OLD", "FUTURE"])
def test_a_signed_query_with_a_stale_or_malformed_timestamp_is_403(bot, cfg, villager, db, ts):
    now = int(time.time())
    ts = {"OLD": str(now - 301), "FUTURE": str(now + 301)}.get(ts, ts)
    before = counts(db)
    r = post(bot.url, cfg.WECHAT_TOKEN, villager.text_xml("o_stale", "帮助"), ts=ts)
    assert r.status_code == 403 and r.text == "forbidden"
    assert counts(db) == before
    echo = requests.get(f"{bot.url}/wechat", params={
        "timestamp": ts, "nonce": "n1", "signature": sign(cfg.WECHAT_TOKEN, ts, "n1"),
        "echostr": "e-1"}, timeout=5)
    assert echo.status_code == 403 and "e-1" not in echo.text


def test_a_timestamp_inside_the_window_is_accepted(bot, cfg, villager):
    for skew in (-290, 290):
        r = post(bot.url, cfg.WECHAT_TOKEN, villager.text_xml("o_skew", "帮助"),
                 ts=str(int(time.time()) + skew))
        assert r.status_code == 200 and "1 参加互助" in r.text


def test_safe_mode_refuses_a_stale_timestamp_too(safe_bot, db):
    from bot.web.wxml import parse_flat

    running, v = safe_bot
    before = counts(db)
    for ts in (str(int(time.time()) - 400), "abc"):
        nonce = random_string(10)
        enc = parse_flat(v.crypto.encrypt_message(v.text_xml("o_safe_stale", "帮助"), nonce,
                                                  ts).encode())
        body = f"<xml><ToUserName>gh</ToUserName><Encrypt>{enc['Encrypt']}</Encrypt></xml>"
        r = post(running.url, v.token, body, ts=ts, nonce=nonce, encrypt_type="aes",
                 msg_signature=enc["MsgSignature"])
        assert r.status_code == 403 and r.text == "forbidden"
    assert counts(db) == before
    assert "1 参加互助" in v.text("o_safe_stale", "帮助").reply


# -- replayed queries ----------------------------------------------------------------------------

def _replays(url: str, token: str, villager: Villager, db) -> None:
    """A signed query seen once (a proxy's log) carries another message: refused, whoever it
    claims to come from; WeChat's own retry of the first message is answered from the cache."""
    ts, nonce = str(int(time.time())), random_string(10)
    first_xml = villager.text_xml("o_victim", "帮助", msg_id=5550001)
    first = post(url, token, first_xml, ts=ts, nonce=nonce)
    assert first.status_code == 200 and "1 参加互助" in first.text
    before = counts(db)
    for openid in ("o_victim", "o_admin_forged"):  # a known user, and a new one
        forged = post(url, token, villager.text_xml(openid, "计数", msg_id=5550002),
                      ts=ts, nonce=nonce)
        assert forged.status_code == 403 and forged.text == "forbidden"
    event = post(url, token, villager._xml("o_victim", "event", {"Event": "unsubscribe"}),
                 ts=ts, nonce=nonce)
    assert event.status_code == 403
    assert counts(db) == before
    retry = post(url, token, first_xml, ts=ts, nonce=nonce)  # WeChat's retry: same query
    assert retry.status_code == 200 and villager.read_reply(retry.text) == \
        villager.read_reply(first.text)
    assert counts(db) == before
    with db.session() as s:
        assert s.scalar(select(WechatUser).where(WechatUser.openid == "o_admin_forged")) is None


def test_a_signed_query_used_again_with_another_message_is_403(bot, cfg, villager, db):
    _replays(bot.url, cfg.WECHAT_TOKEN, villager, db)
    with db.session() as s:  # remembered until its timestamp leaves the window
        row = s.scalars(select(WebhookNonce)).first()
        assert row is not None and as_utc(row.expires_at) > utcnow() + timedelta(seconds=200)


@pytest.mark.skipif(not REDIS_URL, reason="HUZHU_TEST_REDIS_URL not set")
def test_replays_are_refused_with_the_queries_in_redis(tmp_path, db, db_url, emulator):
    import redis

    from bot.server import bootstrap
    from bot.web.app import AppContext

    redis.Redis.from_url(REDIS_URL).flushdb()
    cfg = make_cfg(tmp_path, db_url, emulator, REDIS_URL=REDIS_URL)
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    try:
        v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        _replays(running.url, cfg.WECHAT_TOKEN, v, db)
        with db.session() as s:  # Redis holds them; the table is not used
            assert s.scalar(select(func.count()).select_from(WebhookNonce)) == 0
        keys = redis.Redis.from_url(REDIS_URL).keys("huzhu:nonce:*")
        assert keys and 0 < redis.Redis.from_url(REDIS_URL).ttl(keys[0]) <= 301
    finally:
        running.stop()


def test_two_messages_on_one_query_at_the_same_moment_one_gets_in(bot, cfg, villager, db):
    """Posted together they meet in one batch of the line (or one after the other): the first
    is handled, every other message on that query refused."""
    ts, nonce = str(int(time.time())), random_string(10)
    answers = []

    def go(i):
        answers.append(post(bot.url, cfg.WECHAT_TOKEN,
                            villager.text_xml(f"o_race_{i}", "帮助", msg_id=5560000 + i),
                            ts=ts, nonce=nonce))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200] + [403] * 5
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.openid.like("o_race_%"))) == 1


def test_expired_queries_are_forgotten_by_the_job(db):
    from core.retention import delete_expired_nonces

    now = utcnow()
    with db.session() as s:
        s.add_all([WebhookNonce(nonce="1:old", dedupe_key="msg:o:1",
                                expires_at=now - timedelta(seconds=5)),
                   WebhookNonce(nonce="2:new", dedupe_key="msg:o:2",
                                expires_at=now + timedelta(seconds=200))])
    with db.session() as s:
        assert delete_expired_nonces(s, now) == 1
        assert [r.nonce for r in s.scalars(select(WebhookNonce))] == ["2:new"]


# -- dedupe by sender ----------------------------------------------------------------------------

@pytest.fixture
def counter():
    from handlers import dialogue
    from handlers.dialogue import Dialogue, say

    def entry(ctx, msg, data):
        return say(f"{ctx.openid} 第1条", state="n", data={"n": 1})

    def step(ctx, msg, data):
        return say(f"{ctx.openid} 第{data['n'] + 1}条", state="n", data={"n": data["n"] + 1})

    d = dialogue.register(Dialogue("sec_counter", entry, {"n": step}, words=("数数",)))
    yield d
    dialogue.REGISTRY.pop(d.name, None)


def test_another_sender_reusing_a_msg_id_gets_their_own_answer(villager, db, counter):
    villager.text("o_alice", "数数")
    villager.text("o_mallory", "数数")
    alice = villager.text("o_alice", "再数", msg_id=5570001)
    mallory = villager.text("o_mallory", "再数", msg_id=5570001)  # the same MsgId
    assert alice.reply == "o_alice 第2条" and mallory.reply == "o_mallory 第2条"
    # each one's retry gets their own cached reply, and changes nothing
    assert villager.text("o_mallory", "再数", msg_id=5570001).reply == "o_mallory 第2条"
    assert villager.text("o_alice", "再数", msg_id=5570001).reply == "o_alice 第2条"
    with db.session() as s:
        assert s.get(DialogueState, "o_alice").data == {"n": 2}
        assert s.get(DialogueState, "o_mallory").data == {"n": 2}


def test_events_of_two_senders_at_the_same_second_are_two_events(villager, db):
    for openid in ("o_ev_a", "o_ev_b"):
        r = villager.post(openid, villager._xml(openid, "event", {"Event": "subscribe"},
                                                create_time=1700000000))
        assert "欢迎" in r.reply or r.reply
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.openid.in_(["o_ev_a", "o_ev_b"]))) == 2


# -- hostile numbers and generic answers -----------------------------------------------------------

@pytest.mark.parametrize("created", ["99999999999999999999", "²", "١٢٣", "-1", "1e9", ""])
def test_a_create_time_that_is_no_time_is_400(bot, cfg, villager, db, created):
    xml = (f"<xml><ToUserName>gh</ToUserName><FromUserName>o_ct</FromUserName>"
           f"<CreateTime>{created}</CreateTime><MsgType>text</MsgType><Content>帮助</Content>"
           f"<MsgId>1</MsgId></xml>")
    before = counts(db)
    r = post(bot.url, cfg.WECHAT_TOKEN, xml)
    assert r.status_code == 400 and r.text == "bad request"
    assert counts(db) == before


def test_refusals_name_nothing_internal_and_the_log_says_why(safe_bot, db, caplog):
    caplog.set_level(logging.WARNING, logger="huzhu.webhook")
    running, good = safe_bot
    other_app = Villager(running.url, good.token, "wxanotherapp00000", AES_KEY, good.emulator)
    r = other_app.text("o_other_app", "帮助")
    assert r.status == 400 and r.raw == "bad request"
    dtd = post(running.url, good.token, '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>'
               "<xml><Encrypt>&a;</Encrypt></xml>", encrypt_type="aes", msg_signature="x")
    assert dtd.status_code == 400 and dtd.text == "bad request"
    for body in (r.raw, dtd.text):
        assert "Exception" not in body and "DTD" not in body and "xml" not in body
    assert "InvalidAppIdException" in caplog.text and "DTDForbidden" in caplog.text


def test_invisible_characters_do_not_hide_a_word(villager):
    for text in ("帮\u200b助", "\ufeff帮助", "帮\u2060助", "\u202e帮助\u202c", "\u200f0\u200e"):
        r = villager.text("o_zw", text)
        assert "1 参加互助" in r.reply, text


# -- pages -----------------------------------------------------------------------------------------

def test_pages_carry_the_security_headers(bot):
    for path in ("/pay/qr/H0000000001x", "/pay/qr/%3Cscript%3E", "/healthz"):
        r = requests.get(f"{bot.url}{path}", timeout=5)
        assert r.headers["X-Frame-Options"] == "DENY", path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "no-store" in r.headers["Cache-Control"]
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp



# -- plain mode in production ------------------------------------------------------------------

PRODUCTION = {"HUZHU_WECHAT_TOKEN": "a-real-accounts-token",
              "HUZHU_WECHAT_API_BASE": "https://api.weixin.qq.com"}


def test_production_is_the_real_api_with_a_token_of_its_own():
    assert load_config(PRODUCTION).production
    assert not load_config({**PRODUCTION, "HUZHU_WECHAT_API_BASE": "http://127.0.0.1:9000"}) \
        .production
    assert not load_config({}).production  # the public demo token
    assert load_config({"HUZHU_WECHAT_ALLOW_PLAIN": "true"}).WECHAT_ALLOW_PLAIN is True
    assert load_config({}).WECHAT_ALLOW_PLAIN is False
    with pytest.raises(ConfigError) as err:
        load_config({"HUZHU_WECHAT_ALLOW_PLAIN": "maybe"})
    assert str(err.value).startswith("HUZHU_WECHAT_ALLOW_PLAIN")


def test_production_refuses_plain_mode_unless_allowed(tmp_path, db, caplog):
    from bot.web.app import AppContext, create_app

    env = {**PRODUCTION, "HUZHU_DATA_DIR": str(tmp_path), "HUZHU_DATABASE_URL": db.url}
    with pytest.raises(ConfigError) as err:
        create_app(AppContext(cfg=load_config(env), db=db))
    assert "HUZHU_WECHAT_ALLOW_PLAIN" in str(err.value) and "安全模式" in str(err.value)
    caplog.set_level(logging.INFO, logger="huzhu.app")
    create_app(AppContext(cfg=load_config({**env, "HUZHU_WECHAT_ALLOW_PLAIN": "true"}), db=db))
    create_app(AppContext(cfg=load_config({**env, "HUZHU_WECHAT_AES_KEY": AES_KEY}), db=db))
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "huzhu.app"]
    assert said[0][0] == "WARNING" and "PLAIN mode on a production server" in said[0][1]
    assert said[1][0] == "INFO" and "safe mode" in said[1][1]


def test_serve_in_plain_mode_in_production_stops_with_one_line(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(PRODUCTION, HUZHU_DATA_DIR=str(tmp_path),
               HUZHU_DATABASE_URL=f"sqlite:///{tmp_path}/h.db")
    out = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", "0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "HUZHU_WECHAT_ALLOW_PLAIN=true" in lines[0]
    assert not (tmp_path / "h.db").exists() or (tmp_path / "h.db").stat().st_size == 0

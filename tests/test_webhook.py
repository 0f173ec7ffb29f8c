"""The webhook over real loopback HTTP, plain and safe mode, and every kind of bad input."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from wechatpy.utils import random_string

from bot.devtools.chat import ChatResult, Villager, sign
from core.models import InboundMessage, WechatUser
from handlers import dialogue
from handlers.dialogue import Dialogue, say

ID_NUMBER = "11010519491231002X"


def inbound_count(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(InboundMessage))


def signed_params(token: str) -> dict:
    ts, nonce = str(int(time.time())), random_string(10)
    return {"timestamp": ts, "nonce": nonce, "signature": sign(token, ts, nonce)}


# -- URL verification -----------------------------------------------------------------------

def test_get_echoes_echostr_with_a_good_signature(bot, cfg):
    params = signed_params(cfg.WECHAT_TOKEN) | {"echostr": "hello-123"}
    r = requests.get(f"{bot.url}/wechat", params=params, timeout=5)
    assert r.status_code == 200 and r.text == "hello-123"


def test_get_with_a_bad_signature_is_403(bot):
    r = requests.get(f"{bot.url}/wechat", params={"signature": "x", "timestamp": "1",
                                                  "nonce": "2", "echostr": "e"}, timeout=5)
    assert r.status_code == 403 and "e" != r.text


# -- messages ----------------------------------------------------------------------------------

def test_plain_text_gets_the_menu(villager):
    r = villager.text("o_plain", "帮助")
    assert r.status == 200
    assert "1 参加互助" in r.reply and "6 基金公示" in r.reply


def test_safe_mode_round_trip(safe_bot):
    running, v = safe_bot
    r = v.text("o_safe", "0")
    assert r.status == 200
    assert "<Encrypt>" in r.raw and "参加互助" not in r.raw  # the answer itself is encrypted
    assert "1 参加互助" in r.reply


def test_voice_uses_the_recognition_text(villager):
    r = villager.voice("o_voice", "帮助。")
    assert "1 参加互助" in r.reply


def test_click_event_works_like_the_word(villager):
    r = villager.click("o_click", "MENU_HELP")
    assert "1 参加互助" in r.reply


def test_subscribe_through_a_village_qr_tags_the_user(villager, db):
    from core.models import Village

    with db.session() as s:
        village = s.scalars(select(Village).order_by(Village.id)).first()
        vid, name = village.id, village.full_name
    r = villager.subscribe("o_qr", scene=f"village:{vid}")
    assert name in r.reply
    with db.session() as s:
        user = s.scalar(select(WechatUser).where(WechatUser.openid == "o_qr"))
        assert user.village_id == vid and user.subscribed


def test_unsubscribe_is_recorded_and_answered_with_success(villager, db):
    villager.post("o_bye", villager._xml("o_bye", "event", {"Event": "subscribe"},
                                         create_time=1700000000))
    r = villager.post("o_bye", villager._xml("o_bye", "event", {"Event": "unsubscribe"},
                                             create_time=1700000005))
    assert r.status == 200 and r.raw == "success"
    with db.session() as s:
        assert not s.scalar(select(WechatUser.subscribed).where(WechatUser.openid == "o_bye"))


def test_unknown_message_type_gets_a_clear_answer(villager):
    xml = villager._xml("o_loc", "location", {"Location_X": "31.2", "Location_Y": "121.4"})
    r = villager.post("o_loc", xml)
    assert r.status == 200 and "文字、语音和图片" in r.reply


def test_unknown_event_is_acknowledged(villager):
    r = villager.event("o_evt", "VIEW_MINIPROGRAM", "x")
    assert r.status == 200 and r.raw == "success"


def test_long_text_emoji_and_empty_text(villager, db):
    long = villager.text("o_long", "好" * 10_000)
    assert long.status == 200 and "太长" in long.reply and "10000" in long.reply
    emoji = villager.text("o_emoji", "👍🏻😀")
    assert emoji.status == 200 and "没有看懂" in emoji.reply and "1 参加互助" in emoji.reply
    empty = villager.text("o_empty", "")
    assert empty.status == 200 and "空消息" in empty.reply


# -- bad requests change nothing ---------------------------------------------------------------

def _post_raw(bot, cfg, body: bytes, params: dict | None = None):
    p = signed_params(cfg.WECHAT_TOKEN) if params is None else params
    return requests.post(f"{bot.url}/wechat", params=p, data=body, timeout=10)


def test_forged_or_missing_signature_is_403_and_stores_nothing(bot, cfg, villager, db):
    xml = villager.text_xml("o_forged", "帮助")
    forged = villager.post("o_forged", xml, signature="0" * 40)
    assert forged.status == 403
    missing = requests.post(f"{bot.url}/wechat", data=xml.encode(), timeout=5)
    assert missing.status_code == 403
    assert inbound_count(db) == 0


@pytest.mark.parametrize("body", [
    b"not xml at all",
    b"<xml><ToUserName>a</ToUserName>",  # truncated
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<xml><FromUserName>&xxe;</FromUserName><MsgType>text</MsgType></xml>",
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
    b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 '
    b'"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;'
    b"</Content></xml>",
    b"<xml><Content>no sender</Content></xml>",
], ids=["non-xml", "truncated", "xxe", "entity-bomb", "not-a-message"])
def test_hostile_or_malformed_xml_is_400_and_stores_nothing(bot, cfg, db, body):
    r = _post_raw(bot, cfg, body)
    assert r.status_code == 400
    assert "Traceback" not in r.text
    assert inbound_count(db) == 0


def test_a_1mb_body_is_400(bot, cfg, db):
    body = b"<xml><Content>" + b"a" * (1024 * 1024) + b"</Content></xml>"
    r = _post_raw(bot, cfg, body)
    assert r.status_code == 400 and r.text == "bad request"
    assert inbound_count(db) == 0


def test_wrong_aes_key_is_refused_and_stores_nothing(safe_bot, db, cfg):
    running, good = safe_bot
    wrong = Villager(running.url, good.token, good.app_id,
                     "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", good.emulator)
    r = wrong.text("o_wrongkey", "帮助")
    assert r.status == 400
    plain = Villager(running.url, good.token, good.app_id, "", good.emulator)
    assert plain.text("o_plain_in_safe", "帮助").status == 400
    assert inbound_count(db) == 0


def test_bad_input_leaves_only_a_masked_log_line(bot, cfg, villager, db, caplog):
    caplog.set_level("INFO")
    villager.post("o_log", villager.text_xml("o_log", f"我的身份证 {ID_NUMBER}"),
                  signature="f" * 40)
    villager.text("o_log2", f"我的身份证 {ID_NUMBER}")
    logs = caplog.text
    assert "webhook refused status=403" in logs
    assert ID_NUMBER not in logs and ID_NUMBER[:-4] not in logs


# -- retries and the reply budget -------------------------------------------------------------

@pytest.fixture
def counting_dialogue():
    """A dialogue that counts the messages it gets, to see state changes."""
    def entry(ctx, msg, data):
        return say("第1条", state="counting", data={"n": 1})

    def counting(ctx, msg, data):
        if msg.text == "慢":
            time.sleep(1.5)
        n = data["n"] + 1
        return say(f"第{n}条", state="counting", data={"n": n})

    d = dialogue.register(Dialogue("counter", entry, {"counting": counting}, words=("计数",)))
    yield d
    dialogue.REGISTRY.pop("counter", None)


def post_at_once(villager, openid: str, xml: str, copies: int) -> list:
    """The same message posted by `copies` threads at once, as WeChat's retries may come."""
    results, threads = [], []
    for _ in range(copies):
        t = threading.Thread(target=lambda: results.append(villager.post(openid, xml)))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_reply_quoting_words_with_the_end_of_cdata_in_them_stays_whole(villager):
    """`查病种 甲]]>乙`: the reply quotes the words. Written in one CDATA section, their "]]>"
    would end it early and WeChat could not read the reply; split, it reads whole."""
    from bot.web.wxml import parse_flat

    words = "甲]]>乙"
    r = villager.post("o_cdata", villager.text_xml("o_cdata", "查病种 " + words))
    assert r.status == 200
    fields = parse_flat(r.raw.encode())
    assert f"“{words}”" in fields["Content"] and fields["ToUserName"] == "o_cdata"
    assert fields["MsgType"] == "text" and fields["CreateTime"].isdigit()


def test_retry_storm_gives_one_state_change_and_the_same_reply(villager, db, counting_dialogue):
    villager.text("o_storm", "计数")
    xml = villager.text_xml("o_storm", "再来", msg_id=777000111)
    results = post_at_once(villager, "o_storm", xml, copies=4)
    assert [r.status for r in results] == [200] * 4
    assert {r.reply for r in results} == {"第2条"}
    from core.models import DialogueState
    with db.session() as s:
        assert s.get(DialogueState, "o_storm").data == {"n": 2}
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.dedupe_key == "msg:o_storm:777000111")) == 1


def test_a_new_users_first_message_retried_at_once_makes_one_user_and_one_reply(villager, db):
    xml = villager.text_xml("o_first_storm", "帮助", msg_id=777000222)
    results = post_at_once(villager, "o_first_storm", xml, copies=4)
    assert [r.status for r in results] == [200] * 4
    assert len({r.reply for r in results}) == 1 and "1 参加互助" in results[0].reply
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(WechatUser).where(
            WechatUser.openid == "o_first_storm")) == 1
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.dedupe_key == "msg:o_first_storm:777000222")) == 1


def test_event_retries_are_dropped_by_sender_and_time(villager, db):
    xml = villager._xml("o_evt_retry", "event", {"Event": "subscribe"}, create_time=1700000000)
    first = villager.post("o_evt_retry", xml)
    again = villager.post("o_evt_retry", xml)
    assert first.reply and again.reply == first.reply
    assert inbound_count(db) == 1


def test_slow_handling_answers_success_and_delivers_through_the_outbox(
        tmp_path, db, db_url, emulator, counting_dialogue):
    from bot.web.app import AppContext
    from bot.server import bootstrap
    from tests.conftest import make_cfg, start_bot

    cfg = make_cfg(tmp_path, db_url, emulator, REPLY_BUDGET_SECONDS=0.5)
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    try:
        v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        since = v.last_call_id()
        first = v.text("o_slow", "计数")
        if not first.reply:  # a loaded machine took the first message past the 0.5 s budget:
            # its reply comes through the outbox; wait for it, so it is not taken for the next
            first = ChatResult(200, "", v.wait_pushes("o_slow", since, 5), "success")
        assert first.all_text.strip() == "第1条"
        started = time.monotonic()
        r = v.text("o_slow", "慢", wait=5)
        assert r.status == 200 and r.raw == "success"
        assert r.pushed_texts == ["第2条"]
        assert time.monotonic() - started < 6
    finally:
        running.stop()


def _in_background(fn) -> threading.Thread:
    t = threading.Thread(target=fn)
    t.start()
    return t


def test_the_line_gathers_messages_on_their_way_when_behind_but_not_when_idle(monkeypatch):
    """A message that finds the line idle is handled at once; when the line ends a batch with
    messages already waiting, it waits a moment (LINGER_SECONDS, 1 s here) so that those still
    on their way join the same batch."""
    from bot.web import webhook as wh

    monkeypatch.setattr(wh._Line, "LINGER_SECONDS", 1.0)
    batches: list[tuple[float, list[str]]] = []
    holding = threading.Event()
    let_go = threading.Event()

    def handle(items):
        batches.append((time.monotonic(), [item.msg for item in items]))
        if len(batches) == 1:
            holding.set()
            let_go.wait(10)
        for item in items:
            item.future.set_result([item.msg])

    line = wh._Line(handle)
    sent = time.monotonic()
    a = line.submit("A", None, wh._Ticket())
    assert holding.wait(5)
    assert batches[0][0] - sent < 0.5  # idle: no waiting
    b = line.submit("B", None, wh._Ticket())  # queues while A is handled
    let_go.set()
    time.sleep(0.3)
    c = line.submit("C", None, wh._Ticket())  # arrives while the line waits
    assert [f.result(5) for f in (a, b, c)] == [["A"], ["B"], ["C"]]
    assert [names for _, names in batches] == [["A"], ["B", "C"]]
    time.sleep(0.3)  # the line is back to waiting, idle
    sent = time.monotonic()
    assert line.submit("D", None, wh._Ticket()).result(5) == ["D"]
    assert batches[-1][1] == ["D"] and batches[-1][0] - sent < 0.5  # idle again: at once


def test_messages_queued_together_are_handled_together_and_apart(
        villager, db, counting_dialogue, monkeypatch):
    """While one message keeps the bot busy, the messages that arrive queue up and are handled
    as one batch (one transaction): each still gets its own answer, a failing one undoes only
    itself, copies of one message are answered once, and a user's second message sees what
    the first one changed."""
    from core.models import DialogueState

    villager.text("o_busy", "计数")
    villager.text("o_fails", "计数")
    villager.text("o_twice", "计数")
    counting = counting_dialogue.states["counting"]

    def sometimes_broken(ctx, msg, data):
        if msg.text == "坏":
            ctx.session.get(DialogueState, ctx.openid).data = {"n": 99}  # undone with it
            ctx.session.flush()  # written before the failure: the SAVEPOINT undoes it
            raise RuntimeError("boom")
        return counting(ctx, msg, data)

    monkeypatch.setitem(counting_dialogue.states, "counting", sometimes_broken)
    busy = _in_background(lambda: villager.text("o_busy", "慢"))  # 1.5 s in the handler
    time.sleep(0.3)
    answers: dict[str, list] = {}

    def send(key, openid, text, msg_id):
        def go():
            answers.setdefault(key, []).append(
                villager.post(openid, villager.text_xml(openid, text, msg_id=msg_id)))
        return _in_background(go)

    threads = [send("new", "o_newcomer", "计数", 888000001),
               send("fails", "o_fails", "坏", 888000002),
               *[send("copies", "o_copies", "帮助", 888000003) for _ in range(3)]]
    threads.append(send("first", "o_twice", "再来", 888000004))
    time.sleep(0.1)  # the same user's next message queues behind the first
    threads.append(send("second", "o_twice", "又来", 888000005))
    for t in [*threads, busy]:
        t.join()

    assert answers["new"][0].reply == "第1条"
    assert "没有保存" in answers["fails"][0].reply
    assert [r.reply for r in answers["copies"]] == [answers["copies"][0].reply] * 3
    assert "1 参加互助" in answers["copies"][0].reply
    assert answers["first"][0].reply == "第2条" and answers["second"][0].reply == "第3条"
    with db.session() as s:
        assert s.get(DialogueState, "o_fails").data == {"n": 1}
        assert s.get(DialogueState, "o_twice").data == {"n": 3}
        assert s.get(DialogueState, "o_newcomer").data == {"n": 1}
        keys = set(s.scalars(select(InboundMessage.dedupe_key).where(
            InboundMessage.dedupe_key.like("msg:%:888%"))))
        # the failed message stored nothing: WeChat's retry of it is handled afresh
        assert keys == {"msg:o_newcomer:888000001", "msg:o_copies:888000003",
                        "msg:o_twice:888000004", "msg:o_twice:888000005"}
    monkeypatch.setitem(counting_dialogue.states, "counting", counting)
    retry = villager.post("o_fails", villager.text_xml("o_fails", "坏", msg_id=888000002))
    assert retry.reply == "第2条"


def test_many_users_at_once_each_get_their_own_answer(villager, db):
    """32 users writing at the same moment: every one answered as if alone, every message
    stored once, no error."""
    results = {}

    def one(i):
        r = villager.text(f"o_crowd_{i:02d}", "帮助" if i % 2 else "你好")
        results[i] = r

    threads = [_in_background(lambda i=i: one(i)) for i in range(32)]
    for t in threads:
        t.join()
    assert all(results[i].status == 200 for i in range(32))
    assert all("1 参加互助" in results[i].reply for i in range(32))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(WechatUser).where(
            WechatUser.openid.like("o_crowd_%"))) == 32
    assert inbound_count(db) == 32


def test_a_handler_error_changes_nothing_and_says_so(villager, db, counting_dialogue, monkeypatch):
    villager.text("o_err", "计数")

    def broken(ctx, msg, data):
        raise RuntimeError(f"boom {ID_NUMBER}")

    monkeypatch.setitem(counting_dialogue.states, "counting", broken)
    r = villager.text("o_err", "再来")
    assert r.status == 200 and "没有保存" in r.reply
    from core.models import DialogueState
    with db.session() as s:
        assert s.get(DialogueState, "o_err").data == {"n": 1}


def test_the_server_copies_the_sqlite_log_into_the_database_file_by_itself(
        tmp_path, emulator):
    """Checkpoints run beside the messages (not inside the commit that crosses 1000 pages of
    log, which made every queued message wait): after a few messages and a moment, the
    database file alone — without its -wal log — holds them."""
    import shutil
    import sqlite3

    from bot.web.app import AppContext
    from bot.server import bootstrap
    from core.db import Database
    from tests.conftest import make_cfg, start_bot

    path = tmp_path / "own.db"
    db = Database(f"sqlite:///{path}")
    cfg = make_cfg(tmp_path, f"sqlite:///{path}", emulator)
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    try:
        v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        for i in range(5):
            assert "1 参加互助" in v.text(f"o_ckpt_{i}", "帮助").reply
        with db.engine.connect() as conn:  # the server's connections leave it to the thread
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            shutil.copyfile(path, tmp_path / "copy.db")  # the file without its log
            with sqlite3.connect(tmp_path / "copy.db") as copy:
                stored = copy.execute("SELECT count(*) FROM inbound_message").fetchone()[0]
            if stored == 5:
                break
            time.sleep(0.2)
        assert stored == 5
    finally:
        running.stop()
        db.dispose()


def test_a_dropped_database_connection_costs_no_message(villager, db):
    """The thread that handles messages keeps its database connection between batches; when
    the server drops it, the message in hand is handled again on a fresh one and the next
    batches use a new connection."""
    if not db.is_postgres:
        pytest.skip("PostgreSQL ends connections from the server side; SQLite has none to end")
    assert "1 参加互助" in villager.text("o_dropped", "帮助").reply
    with db.engine.connect() as conn:
        ended = conn.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar()
    assert ended >= 1
    for i in range(3):
        r = villager.text("o_dropped", "帮助" if i % 2 else "0")
        assert r.status == 200 and "1 参加互助" in r.reply
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.openid == "o_dropped")) == 4


def test_a_dialogue_that_calls_out_holds_up_no_one_else(villager, db):
    """The message that starts a dialogue calling a service outside (WeChat Pay's order, for
    缴费) is handled beside the other villagers' messages: while that service is slow, others
    are still answered at once — on PostgreSQL. On SQLite the slow dialogue's transaction holds
    the one write lock, so the others wait for it (as they did before batches); both are
    answered."""
    def slow_entry(ctx, msg, data):
        time.sleep(1.5)  # a slow answer from outside
        return say("订单好了")

    d = dialogue.register(Dialogue("slow_out", slow_entry, {}, words=("慢付",), calls_out=True))
    try:
        slow = {}
        t = _in_background(lambda: slow.setdefault("r", villager.text("o_pays", "慢付")))
        time.sleep(0.3)
        started = time.monotonic()
        quick = villager.text("o_asks", "帮助")
        waited = time.monotonic() - started
        t.join()
        assert "1 参加互助" in quick.reply and slow["r"].reply == "订单好了"
        if db.is_postgres:
            assert waited < 1.0
    finally:
        dialogue.REGISTRY.pop(d.name, None)


def test_the_payment_dialogue_calls_out_no_more():
    """WeChat Pay is called by the outbox (bot/outbox/pay_qr.py), not by the dialogue: its
    messages go on the line with everyone else's."""
    from handlers import payment  # noqa: F401  (registers the dialogue)

    assert not dialogue.REGISTRY["payment"].calls_out
    assert not dialogue.REGISTRY["balance"].calls_out


# -- the WSGI front of POST /wechat -----------------------------------------------------------

def test_answers_carry_their_content_type_and_other_methods_reach_the_app(bot, cfg, villager):
    """POST /wechat is answered in front of the Flask app: the reply is XML in UTF-8, a
    `success` is plain text, GET still verifies the URL, other methods are refused as before."""
    r = requests.post(f"{bot.url}/wechat", params=signed_params(cfg.WECHAT_TOKEN),
                      data=villager.text_xml("o_ctype", "帮助").encode(), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert "1 参加互助" in r.content.decode("utf-8")
    assert int(r.headers["Content-Length"]) == len(r.content)
    gone = requests.post(f"{bot.url}/wechat", params=signed_params(cfg.WECHAT_TOKEN),
                         data=villager._xml("o_ctype", "event", {"Event": "unsubscribe"}).encode(),
                         timeout=5)
    assert gone.text == "success"
    assert gone.headers["Content-Type"] == "text/plain; charset=utf-8"
    for method in ("PUT", "DELETE"):
        assert requests.request(method, f"{bot.url}/wechat", timeout=5).status_code == 405
    assert requests.post(f"{bot.url}/wechat/", timeout=5).status_code == 404


def test_a_repeated_signature_parameter_counts_once_as_the_first(bot, cfg, villager, db):
    """`?signature=forged&signature=good`: the first one is checked (as the URL verification
    does), so appending a good signature to a forged request does not get it in."""
    good = signed_params(cfg.WECHAT_TOKEN)
    query = (f"timestamp={good['timestamp']}&nonce={good['nonce']}"
             f"&signature={'0' * 40}&signature={good['signature']}")
    r = requests.post(f"{bot.url}/wechat?{query}",
                      data=villager.text_xml("o_twosigs", "帮助").encode(), timeout=5)
    assert r.status_code == 403
    assert inbound_count(db) == 0


def test_an_unexpected_failure_is_a_plain_500_without_a_trace(bot, cfg, villager, db,
                                                               monkeypatch, caplog):
    import bot.web.webhook as webhook

    def broken(fields):
        raise RuntimeError(f"boom {ID_NUMBER}")

    monkeypatch.setattr(webhook, "to_incoming", broken)
    r = _post_raw(bot, cfg, villager.text_xml("o_500", "帮助").encode())
    assert r.status_code == 500 and r.text == "internal error"
    assert "Traceback" not in r.text and ID_NUMBER not in r.text
    assert inbound_count(db) == 0
    monkeypatch.undo()
    assert "1 参加互助" in villager.text("o_500", "帮助").reply  # the next one is served


# -- durability --------------------------------------------------------------------------------

def test_only_bookkeeping_commits_without_waiting_for_the_disk(db):
    """On PostgreSQL a batch whose messages only read (their dedupe rows, last inbound times
    and new users are all it writes) commits without waiting for the disk; a batch in which
    one message changed anything, or that put anything in the outbox, waits as usual."""
    if not db.is_postgres:
        pytest.skip("SQLite commits every transaction the same way (WAL, synchronous=NORMAL)")
    from sqlalchemy import text, update

    from core import outbox
    from bot.web.inbox import Inbox, Stored
    from core.models import DialogueState

    inbox = Inbox(db)

    def batch_of(openid: str, key: str, change=None) -> str:
        with inbox.batch() as batch:
            batch.senders([openid], [key])
            sender = batch.new_user(openid)
            scope = batch.message()
            scope.session.get(WechatUser, sender.user_id)  # a read
            if change:
                change(scope.session, openid)
            scope.flush()
            scope.close()
            batch.finish([Stored(sender, openid, key, "text", ["好"])], {sender.user_id})
            return batch.cursor.execute("SHOW synchronous_commit").fetchone()[0]

    try:
        assert batch_of("o_dur_read", "msg:dur1") == "off"
        assert batch_of("o_dur_state", "msg:dur2", lambda s, o: s.add(
            DialogueState(openid=o, dialogue="counter", state="counting", data={}))) == "on"
        assert batch_of("o_dur_out", "msg:dur3",
                        lambda s, o: outbox.send_text(s, o, "稍后的回复")) == "on"
        # writes that pass no ORM hook: SQL text, and Core on the session's connection
        assert batch_of("o_dur_text", "msg:dur4", lambda s, o: s.execute(text(
            "UPDATE wechat_user SET subscribed = false WHERE openid = :o"), {"o": o})) == "on"
        assert batch_of("o_dur_core", "msg:dur5", lambda s, o: s.connection().execute(
            update(WechatUser).where(WechatUser.openid == o).values(subscribed=False))) == "on"
    finally:
        inbox.close()
    with db.session() as s:  # all committed
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.dedupe_key.like("msg:dur%"))) == 5


def test_a_batch_that_only_reads_opens_no_transaction_and_a_locking_read_does(db):
    """On PostgreSQL the line's batch begins its transaction at its first write: a batch whose
    messages only read costs its read and its write (BEGIN and COMMIT would be two round trips
    more). A read that takes a lock (FOR UPDATE, an advisory lock) counts as a write: it runs
    inside the transaction, and its lock is held until the batch commits."""
    if not db.is_postgres:
        pytest.skip("SQLite's transaction is begun by the engine, on its own file")
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from bot.web.inbox import Inbox, Stored

    with db.session() as s:
        s.add(WechatUser(openid="o_lock_a", subscribed=True))
    inbox = Inbox(db)

    def status(batch) -> int:
        return batch.cursor.connection.info.transaction_status

    try:
        with inbox.batch() as batch:  # read only
            senders, _ = batch.senders(["o_lock_a"], ["msg:lock1"])
            scope = batch.message()
            scope.session.get(WechatUser, senders["o_lock_a"].user_id)
            scope.flush()
            scope.close()
            assert status(batch) == 0  # idle: nothing begun
            batch.finish([Stored(senders["o_lock_a"], "o_lock_a", "msg:lock1", "text", ["好"])],
                         {senders["o_lock_a"].user_id})
            assert status(batch) == 0  # the write committed alone

        with inbox.batch() as batch:  # a locking read
            senders, _ = batch.senders(["o_lock_a"], ["msg:lock2"])
            scope = batch.message()
            scope.session.scalar(select(WechatUser).where(WechatUser.openid == "o_lock_a")
                                 .with_for_update())
            assert status(batch) == 2  # in a transaction
            with db.engine.connect() as other:
                other.execute(text("SET lock_timeout = '200ms'"))
                with pytest.raises(OperationalError):
                    other.execute(text("SELECT id FROM wechat_user WHERE openid = 'o_lock_a' "
                                       "FOR UPDATE"))
            scope.flush()
            scope.close()
            batch.finish([Stored(senders["o_lock_a"], "o_lock_a", "msg:lock2", "text", ["好"])],
                         {senders["o_lock_a"].user_id})
    finally:
        inbox.close()
    with db.engine.connect() as other:  # committed, and the lock let go
        other.execute(text("SET lock_timeout = '200ms'"))
        assert other.execute(text("SELECT count(*) FROM inbound_message WHERE dedupe_key "
                                  "LIKE 'msg:lock%'")).scalar() == 2
        other.execute(text("SELECT id FROM wechat_user WHERE openid = 'o_lock_a' FOR UPDATE"))


@pytest.mark.parametrize("how", ["orm", "text", "core"])
def test_a_failed_message_is_undone_alone_however_it_wrote(db, how):
    """In a batch, a message whose handler wrote (through the ORM, SQL text or Core on the
    session's connection) and then failed is undone alone; the next message's write stays."""
    from sqlalchemy import text, update

    from bot.web.inbox import Inbox, Stored

    with db.session() as s:
        s.add_all([WechatUser(openid=f"o_undo_{how}_a", subscribed=True),
                   WechatUser(openid=f"o_undo_{how}_b", subscribed=True)])

    def unsubscribe(session, openid):
        if how == "orm":
            session.scalar(select(WechatUser).where(WechatUser.openid == openid)).subscribed = False
            session.flush()
        elif how == "text":
            session.execute(text("UPDATE wechat_user SET subscribed = :f WHERE openid = :o"),
                            {"f": False, "o": openid})
        else:
            session.connection().execute(update(WechatUser).where(WechatUser.openid == openid)
                                         .values(subscribed=False))

    inbox = Inbox(db)
    try:
        with inbox.batch() as batch:
            senders, _ = batch.senders([f"o_undo_{how}_a", f"o_undo_{how}_b"], [])
            failed = batch.message()
            unsubscribe(failed.session, f"o_undo_{how}_a")
            failed.undo()  # its handler raised after writing
            failed.close()
            kept = batch.message()
            unsubscribe(kept.session, f"o_undo_{how}_b")
            kept.flush()
            kept.close()
            sender = senders[f"o_undo_{how}_b"]
            batch.finish([Stored(sender, f"o_undo_{how}_b", f"msg:undo:{how}", "text", ["好"])],
                         {sender.user_id})
    finally:
        inbox.close()
    with db.session() as s:
        subscribed = dict(s.execute(select(WechatUser.openid, WechatUser.subscribed).where(
            WechatUser.openid.like(f"o_undo_{how}_%"))).all())
    assert subscribed == {f"o_undo_{how}_a": True, f"o_undo_{how}_b": False}


def test_the_dedupe_look_up_keeps_using_its_index_as_the_table_grows(db):
    """Each batch looks its dedupe keys up in inbound_message, which grows by every message
    ever received (and its senders in wechat_user, its signed queries in webhook_nonce). The
    look-up must stay an index look-up: a plan kept from when the table was small (a prepared
    statement's generic plan) scanned the whole table for every batch, and the bot slowed down
    message after message until the next ANALYZE. The line's statements are prepared (their
    plan kept) from the first batch on."""
    if not db.is_postgres:
        pytest.skip("SQLite plans every statement afresh from its indexes")
    from sqlalchemy import text

    from bot.web.inbox import Inbox

    inbox = Inbox(db)

    def batch_scans(n: int) -> int:
        """Whole-table scans of inbound_message, wechat_user and webhook_nonce by one batch's
        look-up (a prepared statement: its plan is kept on the line's connection)."""
        scans = ("SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_xact_user_tables "
                 "WHERE relname IN ('inbound_message', 'wechat_user', 'webhook_nonce')")
        with inbox.batch() as batch:
            before = batch.cursor.execute(scans).fetchone()[0]
            batch.senders([f"o_grow_{n}_{i}" for i in range(30)],  # a busy moment's batch
                          [f"msg:grow:{n}:{i}" for i in range(30)],
                          [f"q:grow:{n}:{i}" for i in range(30)])
            return batch.cursor.execute(scans).fetchone()[0] - before

    try:
        for n in range(12):  # while the tables are small
            batch_scans(n)
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO inbound_message (dedupe_key, openid, msg_type, received_at, done) "
                "SELECT 'msg:old:' || i, 'o_old', 'text', now(), true "
                "FROM generate_series(1, 50000) AS i"))
            conn.execute(text(
                "INSERT INTO wechat_user (openid, subscribed, pushes_since_inbound, created_at) "
                "SELECT 'o_old_' || i, true, 0, now() FROM generate_series(1, 20000) AS i"))
            conn.execute(text(
                "INSERT INTO webhook_nonce (nonce, dedupe_key, expires_at) "
                "SELECT 'q:old:' || i, 'msg:old:' || i, now() + interval '1 hour' "
                "FROM generate_series(1, 20000) AS i"))
        assert [batch_scans(100 + n) for n in range(20)] == [0] * 20
    finally:
        inbox.close()


def test_the_line_plans_its_look_up_afresh_from_time_to_time(db, monkeypatch):
    """The batch's look-up is prepared once on the line's connection and run on it batch
    after batch; every REPLAN_SECONDS it is prepared anew, so no plan outlives the table
    sizes it was chosen for."""
    if not db.is_postgres:
        pytest.skip("SQLite plans every statement afresh from its indexes")
    from bot.web.inbox import Inbox

    def runs_on_one_preparation(inbox: Inbox) -> list[int]:
        runs = []
        for n in range(4):
            with inbox.batch() as batch:
                batch.senders([f"o_plan_{n}"], [f"msg:plan:{n}"])
                runs.append(batch.cursor.execute(
                    "SELECT coalesce(max(generic_plans + custom_plans), 0) "
                    "FROM pg_prepared_statements "
                    "WHERE statement LIKE '%FROM wechat_user u%'").fetchone()[0])
        inbox.close()
        return runs

    assert runs_on_one_preparation(Inbox(db)) == [1, 2, 3, 4]
    monkeypatch.setattr(Inbox, "REPLAN_SECONDS", 0.0)
    assert runs_on_one_preparation(Inbox(db)) == [1, 1, 1, 1]


def test_the_body_is_read_as_far_as_its_length_and_no_further(bot, cfg, villager):
    """Whatever the server hands over: the body ends at Content-Length (what follows is not
    read), and without a length — unless the server says its stream ends by itself — there is
    no body (400), rather than a read that waits for ever."""
    import io
    from urllib.parse import urlencode

    xml = villager.text_xml("o_len", "帮助").encode()
    answers = []

    def call(body: bytes, **environ) -> tuple[str, str]:
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/wechat", "SCRIPT_NAME": "",
               "QUERY_STRING": urlencode(signed_params(cfg.WECHAT_TOKEN)),
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", **environ}
        out = b"".join(bot.app.wsgi_app(env, lambda status, headers: answers.append(status)))
        return answers[-1], out.decode()

    status, body = call(xml + b"<junk>", CONTENT_LENGTH=str(len(xml)))
    assert status == "200 OK" and "1 参加互助" in body
    status, body = call(xml)  # no length, a stream that may never end
    assert status == "400 Bad Request" and body == "bad request"
    status, body = call(xml, **{"wsgi.input_terminated": True})  # the server ends it
    assert status == "200 OK" and "1 参加互助" in body


def test_a_chunked_message_and_a_doubled_slash_are_answered_too(bot, cfg, villager):
    xml = villager.text_xml("o_chunked", "帮助").encode()
    chunked = requests.post(f"{bot.url}/wechat", params=signed_params(cfg.WECHAT_TOKEN),
                            data=iter([xml[:40], xml[40:]]), timeout=5)
    assert chunked.status_code == 200 and "1 参加互助" in chunked.text
    doubled = requests.post(f"{bot.url}//wechat", params=signed_params(cfg.WECHAT_TOKEN),
                            data=villager.text_xml("o_doubled", "帮助").encode(), timeout=5)
    assert doubled.status_code == 200 and "1 参加互助" in doubled.text


def test_raw_utf8_in_the_query_is_read_as_utf8(bot, cfg, villager, db):
    """A server that passes raw UTF-8 bytes of the URL on (as WSGI's Latin-1 text; waitress
    itself refuses such a URL with 400) gets them checked as the text they are: a nonce signed
    right is answered, one signed for the misread text is refused."""
    import io

    ts, nonce = str(int(time.time())), "随机"
    as_wsgi = nonce.encode().decode("latin-1")  # how WSGI hands the bytes over
    answers = []

    def call(openid: str, signature: str) -> tuple[str, str]:
        xml = villager.text_xml(openid, "帮助").encode()
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/wechat", "SCRIPT_NAME": "",
               "QUERY_STRING": f"timestamp={ts}&nonce={as_wsgi}&signature={signature}",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_LENGTH": str(len(xml)), "wsgi.input": io.BytesIO(xml),
               "wsgi.url_scheme": "http"}
        out = b"".join(bot.app.wsgi_app(env, lambda status, headers: answers.append(status)))
        return answers[-1], out.decode()

    before = inbound_count(db)
    status, _ = call("o_raw_wrong", sign(cfg.WECHAT_TOKEN, ts, as_wsgi))
    assert status == "403 Forbidden" and inbound_count(db) == before
    status, body = call("o_raw_right", sign(cfg.WECHAT_TOKEN, ts, nonce))
    assert status == "200 OK" and "1 参加互助" in body


@pytest.fixture
def calling_out(monkeypatch):
    """The payment entry (`2`, 缴费) as a dialogue that notes the thread it ran on, and a quiz
    dialogue whose question is answered by `1` or `2`."""
    threads: list[tuple[str, str]] = []

    def pay_entry(ctx, msg, data):
        threads.append(("payment", threading.current_thread().name))
        return say("付款码来了")

    def quiz_entry(ctx, msg, data):
        return say("几个人？回复 1 或 2", state="count")

    def quiz_count(ctx, msg, data):
        threads.append(("quiz", threading.current_thread().name))
        return say(f"记下了：{msg.text} 人")

    monkeypatch.setitem(dialogue.REGISTRY, "payment",
                        Dialogue("payment", pay_entry, {}, calls_out=True))
    quiz = dialogue.register(Dialogue("quiz", quiz_entry, {"count": quiz_count}, words=("问答",)))
    yield threads
    dialogue.REGISTRY.pop(quiz.name, None)


def test_a_menu_number_inside_a_dialogue_answers_it_on_the_line(villager, calling_out):
    """`2` is the payment's menu number, which calls WeChat Pay and so runs beside the line of
    villagers' messages; inside an open dialogue the same `2` answers the dialogue — and the
    webhook's choice of line follows the same route, so the answer runs on the line."""
    assert villager.text("o_quiz", "问答").reply == "几个人？回复 1 或 2"
    assert villager.text("o_quiz", "2").reply == "记下了：2 人"
    assert calling_out == [("quiz", "huzhu-line")]


def test_the_payment_starts_beside_the_line_from_the_menu_or_a_dialogue(villager, calling_out):
    """Outside a dialogue `2` starts the payment beside the line; inside one, the payment's
    word (缴费) leaves the dialogue for the payment, beside the line as well."""
    assert villager.text("o_payer", "2").reply == "付款码来了"
    assert villager.text("o_quiz2", "问答").reply == "几个人？回复 1 或 2"
    assert villager.text("o_quiz2", "缴费").reply == "付款码来了"
    assert [who for who, _ in calling_out] == ["payment", "payment"]
    assert all(thread.startswith("huzhu-msg") for _, thread in calling_out)
    # the dialogue was left: a number is the menu's again
    assert villager.text("o_quiz2", "2").reply == "付款码来了"


def test_a_villager_without_household_or_claim_costs_no_look_up_of_them(villager, db):
    """What the webhook reads with the sender says whether they act for a household and whether
    a claim of theirs can still be appealed: a text the menu does not know, or 5 查询余额, from
    someone with neither is answered without looking either up again."""
    from sqlalchemy import event

    villager.text("o_nolookup", "帮助")  # known from now on
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert "没有看懂" in villager.text("o_nolookup", "你好呀").reply
        assert "查不到余额" in villager.text("o_nolookup", "5").reply
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert not [s for s in sent if "household_link" in s or "claim" in s]


def _write_once(url: str, started, done) -> None:
    from core.db import Database

    db = Database(url)
    started.set()
    with db.session():
        done.value = time.time()
    db.dispose()


def test_sqlite_processes_take_turns_to_write_on_the_writer_lock(tmp_path):
    """gunicorn's web processes and the worker on one SQLite file: a process whose turn to
    write has not come waits on the writer lock and writes as soon as the holder lets go."""
    import multiprocessing as mp

    from core.db import Database

    url = f"sqlite:///{tmp_path}/turns.db"
    db = Database(url)
    db.upgrade()
    ctx = mp.get_context("spawn")
    started, done = ctx.Event(), ctx.Value("d", 0.0)
    with db.writing():
        other = ctx.Process(target=_write_once, args=(url, started, done))
        other.start()
        assert started.wait(60)
        time.sleep(0.3)
        assert done.value == 0.0  # still waiting for its turn
        released = time.time()
    other.join(60)
    assert other.exitcode == 0 and done.value >= released
    assert (tmp_path / "turns.db.writer").exists()
    db.dispose()


def _hold_the_write_lock(url: str, started, released, seconds: float) -> None:
    """Another web process on the same SQLite file, in the middle of a write."""
    from sqlalchemy import text

    from core.db import Database

    db = Database(url)
    with db.session() as s:
        s.execute(text("UPDATE wechat_user SET subscribed = subscribed WHERE openid = 'o_rf'"))
        started.set()
        time.sleep(seconds)
        released.value = time.time()
    db.dispose()


def test_a_sqlite_line_reads_and_routes_while_another_process_writes(db, db_url):
    """Two web processes on one SQLite file: while one writes, the other's line reads its
    batch and routes its messages, and waits for the write lock only to write. Holding the
    lock from the start of every batch made the two lines take turns (bench/webhook.py,
    gunicorn -w 2: each line waited a third of the time for the other's batch)."""
    if db.is_postgres:
        pytest.skip("PostgreSQL's batches take no file lock to wait for")
    import multiprocessing as mp

    from bot.web.inbox import Inbox, Stored

    with db.session() as s:
        s.add(WechatUser(openid="o_rf", subscribed=True))
    ctx = mp.get_context("spawn")
    started, released = ctx.Event(), ctx.Value("d", 0.0)
    other = ctx.Process(target=_hold_the_write_lock, args=(db_url, started, released, 1.5))
    other.start()
    inbox = Inbox(db)
    try:
        assert started.wait(60)
        with inbox.batch() as batch:
            senders, seen = batch.senders(["o_rf"], ["msg:rf1"])
            scope = batch.message()
            user = scope.session.get(WechatUser, senders["o_rf"].user_id)
            scope.flush()
            scope.close()
            read_at = time.time()
            batch.finish([Stored(senders["o_rf"], "o_rf", "msg:rf1", "text", ["好"])],
                         {user.id})
            written_at = time.time()
        assert released.value == 0.0 or read_at < released.value  # read while it wrote
        other.join(60)
        assert other.exitcode == 0 and written_at >= released.value > read_at
    finally:
        inbox.close()
        if other.is_alive():
            other.kill()
    assert not seen and user.openid == "o_rf"
    assert inbound_count(db) == 1


def test_a_batch_whose_reads_went_out_of_date_before_it_wrote_is_handled_again(
        villager, db, counting_dialogue, monkeypatch):
    """SQLite: the line's batch reads before it takes the write lock. If another process
    commits between the batch's reads and a message's first write, the message might be
    answered from what it read before: the batch is handled again from the start, holding
    the lock, and the villager gets the answer the state calls for, once."""
    if db.is_postgres:
        pytest.skip("PostgreSQL's batches take no file lock to wait for")
    import sqlite3

    from core.models import DialogueState

    villager.text("o_stale", "计数")
    villager.text("o_elsewhere", "帮助")
    counting = counting_dialogue.states["counting"]
    calls = []

    def another_process_commits_first(ctx, msg, data):
        calls.append(data["n"])
        if len(calls) == 1:
            ctx.session.get(DialogueState, ctx.openid)  # the batch has read
            other = sqlite3.connect(db.url[len("sqlite:///"):], timeout=5)
            other.execute("UPDATE wechat_user SET subscribed = 0 WHERE openid = 'o_elsewhere'")
            other.commit()
            other.close()
        return counting(ctx, msg, data)

    monkeypatch.setitem(counting_dialogue.states, "counting", another_process_commits_first)
    r = villager.text("o_stale", "再来")
    assert r.reply == "第2条"
    assert calls == [1, 1]  # handled, found out of date before its write, handled again
    with db.session() as s:
        assert s.get(DialogueState, "o_stale").data == {"n": 2}
        assert s.scalar(select(WechatUser.subscribed).where(
            WechatUser.openid == "o_elsewhere")) is False
    assert villager.text("o_stale", "又来").reply == "第3条"


def test_a_sqlite_batch_whose_lock_is_held_outside_the_writer_lock_waits_to_write(db):
    """SQLite gives a transaction that has read SQLITE_BUSY at once, without waiting, when
    another connection holds the write lock without the `.writer` file lock (seen once under
    load in bench/webhook.py: the batch failed and was handled one by one). A batch with only
    its bookkeeping to write then waits for the lock like any writer and writes it."""
    if db.is_postgres:
        pytest.skip("PostgreSQL's batches take no file lock to wait for")
    import sqlite3

    from bot.web.inbox import Inbox, Stored

    with db.session() as s:
        s.add(WechatUser(openid="o_busy_lock", subscribed=True))
    other = sqlite3.connect(db.url[len("sqlite:///"):], isolation_level=None,
                            check_same_thread=False)
    inbox = Inbox(db)
    let_go = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    try:
        with inbox.batch() as batch:
            senders, _ = batch.senders(["o_busy_lock"], ["msg:busy1"])
            other.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock, not the .writer one
            let_go.start()
            sender = senders["o_busy_lock"]
            batch.finish([Stored(sender, "o_busy_lock", "msg:busy1", "text", ["好"])],
                         {sender.user_id})
    finally:
        if let_go.ident is not None:  # started
            let_go.join()
        inbox.close()
        other.close()
    assert inbound_count(db) == 1

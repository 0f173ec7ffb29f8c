"""The WeChat client against the emulator over real HTTP: the shared access token, every call
under WECHAT_API_BASE, media, QR codes, and the 48-hour notification rule with its outbox
deliverer. Runs on SQLite, and on PostgreSQL when HUZHU_TEST_DATABASE_URL is set (in a database
of its own beside that one: huzhu -> huzhu_client, dropped at the end); the Redis token store
when HUZHU_TEST_REDIS_URL is set."""
from __future__ import annotations

import concurrent.futures
import io
import os
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from PIL import Image
from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.engine import make_url

from bot.outbox import worker
from bot.web.app import AppContext
from bot.devtools.emulator import BackgroundServer, create_emulator_app
from bot.clients.wechat import WeChat, WeChatClientException
from core import outbox
from core.config import load_config
from core.db import Database
from core.models import AccessToken, OutboxMessage, OutboxStatus, WechatUser

PG_URL = os.environ.get("HUZHU_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("HUZHU_TEST_REDIS_URL")
# its own database beside the test database (one per pytest-xdist worker)
PG_NAME = (f"{make_url(PG_URL).database}_client{os.environ.get('PYTEST_XDIST_WORKER', '')}"
           if PG_URL else "")
CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"
STABLE = "/cgi-bin/stable_token"


# -- fixtures ------------------------------------------------------------------------------------

def _pg_admin():
    return create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def pg_database():
    if not PG_URL:
        yield None
        return
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {PG_NAME}"))
    db = Database(make_url(PG_URL).set(database=PG_NAME).render_as_string(hide_password=False))
    db.upgrade()
    yield db
    db.dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def db(tmp_path, pg_database):
    if pg_database is not None:
        with pg_database.session() as s:
            for model in (AccessToken, WechatUser, OutboxMessage):
                s.execute(delete(model))
        yield pg_database
        return
    database = Database(f"sqlite:///{tmp_path / 'huzhu.db'}")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def emu():
    with BackgroundServer(create_emulator_app()) as server:
        # the account's templates (a field named `content` is of no kind WeChat checks)
        requests.post(f"{server.url}/_emulator/templates",
                      json={"TPL-progress": ["content"], "TPL": ["content"], "SUB": ["thing1"]})
        requests.post(f"{server.url}/_emulator/subscribe",
                      json={"openid": "o-1", "template_ids": ["SUB"]})
        yield server


@pytest.fixture
def make_cfg(tmp_path, db, emu):
    def make(**overrides):
        env = {"HUZHU_DATABASE_URL": db.url, "HUZHU_DATA_DIR": str(tmp_path / "var"),
               "HUZHU_WECHAT_API_BASE": emu.url, "HUZHU_WECOM_WEBHOOK_BASE": emu.url}
        env.update({f"HUZHU_{k}": v for k, v in overrides.items()})
        return load_config(env)
    return make


@pytest.fixture
def wechat(make_cfg, db):
    return WeChat(make_cfg(), db)


@pytest.fixture
def wechat_tpl(make_cfg, db):
    return WeChat(make_cfg(WECHAT_TEMPLATE_ID="TPL-progress"), db)


def calls(emu, **filters):
    return requests.get(f"{emu.url}/_emulator/calls", params=filters).json()


def paths(emu, **filters):
    return [c["path"] for c in calls(emu, **filters)]


def fail(emu, path, errcode, count=1):
    requests.post(f"{emu.url}/_emulator/fail",
                  json={"path": path, "errcode": errcode, "count": count}).raise_for_status()


def png_bytes(color=(30, 60, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), color).save(buf, format="PNG")
    return buf.getvalue()


def now() -> datetime:
    return datetime.now(timezone.utc)


def add_user(db, openid, last_inbound_at=None, pushes=0):
    with db.session() as s:
        s.add(WechatUser(openid=openid, last_inbound_at=last_inbound_at,
                         pushes_since_inbound=pushes))


def pushes_of(db, openid) -> int:
    with db.session() as s:
        return s.scalar(select(WechatUser.pushes_since_inbound).where(WechatUser.openid == openid))


def stored_token(db) -> AccessToken | None:
    with db.session() as s:
        return s.scalars(select(AccessToken)).first()


# -- the access token ----------------------------------------------------------------------------

def test_token_is_fetched_once_and_shared_through_the_database(make_cfg, db, emu):
    first, second = WeChat(make_cfg(), db), WeChat(make_cfg(), db)
    first.send_text("o-1", "您好")
    second.send_text("o-2", "您好")
    first.send_text("o-3", "您好")
    assert paths(emu).count(STABLE) == 1
    assert "/cgi-bin/token" not in paths(emu)
    tokens = {c["query"]["access_token"] for c in calls(emu, path=CUSTOM)}
    assert tokens == {stored_token(db).token}
    assert calls(emu, path=STABLE)[0]["json"]["appid"] == "wxdemo0000000000"


def test_concurrent_processes_refresh_once(make_cfg, db, emu):
    # separate engines stand for separate processes
    clients = [WeChat(make_cfg(), Database(db.url)) for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: clients[i].send_text(f"o-{i}", "您好"), range(6)))
    assert paths(emu).count(STABLE) == 1
    assert len(calls(emu, path=CUSTOM)) == 6
    for client in clients:
        client.db.dispose()


@pytest.mark.parametrize("knob", ["revoke", "expire"])
def test_rejected_token_is_refreshed_once_and_the_call_retried(wechat, db, emu, knob):
    wechat.send_text("o-1", "第一条")
    old = stored_token(db).token
    requests.post(f"{emu.url}/_emulator/tokens/{knob}")  # answers 40001 / 42001 from now on
    wechat.send_text("o-1", "第二条")
    sent = calls(emu, path=CUSTOM)
    assert [c["errcode"] for c in sent] == [0, 40001 if knob == "revoke" else 42001, 0]
    assert sent[-1]["json"]["text"]["content"] == "第二条"
    assert paths(emu).count(STABLE) == 2
    assert stored_token(db).token == sent[-1]["query"]["access_token"] != old


def test_a_rejected_token_that_wechat_still_returns_is_force_refreshed(wechat, db, emu):
    wechat.send_text("o-1", "您好")
    fail(emu, CUSTOM, 40001)  # rejected, though stable_token would hand out the same one
    wechat.send_text("o-1", "您好")
    forced = [c["json"]["force_refresh"] for c in calls(emu, path=STABLE)]
    assert forced == [False, False, True]
    assert [c["errcode"] for c in calls(emu, path=CUSTOM)] == [0, 40001, 0]


def test_a_second_rejection_is_not_retried_forever(wechat, emu):
    fail(emu, CUSTOM, 40001, count=5)
    with pytest.raises(WeChatClientException) as exc:
        wechat.send_text("o-1", "您好")
    assert exc.value.errcode == 40001
    assert len(calls(emu, path=CUSTOM)) == 2


def test_token_is_refreshed_minutes_before_it_expires(make_cfg, db, emu):
    WeChat(make_cfg(), db).send_text("o-1", "您好")
    with db.session() as s:
        s.scalars(select(AccessToken)).one().expires_at = now() + timedelta(seconds=90)
    WeChat(make_cfg(), db).send_text("o-1", "您好")
    assert paths(emu).count(STABLE) == 2
    assert [c["errcode"] for c in calls(emu, path=CUSTOM)] == [0, 0]  # never sent a stale one
    left = stored_token(db).expires_at
    left = left if left.tzinfo else left.replace(tzinfo=timezone.utc)
    assert left - now() > timedelta(hours=1)


@pytest.mark.skipif(not REDIS_URL, reason="HUZHU_TEST_REDIS_URL not set")
def test_token_is_shared_through_redis(make_cfg, db, emu):
    import redis

    app_id = f"wx{uuid.uuid4().hex[:14]}"
    first = WeChat(make_cfg(REDIS_URL=REDIS_URL, WECHAT_APP_ID=app_id), db)
    second = WeChat(make_cfg(REDIS_URL=REDIS_URL, WECHAT_APP_ID=app_id), db)
    try:
        first.send_text("o-1", "您好")
        second.send_text("o-2", "您好")
        assert paths(emu).count(STABLE) == 1
        assert stored_token(db) is None  # not in the database
        requests.post(f"{emu.url}/_emulator/tokens/revoke")
        second.send_text("o-2", "您好")
        first.send_text("o-1", "您好")  # picks up the token second refreshed
        assert paths(emu).count(STABLE) == 2
    finally:
        redis.Redis.from_url(REDIS_URL).delete(f"huzhu:access_token:{app_id}")


# -- every call under the configured base --------------------------------------------------------

def test_every_call_goes_to_the_configured_base(wechat, emu, tmp_path):
    image = tmp_path / "notice.png"
    image.write_bytes(png_bytes())
    wechat.send_text("o-1", "您好")
    media_id = wechat.upload_media(image)
    wechat.send_image("o-1", media_id)
    wechat.download_media(media_id)
    wechat.send_template("o-1", "TPL", {"content": "进度更新"}, url="https://example.org/c/1")
    wechat.send_subscribe("o-1", "SUB", {"thing1": "补助"})
    wechat.create_scene_qrcode("village:3")
    wechat.create_menu({"button": [{"type": "click", "name": "帮助", "key": "MENU_HELP"}]})
    tag_id = wechat.tag_create("大溪村")
    wechat.tag_users(tag_id, [f"o-{i}" for i in range(120)])
    assert wechat.tags()["大溪村"] == tag_id
    wechat.mass_send_text_to_tag(tag_id, "本月公示已发布")

    seen = paths(emu)
    assert set(seen) == {
        STABLE, CUSTOM, TEMPLATE, "/cgi-bin/media/upload", "/cgi-bin/media/get",
        "/cgi-bin/message/subscribe/bizsend", "/cgi-bin/qrcode/create", "/cgi-bin/showqrcode",
        "/cgi-bin/menu/create", "/cgi-bin/tags/create", "/cgi-bin/tags/members/batchtagging",
        "/cgi-bin/tags/get", "/cgi-bin/message/mass/sendall"}
    assert seen.count("/cgi-bin/tags/members/batchtagging") == 3  # 50 openids a call
    assert all(c["status"] == 200 and c["errcode"] in (0, None) for c in calls(emu))  # None: bytes
    mass = calls(emu, path="/cgi-bin/message/mass/sendall")[0]
    assert mass["json"]["filter"] == {"is_to_all": False, "tag_id": tag_id}
    assert len(mass["recipients"]) == 120


def test_media_round_trip_keeps_the_exact_bytes(wechat, tmp_path):
    data = png_bytes((250, 250, 0))
    media_id = wechat.upload_media(data)
    assert wechat.download_media(media_id) == (data, "image/png")
    path = tmp_path / "bill.jpg"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(path, format="JPEG")
    got, ctype = wechat.download_media(wechat.upload_media(path))
    assert got == path.read_bytes() and ctype == "image/jpeg"
    with pytest.raises(WeChatClientException) as exc:
        wechat.download_media("no-such-media")
    assert exc.value.errcode == 40007


def test_scene_qrcode(wechat, emu):
    ticket, url, png = wechat.create_scene_qrcode("village:12")
    assert url.startswith("http://weixin.qq.com/q/")
    assert Image.open(io.BytesIO(png)).format == "PNG"
    created = calls(emu, path="/cgi-bin/qrcode/create")[0]["json"]
    assert created["action_name"] == "QR_LIMIT_STR_SCENE"
    assert created["action_info"]["scene"]["scene_str"] == "village:12"
    assert calls(emu, path="/cgi-bin/showqrcode")[0]["query"]["ticket"] == ticket


# -- the 48-hour rule ----------------------------------------------------------------------------

TEXT = {"type": "text", "content": "您的补助申请 C00000017 已通过，金额 1,200.00 元。"}


def test_inside_the_window_a_customer_service_message(wechat_tpl, db, emu):
    add_user(db, "o-in", last_inbound_at=now() - timedelta(hours=47))
    assert wechat_tpl.deliver("o-in", TEXT) == "custom"
    sent = calls(emu, touser="o-in")
    assert [c["path"] for c in sent] == [CUSTOM]
    assert sent[0]["json"]["text"]["content"] == TEXT["content"]
    assert pushes_of(db, "o-in") == 1


def test_outside_the_window_a_template_message(wechat_tpl, db, emu):
    add_user(db, "o-out", last_inbound_at=now() - timedelta(hours=49))
    assert wechat_tpl.deliver("o-out", {**TEXT, "url": "https://example.org/c/17"}) == "template"
    sent = calls(emu, touser="o-out")
    assert [c["path"] for c in sent] == [TEMPLATE]
    body = sent[0]["json"]
    assert body["template_id"] == "TPL-progress"
    assert body["data"] == {"content": {"value": TEXT["content"]}}
    assert body["url"] == "https://example.org/c/17"


def test_outside_the_window_without_template_the_message_is_held(wechat, db, emu):
    add_user(db, "o-out", last_inbound_at=now() - timedelta(days=3))
    assert wechat.deliver("o-out", TEXT) == "held"
    assert wechat.deliver("o-never-wrote", TEXT) == "held"
    assert calls(emu, path=CUSTOM) == [] and calls(emu, path=TEMPLATE) == []


def test_images_are_never_sent_as_templates(wechat_tpl, db, emu, tmp_path):
    path = tmp_path / "qr.png"
    path.write_bytes(png_bytes())
    add_user(db, "o-in", last_inbound_at=now() - timedelta(minutes=5))
    add_user(db, "o-out", last_inbound_at=now() - timedelta(days=5))
    assert wechat_tpl.deliver("o-in", {"type": "image", "path": str(path)}) == "custom"
    uploaded = calls(emu, path="/cgi-bin/media/upload")[0]
    sent = calls(emu, touser="o-in")[0]["json"]
    assert sent["msgtype"] == "image" and sent["image"]["media_id"]
    assert uploaded["files"]["media"]["size"] == path.stat().st_size
    assert wechat_tpl.deliver("o-out", {"type": "image", "path": str(path)}) == "held"


@pytest.mark.parametrize("errcode", [45015, 45047])
def test_wechat_closing_the_window_falls_back_to_the_template(wechat_tpl, db, emu, errcode):
    add_user(db, "o-1", last_inbound_at=now() - timedelta(hours=1))
    fail(emu, CUSTOM, errcode)
    assert wechat_tpl.deliver("o-1", TEXT) == "template"
    assert [(c["path"], c["errcode"]) for c in calls(emu, touser="o-1")] == [
        (CUSTOM, errcode), (TEMPLATE, 0)]
    # the window is known closed now: the next message goes straight to the template
    assert wechat_tpl.deliver("o-1", TEXT) == "template"
    assert len(calls(emu, path=CUSTOM)) == 1


def test_wechat_closing_the_window_without_template_holds(wechat, db, emu):
    add_user(db, "o-1", last_inbound_at=now() - timedelta(hours=1))
    fail(emu, CUSTOM, 45047)
    assert wechat.deliver("o-1", TEXT) == "held"


@pytest.mark.parametrize("template, sixth", [(True, "template"), (False, "held")])
def test_five_pushes_per_inbound_message(make_cfg, db, emu, template, sixth):
    cfg = make_cfg(WECHAT_TEMPLATE_ID="TPL" if template else "")
    client = WeChat(cfg, db)
    add_user(db, "o-1", last_inbound_at=now() - timedelta(minutes=10))
    assert [client.deliver("o-1", TEXT) for _ in range(5)] == ["custom"] * 5
    assert client.deliver("o-1", TEXT) == sixth
    assert len(calls(emu, path=CUSTOM)) == 5
    with db.session() as s:  # the user writes again: a new allowance
        user = s.scalars(select(WechatUser).where(WechatUser.openid == "o-1")).one()
        user.last_inbound_at, user.pushes_since_inbound = now(), 0
    assert client.deliver("o-1", TEXT) == "custom"


def test_other_errors_propagate(wechat, db, emu):
    add_user(db, "o-1", last_inbound_at=now())
    fail(emu, CUSTOM, 43004)
    with pytest.raises(WeChatClientException) as exc:
        wechat.deliver("o-1", TEXT)
    assert exc.value.errcode == 43004


# -- the outbox deliverer, run by the worker ----------------------------------------------------

def enqueue(db, make_row) -> int:
    with db.session() as s:
        row = make_row(s)
        s.flush()
        return row.id


def drain(cfg, db) -> int:
    return worker.drain(AppContext(cfg=cfg, db=db))


def row_state(db, row_id) -> OutboxMessage:
    with db.session() as s:
        return s.get(OutboxMessage, row_id)


def test_worker_delivers_a_notification(make_cfg, db, emu):
    add_user(db, "o-1", last_inbound_at=now())
    row_id = enqueue(db, lambda s: outbox.send_text(s, "o-1", "已受理"))
    assert drain(make_cfg(), db) == 1
    row = row_state(db, row_id)
    assert row.status == OutboxStatus.sent and row.attempts == 1
    assert [c["json"]["text"]["content"] for c in calls(emu, touser="o-1")] == ["已受理"]
    assert pushes_of(db, "o-1") == 1


def test_held_message_waits_for_the_user_and_then_goes(make_cfg, db, emu):
    cfg = make_cfg()
    add_user(db, "o-1", last_inbound_at=now() - timedelta(days=4))
    row_id = enqueue(db, lambda s: outbox.send_text(s, "o-1", "审核通过"))
    drain(cfg, db)
    row = row_state(db, row_id)
    assert row.status == OutboxStatus.pending
    assert outbox.as_utc(row.next_attempt_at) - now() > timedelta(days=20)
    assert calls(emu, touser="o-1") == []

    with db.session() as s:  # the user writes: the webhook records it and wakes the outbox
        user = s.scalars(select(WechatUser).where(WechatUser.openid == "o-1")).one()
        user.last_inbound_at, user.pushes_since_inbound = now(), 0
        assert outbox.wake(s, "o-1") == 1
    assert drain(cfg, db) == 1
    assert row_state(db, row_id).status == OutboxStatus.sent
    assert [c["json"]["text"]["content"] for c in calls(emu, touser="o-1")] == ["审核通过"]


@pytest.mark.parametrize("errcode, status", [(43004, OutboxStatus.dead), (40003, OutboxStatus.dead),
                                             ("http500", OutboxStatus.pending),
                                             (-1, OutboxStatus.pending)])
def test_worker_failures(make_cfg, db, emu, errcode, status):
    add_user(db, "o-1", last_inbound_at=now())
    fail(emu, CUSTOM, errcode)
    row_id = enqueue(db, lambda s: outbox.send_text(s, "o-1", "您好"))
    drain(make_cfg(), db)
    row = row_state(db, row_id)
    assert row.status == status and row.attempts == 1 and row.last_error
    assert pushes_of(db, "o-1") == 0  # nothing was pushed: the allowance is intact


def test_bad_rows_are_dead_at_once(make_cfg, db, emu):
    row_id = enqueue(db, lambda s: outbox.enqueue(
        s, "wechat.send", {"openid": "o-1", "message": {"type": "fax"}}))
    drain(make_cfg(), db)
    row = row_state(db, row_id)
    assert row.status == OutboxStatus.dead and "fax" in row.last_error
    assert calls(emu) == []


def test_no_transaction_is_open_while_the_token_is_fetched(db):
    """WeChat is asked for a new token with no database transaction open: on SQLite it would
    hold the one write lock (every villager's message would wait for WeChat), on PostgreSQL a
    connection idle in its transaction."""
    from bot.clients.wechat import _DatabaseTokens

    seen = []

    def fetch(force):
        if db.is_postgres:
            with db.session() as s:
                idle = s.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"))
            seen.append(idle == 0)
        else:
            conn = sqlite3.connect(db.engine.url.database, timeout=0.2, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                seen.append(True)
            except sqlite3.OperationalError:  # database is locked
                seen.append(False)
            finally:
                conn.close()
        return "TOKEN-OUTSIDE", 7200

    assert _DatabaseTokens(db, "wx_probe").token(fetch) == "TOKEN-OUTSIDE"
    assert seen == [True]
    with db.session() as s:
        assert s.get(AccessToken, "wx_probe").token == "TOKEN-OUTSIDE"

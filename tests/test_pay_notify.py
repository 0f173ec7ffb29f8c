"""WeChat Pay end to end over real HTTP: the villager asks to pay through the webhook, the bot
makes a Native order at the emulator, the emulator pays it and posts a signed, encrypted
callback to /pay/notify; forged, replayed, concurrent, mismatching and late callbacks."""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from bot.devtools.emulator.pay import load_keys
from bot.jobs.payments import expire
from core import ledger
from core.models import (AuditLog, Enrolment, EnrolmentStatus, JournalEntry, OrderStatus,
                         OutboxMessage, Payment, PaymentException, PaymentOrder, SchemeYear,
                         Village, WechatUser)
from tests.conftest import make_cfg, start_bot
from tests.factories import local_today, M, make_household

OPENID = "o_pay_villager"


@pytest.fixture(autouse=True)
def ledger_balanced(db):
    yield
    with db.session() as s:
        assert ledger.check(s) == []


@pytest.fixture
def cfg(tmp_path, db_url, emulator):
    """The bot configured with the emulator's WeChat Pay keys (as a real deployment is with
    WeChat Pay's): mchid, APIv3 key, platform public key file and id."""
    conf = requests.get(f"{emulator}/_emulator/pay/config", timeout=5).json()
    pub = tmp_path / "wechatpay_public_key.pem"
    pub.write_text(conf["public_key"])
    return make_cfg(tmp_path, db_url, emulator, PAY_MCH_ID=conf["mchid"],
                    PAY_APIV3_KEY=conf["apiv3_key"], PAY_PUBLIC_KEY_FILE=str(pub),
                    PAY_PUBLIC_KEY_ID=conf["public_key_id"])


@pytest.fixture
def bot(app_ctx):
    running = start_bot(app_ctx)
    app_ctx.cfg.values["PAY_NOTIFY_URL"] = f"{running.url}/pay/notify"
    app_ctx.cfg.values["PUBLIC_URL"] = running.url
    yield running
    running.stop()


def household(app_ctx, openid=OPENID, members=None, village="示范镇/西村"):
    with app_ctx.db.session() as s:
        hh = make_household(s, app_ctx.vault, members or [
            M("王大山"), M("李小花", "spouse"), M("王小明", "child")],
            openid=openid, enrolment="pending", village=village)
        return hh.number


def ask_to_pay(villager, openid=OPENID, wait: float = 10.0) -> str:
    """The reply to 2 缴费; with an order to pay, once its code is ready (the outbox made the
    Native order and stored its code: the link's page shows it)."""
    r = villager.text(openid, "2")
    assert r.status == 200
    if "需付" in r.reply and "打开 " in r.reply and wait:
        wait_for_code(r.reply, wait)
    return r.reply


def wait_for_code(reply: str, wait: float = 10.0) -> str:
    link = reply.split("打开 ", 1)[1].split()[0]
    deadline = time.monotonic() + wait
    while True:
        page = requests.get(link, timeout=5)
        if "data:image/png;base64," in page.text or time.monotonic() > deadline:
            return page.text
        time.sleep(0.1)


def the_order(db, number) -> PaymentOrder:
    from core.models import Household
    with db.session() as s:
        return s.scalar(select(PaymentOrder).join(Household)
                        .where(Household.number == number).order_by(PaymentOrder.id.desc()))


def emulator_pay(emulator, out_trade_no, **opts) -> dict:
    r = requests.post(f"{emulator}/_emulator/pay/{out_trade_no}", json=opts, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def counts(db) -> dict:
    with db.session() as s:
        return {"payments": s.scalar(select(func.count(Payment.id))),
                "entries": s.scalar(select(func.count(JournalEntry.id))),
                "exceptions": s.scalar(select(func.count(PaymentException.id))),
                "paid_enrolments": s.scalar(select(func.count(Enrolment.id)).where(
                    Enrolment.status == EnrolmentStatus.paid)),
                "outbox": s.scalar(select(func.count(OutboxMessage.id))),
                "orders_paid": s.scalar(select(func.count(PaymentOrder.id)).where(
                    PaymentOrder.status == OrderStatus.paid))}


def pool_balance(db) -> int:
    with db.session() as s:
        from core.models import Pool
        pool = s.scalar(select(Pool).where(Pool.code == "demo"))
        return ledger.balance(s, pool.id)


# -- the whole way ----------------------------------------------------------------------------

def test_pay_through_webhook_emulator_and_callback(villager, app_ctx, db, emulator, bot):
    number = household(app_ctx)
    since = villager.last_call_id()
    reply = ask_to_pay(villager)
    # the order broken down per member and source, what to pay, the deadline and a link
    assert f"户号 {number}" in reply
    assert "王*山：个人 50.00 元，村集体 50.00 元" in reply
    assert "李*花" in reply and "王*明" in reply
    assert "合计 300.00 元，村集体出 150.00 元，您家需付 150.00 元" in reply
    assert "/pay/qr/" in reply and "回复 0" in reply
    order = the_order(db, number)
    assert order.status is OrderStatus.open and order.amount_fen == 15000
    assert order.code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    # the QR image goes out through the outbox: uploaded as media, sent as an image
    pushed = villager.wait_pushes(OPENID, since, 8)
    images = [c for c in pushed if (c.get("json") or {}).get("msgtype") == "image"]
    assert len(images) == 1
    uploads = [c for c in villager.calls(since=since, path="/cgi-bin/media/upload")]
    pngs = list((app_ctx.cfg.data_dir / "pay" / "qr").glob(f"{order.out_trade_no}-*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes().startswith(b"\x89PNG")
    assert [u["files"]["media"]["sha256"] for u in uploads] == [
        hashlib.sha256(pngs[0].read_bytes()).hexdigest()]
    # the emulator has the Native order, as the bot signed it
    orders = {o["out_trade_no"]: o for o in requests.get(f"{emulator}/_emulator/pay/orders").json()}
    assert orders[order.out_trade_no]["amount"]["total"] == 15000
    assert orders[order.out_trade_no]["code_url"] == order.code_url
    # the link's page shows the same code
    link = reply.split("打开 ", 1)[1].split()[0]
    page = requests.get(link, timeout=5)
    assert page.status_code == 200 and "data:image/png;base64," in page.text
    assert "150.00 元" in page.text

    since = villager.last_call_id()
    result = emulator_pay(emulator, order.out_trade_no, openid=OPENID)
    assert result["delivered"] and result["status"] in (200, 204), result
    texts = [(c["json"] or {}).get("text", {}).get("content", "")
             for c in villager.wait_pushes(OPENID, since, 8)]
    confirmation = next(t for t in texts if "缴费成功" in t)
    assert f"户号 {number}" in confirmation
    assert "王*山" in confirmation and "**********" in confirmation
    assert "王大山" not in confirmation

    with db.session() as s:
        order = s.get(PaymentOrder, order.id)
        assert order.status is OrderStatus.paid
        payment = s.scalar(select(Payment).where(Payment.order_id == order.id))
        assert payment.transaction_id == result["transaction_id"]
        assert payment.channel == "wechatpay" and payment.amount_fen == 15000
        statuses = {e.status for e in s.scalars(select(Enrolment))}
        assert statuses == {EnrolmentStatus.paid}
        user = s.scalar(select(WechatUser).where(WechatUser.openid == OPENID))
        assert user.village_id == s.scalar(select(Village.id).where(
            Village.full_name == "示范镇/西村"))
        actions = {a.action for a in s.scalars(select(AuditLog))}
        assert {"payment.order_created", "payment.received", "payment.order_paid",
                "enrolment.paid", "user.village_tag"} <= actions
        entry = s.scalar(select(JournalEntry).where(
            JournalEntry.ref == f"payment:{result['transaction_id']}"))
        assert {line.account: line.amount_fen for line in entry.lines} == {
            "fund:cash": 15000, "income:personal": -15000,
            "receivable:collective": 15000, "income:collective": -15000}
    # SPEC "Money": 3 members under 100.00 with a 50.00 personal share: pays 150.00, adds 300.00
    assert pool_balance(db) == 30000
    # asking again after paying: nothing to pay
    assert "已经缴清" in villager.text(OPENID, "缴费").reply


def test_asking_again_gives_the_same_order(villager, app_ctx, db, emulator, bot):
    number = household(app_ctx)
    first = ask_to_pay(villager)
    order = the_order(db, number)
    second = ask_to_pay(villager)
    assert the_order(db, number).out_trade_no == order.out_trade_no
    assert first == second
    with db.session() as s:
        assert s.scalar(select(func.count(PaymentOrder.id))) == 1


# -- refused callbacks: nothing changes -------------------------------------------------------

def platform_keys(emulator):
    """The emulator's own platform key pair (kept in its state directory), to sign as WeChat
    Pay would."""
    conf = requests.get(f"{emulator}/_emulator/pay/config", timeout=5).json()
    return load_keys(Path(conf["public_key_file"]).parent.parent)


def _post(url, body: str, headers: dict):
    return requests.post(url, data=body.encode(), headers=headers, timeout=10)


def test_forged_callbacks_are_refused_and_change_nothing(villager, app_ctx, db, emulator, bot):
    number = household(app_ctx)
    ask_to_pay(villager)
    order = the_order(db, number)
    genuine = emulator_pay(emulator, order.out_trade_no, openid=OPENID, deliver=False)
    headers, body = genuine["callback"]["headers"], genuine["callback"]["body"]
    url = f"{bot.url}/pay/notify"
    before = counts(db)

    # signed with another key, claiming to be WeChat Pay's
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = dict(headers)
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n{body}\n"
    forged["Wechatpay-Signature"] = base64.b64encode(
        other.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    r = _post(url, body, forged)
    assert r.status_code == 401 and r.json()["code"] == "FAIL"
    # the genuine signature over a changed body
    doc = json.loads(body)
    doc["resource"]["ciphertext"] = base64.b64encode(b"x" * 64).decode()
    assert _post(url, json.dumps(doc, ensure_ascii=False), headers).status_code == 401
    # no signature, an unknown key id, a wrong signature type
    assert _post(url, body, {"Content-Type": "application/json"}).status_code == 401
    assert _post(url, body, {**headers, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}).status_code == 401
    assert _post(url, body, {**headers, "Wechatpay-Signature-Type": "MD5"}).status_code == 401
    # a callback genuinely signed by WeChat Pay's key, but an hour old
    keys = platform_keys(emulator)
    old = str(int(time.time()) - 3600)
    stale = {**headers, "Wechatpay-Timestamp": old, "Wechatpay-Signature": base64.b64encode(
        keys.private_key.sign(f"{old}\n{headers['Wechatpay-Nonce']}\n{body}\n".encode(),
                              padding.PKCS1v15(), hashes.SHA256())).decode()}
    assert _post(url, body, stale).status_code == 401
    assert counts(db) == before
    with db.session() as s:
        assert s.get(PaymentOrder, order.id).status is OrderStatus.open
    # the genuine one still works afterwards
    assert _post(url, body, headers).status_code in (200, 204)
    assert counts(db)["payments"] == 1


def test_same_callback_replayed_100_times_is_one_payment(villager, app_ctx, db, emulator, bot):
    number = household(app_ctx)
    ask_to_pay(villager)
    order = the_order(db, number)
    result = emulator_pay(emulator, order.out_trade_no, openid=OPENID)
    assert result["status"] in (200, 204)
    after_first = counts(db)
    headers, body = result["callback"]["headers"], result["callback"]["body"]
    http = requests.Session()
    statuses = {http.post(f"{bot.url}/pay/notify", data=body.encode(), headers=headers,
                          timeout=10).status_code for _ in range(100)}
    assert statuses <= {200, 204}
    # WeChat's own retry: the emulator sends the same notification again
    assert emulator_pay(emulator, order.out_trade_no)["status"] in (200, 204)
    assert counts(db) == after_first
    assert after_first["payments"] == 1 and after_first["entries"] == 1
    assert pool_balance(db) == 30000


def test_two_identical_callbacks_at_once_are_one_payment(villager, app_ctx, db, emulator, bot):
    numbers = [household(app_ctx, openid=f"o_twice{i}") for i in range(3)]
    for i, number in enumerate(numbers):
        ask_to_pay(villager, f"o_twice{i}")
        order = the_order(db, number)
        cb = emulator_pay(emulator, order.out_trade_no, deliver=False)["callback"]
        barrier = threading.Barrier(2)
        statuses = []

        def post():
            barrier.wait()
            statuses.append(_post(f"{bot.url}/pay/notify", cb["body"], cb["headers"]).status_code)

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) in ([200, 200], [204, 204], [200, 204]), statuses
        with db.session() as s:
            assert s.scalar(select(func.count(Payment.id)).where(
                Payment.order_id == order.id)) == 1
    c = counts(db)
    assert c["payments"] == 3 and c["entries"] == 3 and c["exceptions"] == 0
    assert pool_balance(db) == 3 * 30000


# -- exceptions: recorded for an administrator, nothing activated -----------------------------

def _admin(db, openid="o_pay_admin"):
    from core.admins import bind, create_invite
    with db.session() as s:
        code = create_invite(s, "village_admin", "cli:test", village="示范镇/西村")
    with db.session() as s:
        bind(s, openid, code)
    return openid


def test_amount_mismatch_is_an_exception_not_an_activation(villager, app_ctx, db, emulator, bot):
    admin = _admin(db)
    villager.text(admin, "0")  # the admin wrote recently: pushes reach them
    number = household(app_ctx)
    ask_to_pay(villager)
    order = the_order(db, number)
    since = villager.last_call_id()
    result = emulator_pay(emulator, order.out_trade_no, openid=OPENID, total=100)
    assert result["status"] in (200, 204)  # taken (recorded), so WeChat stops resending
    c = counts(db)
    assert c["payments"] == 0 and c["entries"] == 0 and c["paid_enrolments"] == 0
    with db.session() as s:
        exc = s.scalar(select(PaymentException))
        assert exc.kind == "amount_mismatch" and exc.transaction_id == result["transaction_id"]
        assert exc.detail["total_fen"] == 100 and exc.detail["due_fen"] == 15000
        assert s.get(PaymentOrder, order.id).status is OrderStatus.open
    admin_texts = villager.wait_pushes(admin, since, 8)
    assert any("收款异常" in (c["json"] or {}).get("text", {}).get("content", "")
               for c in admin_texts)
    household_texts = [(c["json"] or {}).get("text", {}).get("content", "")
                       for c in villager.wait_pushes(OPENID, since, 4)]
    assert any("没有自动登记参加" in t for t in household_texts)
    # replayed: still one exception
    cb = result["callback"]
    assert _post(f"{bot.url}/pay/notify", cb["body"], cb["headers"]).status_code in (200, 204)
    assert counts(db)["exceptions"] == 1
    assert pool_balance(db) == 0


def _close_window(db, days_ago=1):
    """Move the payment deadline into the past (the enrolments were made before it)."""
    with db.session() as s:
        for year in s.scalars(select(SchemeYear)):
            year.enrolment_closes = local_today() - timedelta(days=days_ago)
        for e in s.scalars(select(Enrolment)):
            e.created_at = e.created_at - timedelta(days=days_ago + 5)


def test_payment_for_an_expired_order_is_an_exception(villager, app_ctx, db, emulator, bot):
    number = household(app_ctx)
    ask_to_pay(villager)
    order = the_order(db, number)
    _close_window(db)
    assert expire(app_ctx) == 1  # the deadline job: open → expired, pending → lapsed
    with db.session() as s:
        assert s.get(PaymentOrder, order.id).status is OrderStatus.expired
        assert {e.status for e in s.scalars(select(Enrolment))} == {EnrolmentStatus.lapsed}
    result = emulator_pay(emulator, order.out_trade_no, openid=OPENID)
    assert result["status"] in (200, 204)
    c = counts(db)
    assert c["payments"] == 0 and c["entries"] == 0 and c["paid_enrolments"] == 0
    with db.session() as s:
        assert s.scalar(select(PaymentException.kind)) == "order_expired"
    # after the deadline the dialogue takes no payment either
    assert "截止" in villager.text(OPENID, "2").reply


def test_payment_after_the_deadline_on_a_still_open_order(villager, app_ctx, db, emulator, bot):
    number = household(app_ctx)
    ask_to_pay(villager)
    order = the_order(db, number)
    _close_window(db)  # the deadline passed; the expiry job has not run yet
    emulator_pay(emulator, order.out_trade_no, openid=OPENID)
    with db.session() as s:
        assert s.scalar(select(PaymentException.kind)) == "late_payment"
        assert s.get(PaymentOrder, order.id).status is OrderStatus.open
    assert counts(db)["paid_enrolments"] == 0


def test_payment_for_an_unknown_order_is_an_exception(app_ctx, db, emulator, bot):
    """A genuine notification for an order this bot never made (another system, a lost row)."""
    conf = requests.get(f"{emulator}/_emulator/pay/config", timeout=5).json()
    # an order made at the emulator with the bot's gateway, unknown to the database
    gw = app_ctx.gateway()
    gw.native("HZUNKNOWN0001", "测试", 100, None)
    result = emulator_pay(emulator, "HZUNKNOWN0001")
    assert result["status"] in (200, 204)
    with db.session() as s:
        exc = s.scalar(select(PaymentException))
        assert exc.kind == "unknown_order" and exc.out_trade_no == "HZUNKNOWN0001"
    assert conf["mchid"] == gw.mchid
    assert counts(db)["payments"] == 0


def test_members_changed_gives_a_new_order_and_closes_the_old(villager, app_ctx, db, emulator,
                                                              bot):
    number = household(app_ctx)
    ask_to_pay(villager)
    old = the_order(db, number)
    # a member becomes 低保: the collective pays their personal share
    with db.session() as s:
        from core.models import Member
        member = s.scalar(select(Member).where(Member.name == "王小明"))
        member.category = "低保"
    reply = ask_to_pay(villager)
    assert "您家需付 100.00 元" in reply and "王*明（低保）：村集体 100.00 元" in reply
    new = the_order(db, number)
    assert new.out_trade_no != old.out_trade_no and new.amount_fen == 10000
    with db.session() as s:
        assert s.get(PaymentOrder, old.id).status is OrderStatus.expired
    emu_orders = {o["out_trade_no"]: o for o in requests.get(f"{emulator}/_emulator/pay/orders").json()}
    assert emu_orders[old.out_trade_no]["trade_state"] == "CLOSED"
    r = requests.post(f"{emulator}/_emulator/pay/{old.out_trade_no}", json={}, timeout=10)
    assert r.status_code == 409  # the old code can no longer be paid
    emulator_pay(emulator, new.out_trade_no, openid=OPENID)
    with db.session() as s:
        entry = s.scalar(select(JournalEntry))
        assert {l.account: l.amount_fen for l in entry.lines} == {
            "fund:cash": 10000, "income:personal": -10000,
            "receivable:collective": 20000, "income:collective": -20000}
    assert pool_balance(db) == 30000


def test_gateway_down_is_retried_by_the_outbox(villager, app_ctx, db, emulator, bot):
    """WeChat Pay failing once: the payer has the amounts at once, the page says the code is
    coming, and the outbox's retry makes the order and pushes the code."""
    number = household(app_ctx)
    requests.post(f"{emulator}/_emulator/fail", json={
        "path": "/v3/pay/transactions/native", "errcode": "http500", "count": 1}, timeout=5)
    since = villager.last_call_id()
    reply = ask_to_pay(villager, wait=0)
    assert "您家需付 150.00 元" in reply and "付款码随后发来" in reply
    link = reply.split("打开 ", 1)[1].split()[0]
    page = requests.get(link, timeout=5)
    assert "付款码正在生成，请稍后刷新" in page.text and "150.00 元" in page.text
    images = []
    for _ in range(3):  # the first attempt failed; the retry comes after the backoff (1 s)
        images += [c for c in villager.wait_pushes(OPENID, since, 4)
                   if (c.get("json") or {}).get("msgtype") == "image"]
        if images:
            break
    assert len(images) == 1
    order = the_order(db, number)
    assert order.status is OrderStatus.open and order.code_url
    assert "data:image/png;base64," in requests.get(link, timeout=5).text
    # down again later: the code made before is shown again
    requests.post(f"{emulator}/_emulator/fail", json={
        "path": "/v3/pay/transactions/native", "errcode": "http500", "count": 1}, timeout=5)
    assert "您家需付 150.00 元" in ask_to_pay(villager)
    assert the_order(db, number).code_url == order.code_url


def test_real_provider_is_only_a_configuration_change(tmp_path, db, db_url, emulator):
    """PAY_PROVIDER=wechatpay with the merchant's own credentials runs the same code; here the
    "real" WeChat Pay is the emulator, told the merchant's public key as WeChat Pay is (the
    merchant's API certificate), and nothing is fetched from it or generated."""
    from cryptography.hazmat.primitives import serialization

    from bot.web.app import AppContext
    from bot.devtools.chat import Villager
    from bot.server import bootstrap

    conf = requests.get(f"{emulator}/_emulator/pay/config", timeout=5).json()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "apiclient_key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub_file = tmp_path / "pub_key.pem"
    pub_file.write_text(conf["public_key"])
    serial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    requests.post(f"{emulator}/_emulator/pay/merchants", timeout=5, json={
        "mchid": conf["mchid"], "serial_no": serial,
        "public_key": key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }).raise_for_status()
    cfg = make_cfg(tmp_path, db_url, emulator, PAY_PROVIDER="wechatpay", PAY_MCH_ID=conf["mchid"],
                   PAY_APIV3_KEY=conf["apiv3_key"], PAY_PRIVATE_KEY_FILE=str(key_file),
                   PAY_CERT_SERIAL=serial, PAY_PUBLIC_KEY_FILE=str(pub_file),
                   PAY_PUBLIC_KEY_ID=conf["public_key_id"])
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    try:
        cfg.values["PAY_NOTIFY_URL"] = f"{running.url}/pay/notify"
        cfg.values["PUBLIC_URL"] = running.url
        v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        number = household(x, openid="o_real")
        reply = v.text("o_real", "2").reply
        assert "您家需付 150.00 元" in reply
        assert "data:image/png;base64," in wait_for_code(reply)
        order = the_order(db, number)
        assert emulator_pay(emulator, order.out_trade_no, openid="o_real")["status"] in (200, 204)
        with db.session() as s:
            assert s.get(PaymentOrder, order.id).status is OrderStatus.paid
        assert not (cfg.data_dir / "pay" / "merchant_key.pem").exists()
    finally:
        running.stop()


class _RecordingGateway:
    """A payment service given to the app by hand: it answers every Native order with its own
    code and remembers what it was asked."""
    appid, mchid = "wx_fake", "1900000000"

    def __init__(self):
        self.orders: list[tuple[str, int]] = []

    def native(self, out_trade_no, description, amount_fen, time_expire):
        self.orders.append((out_trade_no, amount_fen))
        return f"weixin://wxpay/bizpayurl?pr=FAKE{len(self.orders)}"

    def close(self, out_trade_no):
        pass


def test_the_gateway_is_the_one_the_app_was_given(tmp_path, db, db_url, emulator):
    """The payment dialogue orders from the gateway the app context was made with, and the
    outbox draws that gateway's code as the image it pushes."""
    from bot.devtools.chat import Villager
    from bot.server import bootstrap
    from bot.web.app import make_context

    gw = _RecordingGateway()
    cfg = make_cfg(tmp_path, db_url, emulator)
    x = make_context(cfg, db, gateway=lambda: gw)
    bootstrap(x)
    running = start_bot(x)
    try:
        v = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        number = household(x, openid="o_given")
        since = v.last_call_id()
        assert "您家需付 150.00 元" in v.text("o_given", "2").reply
        pushed = v.wait_pushes("o_given", since, 8)
        order = the_order(db, number)
        assert gw.orders == [(order.out_trade_no, 15000)]
        assert order.code_url == "weixin://wxpay/bizpayurl?pr=FAKE1"
        assert [c["json"]["msgtype"] for c in pushed if c.get("json")] == ["image"]
        digest = hashlib.sha256(order.code_url.encode()).hexdigest()[:10]
        png = cfg.data_dir / "pay" / "qr" / f"{order.out_trade_no}-{digest}.png"
        uploads = v.calls(since=since, path="/cgi-bin/media/upload")
        assert [u["files"]["media"]["sha256"] for u in uploads] == [
            hashlib.sha256(png.read_bytes()).hexdigest()]
        # no order at the emulator's WeChat Pay: the gateway configured is not used
        orders = requests.get(f"{emulator}/_emulator/pay/orders", timeout=5).json()
        assert order.out_trade_no not in {o["out_trade_no"] for o in orders}
    finally:
        running.stop()

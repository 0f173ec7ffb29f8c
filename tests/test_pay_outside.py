"""The payment dialogue calls no network inside a database transaction: the order is committed
with its amounts reply, and the outbox makes the Native order at WeChat Pay (slow or failing),
stores its code in a second short transaction and pushes the code — over the real webhook,
with a payment gateway given to the app by hand."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import select

from core.models import Household, OrderStatus, PaymentOrder
from core.payments import GatewayError
from tests.conftest import make_cfg, start_bot
from tests.factories import M, make_household


class _Gateway:
    """A WeChat Pay that takes `delay` seconds per Native order (failing the first `fail`
    ones) and looks, while it is asked, at what another connection sees of the order."""
    appid, mchid = "wx_fake", "1900000000"

    def __init__(self, db, delay: float = 0.0, fail: int = 0):
        self.db, self.delay, self.fail = db, delay, fail
        self.seen: list[tuple[str, bool, bool]] = []  # (out_trade_no, committed, code stored)
        self.closed: list[str] = []
        self.lock = threading.Lock()

    def native(self, out_trade_no, description, amount_fen, time_expire):
        self.seen.append((out_trade_no, *self._look(out_trade_no)))
        time.sleep(self.delay)
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise GatewayError("HTTP 500 from WeChat Pay")
        return f"weixin://wxpay/bizpayurl?pr=F{out_trade_no[-8:]}"

    def _look(self, out_trade_no) -> tuple[bool, bool]:
        """(order committed, code stored), as another connection sees them: a transaction
        still open around the Native call holds the order uncommitted and, on SQLite, the one
        write lock (another connection cannot begin a write)."""
        if self.db.engine.dialect.name == "sqlite":
            conn = sqlite3.connect(self.db.engine.url.database, timeout=0.2,
                                   isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT code_url FROM payment_order WHERE out_trade_no = ?",
                                   (out_trade_no,)).fetchone()
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:  # database is locked
                return False, False
            finally:
                conn.close()
            return row is not None, row is not None and row[0] is not None
        with self.db.session() as s:
            order = s.scalar(select(PaymentOrder).where(PaymentOrder.out_trade_no == out_trade_no))
            return order is not None, order is not None and order.code_url is not None

    def close(self, out_trade_no):
        time.sleep(self.delay)
        self.closed.append(out_trade_no)


@pytest.fixture
def running(tmp_path, db, db_url, emulator, request):
    """The bot with a given gateway: (running, villager, gateway)."""
    from bot.devtools.chat import Villager
    from bot.server import bootstrap
    from bot.web.app import make_context

    opts = getattr(request, "param", {})
    cfg = make_cfg(tmp_path, db_url, emulator, OUTBOX_MAX_ATTEMPTS=opts.get("attempts", 8))
    gw = _Gateway(db, opts.get("delay", 0.0), opts.get("fail", 0))
    x = make_context(cfg, db, gateway=lambda: gw)
    bootstrap(x)
    bot = start_bot(x)
    cfg.values["PUBLIC_URL"] = bot.url
    yield x, Villager(bot.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator), gw
    bot.stop()


def household(x, openid: str) -> str:
    with x.db.session() as s:
        return make_household(s, x.vault, [M("王大山"), M("李小花", "spouse")], openid=openid,
                              enrolment="pending", village="示范镇/西村").number


def images(v, openid, since, wait) -> list:
    return [c for c in v.wait_pushes(openid, since, wait)
            if (c.get("json") or {}).get("msgtype") == "image"]


@pytest.mark.parametrize("running", [{"delay": 2.0}], indirect=True)
def test_three_slow_payers_hold_up_no_bystander(running):
    """WeChat Pay taking 2 s per order: three payers at once get their amounts at once, a
    villager asking for help meanwhile is answered at once, and each payer's code follows."""
    x, v, gw = running
    payers = [f"o_payer{i}" for i in range(3)]
    for p in payers:
        household(x, p)
    since = v.last_call_id()
    replies, took = {}, {}

    def pay(p):
        started = time.monotonic()
        replies[p] = v.text(p, "2").reply
        took[p] = time.monotonic() - started

    threads = [threading.Thread(target=pay, args=(p,)) for p in payers]
    for t in threads:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    help_reply = v.text("o_bystander", "帮助").reply
    bystander = time.monotonic() - started
    for t in threads:
        t.join()
    assert "1 参加互助" in help_reply
    assert bystander < 1.0, f"the bystander waited {bystander:.2f} s"
    for p in payers:
        assert "您家需付 100.00 元" in replies[p] and "付款码随后发来" in replies[p]
        assert took[p] < 1.5, f"{p} waited {took[p]:.2f} s for the amounts"
    # the codes come through the outbox, one image each
    deadline = time.monotonic() + 15
    got = {}
    while time.monotonic() < deadline and len(got) < 3:
        for p in payers:
            got[p] = got.get(p) or images(v, p, since, 0.2)
        got = {p: i for p, i in got.items() if i}
    assert sorted(got) == payers and all(len(i) == 1 for i in got.values())
    # WeChat Pay was asked with each order committed and no code stored yet
    assert len(gw.seen) == 3 and all(committed and not stored for _, committed, stored in gw.seen)


def test_no_transaction_is_open_during_the_native_call(running):
    """The order is committed before WeChat Pay is asked (another connection sees it), and the
    code is stored after, in its own transaction."""
    x, v, gw = running
    number = household(x, "o_one")
    since = v.last_call_id()
    reply = v.text("o_one", "2").reply
    assert "您家需付 100.00 元" in reply
    assert len(images(v, "o_one", since, 8)) == 1
    with x.db.session() as s:
        order = s.scalar(select(PaymentOrder).join(Household).where(Household.number == number))
        assert [(order.out_trade_no, True, False)] == gw.seen
        assert order.code_url == f"weixin://wxpay/bizpayurl?pr=F{order.out_trade_no[-8:]}"


@pytest.mark.parametrize("running", [{"fail": 99, "attempts": 3}], indirect=True)
def test_gateway_failing_is_retried_then_the_household_is_told(running):
    x, v, gw = running
    number = household(x, "o_down")
    since = v.last_call_id()
    reply = v.text("o_down", "2").reply
    assert "您家需付 100.00 元" in reply
    texts = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not texts:
        texts = [c["json"]["text"]["content"] for c in v.wait_pushes("o_down", since, 1)
                 if (c.get("json") or {}).get("msgtype") == "text"]
    assert texts and "付款码暂时生成不了" in texts[0] and "回复 2 缴费" in texts[0]
    assert f"户号 {number}" in texts[0]
    assert len(gw.seen) == 3  # three attempts, with backoff between them
    assert images(v, "o_down", since, 0.5) == []
    with x.db.session() as s:
        order = s.scalar(select(PaymentOrder).join(Household).where(Household.number == number))
        assert order.status is OrderStatus.open and order.code_url is None


@pytest.mark.parametrize("running", [{"delay": 1.0}], indirect=True)
def test_cash_recorded_closes_the_code_at_wechat_pay_after_the_commit(running):
    """/收款 confirmed for a household whose WeChat Pay code was made: the administrator is
    answered without waiting for WeChat Pay, and the code is closed there by the outbox."""
    from core.admins import bind, create_invite

    x, v, gw = running
    number = household(x, "o_cash")
    since = v.last_call_id()
    assert "您家需付 100.00 元" in v.text("o_cash", "2").reply
    assert len(images(v, "o_cash", since, 8)) == 1
    with x.db.session() as s:
        code = create_invite(s, "village_admin", "cli:test", village="示范镇/西村")
    with x.db.session() as s:
        bind(s, "o_va", code)
    assert "回复 确认" in v.text("o_va", f"/收款 {number} 100").reply
    gw.delay = 3.0  # WeChat Pay slow now: the administrator does not wait for it
    started = time.monotonic()
    assert "已登记" in v.text("o_va", "确认").reply
    assert time.monotonic() - started < 1.5
    with x.db.session() as s:
        order = s.scalar(select(PaymentOrder).join(Household).where(Household.number == number))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not gw.closed:
        time.sleep(0.1)
    assert gw.closed == [order.out_trade_no]

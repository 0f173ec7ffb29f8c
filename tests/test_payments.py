"""Payments without the callback: the order's rules, the 缴费 dialogue's refusals, offline
payments (/收款 and `huzhu payments record`), the deadline's expiry and reminders."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from bot.cli import main as cli
from bot.jobs.payments import expire, remind
from core import ledger, payments
from core.admins import bind, create_invite
from core.models import (AuditLog, Enrolment, EnrolmentStatus, Household, JournalEntry,
                         OrderStatus, OutboxMessage, Payment, PaymentOrder, Pool, SchemeYear)
from tests.conftest import start_bot
from tests.factories import local_today, M, make_household

OPENID = "o_payer"


@pytest.fixture(autouse=True)
def ledger_balanced(db):
    yield
    with db.session() as s:
        assert ledger.check(s) == []


@pytest.fixture
def bot(app_ctx):
    running = start_bot(app_ctx)
    app_ctx.cfg.values["PAY_NOTIFY_URL"] = f"{running.url}/pay/notify"
    app_ctx.cfg.values["PUBLIC_URL"] = running.url
    yield running
    running.stop()


def household(app_ctx, members=None, openid=OPENID, village="示范镇/西村", enrolment="pending"):
    members = members or [M("王大山"), M("李小花", "spouse"), M("王小明", "child")]
    with app_ctx.db.session() as s:
        hh = make_household(s, app_ctx.vault, members, openid=openid, enrolment=enrolment,
                            village=village)
        return hh.number, [m.id_number for m in members]


def get_household(s, number) -> Household:
    return s.scalar(select(Household).where(Household.number == number))


def now(app_ctx) -> datetime:
    return datetime.now(app_ctx.cfg.tz)


def snapshot(db) -> dict:
    with db.session() as s:
        return {"orders": s.scalar(select(func.count(PaymentOrder.id))),
                "payments": s.scalar(select(func.count(Payment.id))),
                "entries": s.scalar(select(func.count(JournalEntry.id))),
                "paid": s.scalar(select(func.count(Enrolment.id)).where(
                    Enrolment.status == EnrolmentStatus.paid)),
                "outbox": s.scalar(select(func.count(OutboxMessage.id)))}


def balance(db) -> int:
    with db.session() as s:
        return ledger.balance(s, s.scalar(select(Pool.id).where(Pool.code == "demo")))


def admin(db, openid, role="village_admin", village="示范镇/西村"):
    with db.session() as s:
        code = create_invite(s, role, "cli:test", village=village if role == "village_admin"
                             else None, pool="demo" if role == "pool_admin" else None)
    with db.session() as s:
        bind(s, openid, code)
    return openid


def set_deadline(db, closes: date, backdate_enrolments: bool = False):
    with db.session() as s:
        for year in s.scalars(select(SchemeYear)):
            year.enrolment_closes = closes
        if backdate_enrolments:
            for e in s.scalars(select(Enrolment)):
                e.created_at = e.created_at - timedelta(days=30)


# -- the order's rules ------------------------------------------------------------------------

def test_amount_is_personal_share_times_members_who_pay_it(app_ctx, db):
    number, _ = household(app_ctx, [M("王大山"), M("李小花", "spouse", category="低保"),
                                    M("王小明", "child")])
    with db.session() as s:
        result = payments.order_for(s, get_household(s, number), "test", now(app_ctx))
        order = result.order
        assert result.created and order.status is OrderStatus.open
        assert order.amount_fen == 10000  # two members pay 50.00 each
        assert order.breakdown["totals"] == {"personal": 10000, "collective": 20000}
        assert order.breakdown["whole_fen"] == 30000
        by_name = {m["name"]: m for m in order.breakdown["members"]}
        assert by_name["李*花"]["shares"] == {"collective": 10000}  # 低保: the collective pays
        assert by_name["王*山"]["shares"] == {"personal": 5000, "collective": 5000}
        again = payments.order_for(s, get_household(s, number), "test", now(app_ctx))
        assert again.order.id == order.id and not again.created


def test_a_new_member_makes_a_new_order_and_expires_the_old(app_ctx, db):
    number, _ = household(app_ctx, [M("王大山")])
    with db.session() as s:
        first = payments.order_for(s, get_household(s, number), "test", now(app_ctx)).order
        assert first.amount_fen == 5000
    with db.session() as s:
        hh = get_household(s, number)
        year = s.scalar(select(SchemeYear))
        from core.models import InsuranceType, Member, Relation
        from tests.factories import make_id
        idn = make_id(date(2020, 1, 1))
        m = Member(household_id=hh.id, name="王小宝", id_number_enc=app_ctx.vault.encrypt(idn),
                   id_number_hash=app_ctx.vault.lookup_hash(idn), id_number_masked="x",
                   birth_year=2020, relation=Relation.child,
                   insurance=InsuranceType.resident)
        s.add(m)
        s.flush()
        s.add(Enrolment(member_id=m.id, scheme_year_id=year.id, id_number_hash=m.id_number_hash))
    with db.session() as s:
        result = payments.order_for(s, get_household(s, number), "test", now(app_ctx))
        assert result.created and result.order.amount_fen == 10000
        assert [o.out_trade_no for o in result.superseded] == [first.out_trade_no]
        assert s.get(PaymentOrder, first.id).status is OrderStatus.expired
        assert s.scalar(select(func.count(PaymentOrder.id)).where(
            PaymentOrder.status == OrderStatus.open)) == 1


def _exclude(db, category):
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        rules = dict(year.rules)
        rules["contribution"] = {**rules["contribution"], "excluded": [category]}
        year.rules = rules


def test_excluded_category_cannot_join(villager, app_ctx, db):
    _exclude(db, "特困")
    number, _ = household(app_ctx, [M("王大山"), M("张阿婆", "parent", category="特困")])
    reply = villager.text(OPENID, "2").reply
    assert "张*婆（特困）：按本地方案不能参加，不收费" in reply
    assert "合计 100.00 元，村集体出 50.00 元，您家需付 50.00 元" in reply
    with db.session() as s:
        payments.record_offline(s, get_household(s, number), 5000, "cash", "cli:x", now(app_ctx))
    with db.session() as s:
        status = {e.member.name: e.status for e in s.scalars(select(Enrolment))}
    assert status == {"王大山": EnrolmentStatus.paid, "张阿婆": EnrolmentStatus.pending}
    assert balance(db) == 10000
    assert "已经缴清" in villager.text(OPENID, "2").reply


def test_household_of_excluded_members_only_cannot_pay(villager, app_ctx, db):
    _exclude(db, "特困")
    number, _ = household(app_ctx, [M("张阿婆", category="特困")])
    before = snapshot(db)
    reply = villager.text(OPENID, "2").reply
    assert "张*婆（特困）" in reply and "不能参加" in reply and "回复 0" in reply
    assert snapshot(db) == before
    with db.session() as s, pytest.raises(payments.PaymentError) as e:
        payments.quote(s, get_household(s, number), s.scalar(select(SchemeYear)))
    assert e.value.code == "excluded_member"


def test_all_subsidized_household_needs_no_payment(villager, app_ctx, db):
    number, ids = household(app_ctx, [M("王大山", category="低保"),
                                      M("李小花", "spouse", category="特困")])
    r = villager.text(OPENID, "2", wait=3)
    assert "不用付款" in r.reply and number in r.reply
    assert any("缴费成功" in t for t in r.pushed_texts)
    with db.session() as s:
        assert {e.status for e in s.scalars(select(Enrolment))} == {EnrolmentStatus.paid}
        payment = s.scalar(select(Payment))
        assert payment.channel == "subsidy" and payment.amount_fen == 0
    assert balance(db) == 20000  # both members' whole contribution, owed by the collective
    assert not any(i in r.all_text for i in ids)


# -- the dialogue's refusals change nothing ---------------------------------------------------

def test_no_household_is_told_to_sign_up(villager, db):
    before = snapshot(db)
    reply = villager.text("o_stranger", "缴费").reply
    assert "回复 1 参加互助" in reply
    assert snapshot(db) == before


def test_already_paid_household(villager, app_ctx, db):
    household(app_ctx, enrolment="paid")
    before = snapshot(db)
    assert "已经缴清" in villager.text(OPENID, "2").reply
    assert snapshot(db) == before


def test_after_the_deadline_no_order_is_made(villager, app_ctx, db):
    household(app_ctx)
    set_deadline(db, local_today() - timedelta(days=1))
    before = snapshot(db)
    reply = villager.text(OPENID, "2").reply
    assert "截止后不再接受缴费" in reply and "回复 0" in reply
    assert snapshot(db) == before


def test_order_reply_masks_names_and_never_shows_id_numbers(villager, app_ctx, db):
    number, ids = household(app_ctx)
    since = villager.last_call_id()
    r = villager.text(OPENID, "2")
    assert "王*山" in r.reply and "王大山" not in r.reply
    assert not any(i in r.reply for i in ids)
    # emulator mode with no WeChat Pay keys configured: the emulator's were used (by the
    # outbox, which made the order and pushed its code), and the merchant key pair was made
    # once, readable by its owner only
    assert "您家需付 150.00 元" in r.reply
    assert [c["json"]["msgtype"] for c in villager.wait_pushes(OPENID, since, 8)
            if c.get("json")] == ["image"]
    key = app_ctx.cfg.data_dir / "pay" / "merchant_key.pem"
    assert key.stat().st_mode & 0o777 == 0o600


# -- offline payments: /收款 ---------------------------------------------------------------------

def test_village_admin_records_cash_after_confirming(villager, app_ctx, db):
    number, ids = household(app_ctx)
    va = admin(db, "o_va_west")
    villager.text(OPENID, "0")  # the household wrote lately: the confirmation is pushed
    summary = villager.text(va, f"/收款 {number} 150").reply
    assert f"户号 {number}（示范镇/西村）" in summary and "应缴 150.00 元" in summary
    assert "收到现金 150.00 元" in summary and "回复 确认" in summary
    assert snapshot(db)["payments"] == 0  # nothing yet: a summary first
    assert "请回复 确认" in villager.text(va, "好的").reply
    assert snapshot(db)["payments"] == 0
    r = villager.text(va, "确认")
    assert "已登记" in r.reply and "3 人已参加" in r.reply
    pushed = villager.wait_pushes(OPENID, 0, 6)
    assert any("缴费成功" in (c["json"] or {}).get("text", {}).get("content", "") for c in pushed)
    with db.session() as s:
        payment = s.scalar(select(Payment))
        assert payment.channel == "cash" and payment.amount_fen == 15000
        assert payment.recorded_by == va
        assert {e.status for e in s.scalars(select(Enrolment))} == {EnrolmentStatus.paid}
        entry = s.scalar(select(JournalEntry))
        assert {l.account: l.amount_fen for l in entry.lines}["fund:cash"] == 15000
    assert balance(db) == 30000
    assert "已经缴清" in villager.text(va, f"/收款 {number} 150").reply
    assert snapshot(db)["payments"] == 1
    assert not any(i in summary + r.reply for i in ids)


@pytest.mark.parametrize("amount", ["100", "150.01", "200.00", "0"])
def test_partial_or_excess_is_refused_with_the_due_amount(villager, app_ctx, db, amount):
    number, _ = household(app_ctx)
    va = admin(db, "o_va_west")
    before = snapshot(db)
    reply = villager.text(va, f"/收款 {number} {amount} 现金").reply
    assert "应缴 150.00 元" in reply and "金额必须与应缴一致" in reply
    assert snapshot(db) == before
    with db.session() as s:
        assert s.scalar(select(AuditLog).where(AuditLog.action == "admin.refused")
                        .order_by(AuditLog.id.desc())).after["why"] == "payment_record_refused"


def test_other_villages_admin_is_refused(villager, app_ctx, db):
    number, _ = household(app_ctx, village="示范镇/西村")
    east = admin(db, "o_va_east", village="示范镇/东村")
    before = snapshot(db)
    reply = villager.text(east, f"/收款 {number} 150").reply
    assert "不在你管理的村" in reply
    assert snapshot(db) == before
    assert "不在你管理的村" in villager.text(east, f"/收款 {number} 150 转账").reply
    with db.session() as s:
        refusals = s.scalars(select(AuditLog).where(AuditLog.actor == east,
                                                    AuditLog.action == "admin.refused")).all()
        assert len(refusals) == 2


def test_record_refusals_say_what_to_send(villager, app_ctx, db):
    number, _ = household(app_ctx)
    va = admin(db, "o_va_west")
    reviewer = admin(db, "o_rev", role="reviewer")
    before = snapshot(db)
    assert "看不懂" in villager.text(va, f"/收款 {number} 一百五").reply
    assert "现金" in villager.text(va, f"/收款 {number} 150 支付宝").reply
    assert "没有户号 H999" in villager.text(va, "/收款 H999 150").reply
    assert "/收款 户号 金额" in villager.text(va, f"/收款 {number}").reply
    assert "格式不对" in villager.text(va, f"/收款 {number} 150 现金 多余").reply
    assert "不能使用" in villager.text(reviewer, f"/收款 {number} 150").reply
    assert "还没有绑定管理员" in villager.text("o_nobody", f"/收款 {number} 150").reply
    assert snapshot(db) == before


def test_pool_admin_records_a_transfer_and_cancel_records_nothing(villager, app_ctx, db):
    number, _ = household(app_ctx, [M("王大山")])
    pa = admin(db, "o_pa", role="pool_admin")
    villager.text(pa, f"/收款 {number} 50 转账")
    assert "已取消" in villager.text(pa, "取消").reply
    assert snapshot(db)["payments"] == 0
    assert "收到转账 50.00 元" in villager.text(pa, f"/收款 {number} 50.00 转账").reply
    assert "已登记" in villager.text(pa, "确认").reply
    with db.session() as s:
        assert s.scalar(select(Payment.channel)) == "transfer"


def test_record_is_refused_when_it_became_wrong_before_confirming(villager, app_ctx, db):
    number, _ = household(app_ctx, [M("王大山")])
    va = admin(db, "o_va_west")
    villager.text(va, f"/收款 {number} 50")
    with db.session() as s:  # meanwhile the household paid another way
        payments.record_offline(s, get_household(s, number), 5000, "transfer", "cli:x", now(app_ctx))
    assert "已经缴清" in villager.text(va, "确认").reply
    assert snapshot(db)["payments"] == 1


# -- offline payments: the command line ---------------------------------------------------------

@pytest.fixture
def cli_env(cfg, monkeypatch):
    for key, value in cfg.values.items():
        monkeypatch.setenv(f"HUZHU_{key}", str(value))


def test_cli_payments_record(app_ctx, db, cli_env, capsys):
    number, ids = household(app_ctx)
    assert cli(["payments", "record", number, "100"]) == 1
    err = capsys.readouterr().err
    assert "150.00 元" in err and "wrong_amount" in err
    assert snapshot(db)["payments"] == 0
    assert cli(["payments", "record", number, "abc"]) == 2
    assert cli(["payments", "record", "H000", "150"]) == 2
    capsys.readouterr()
    assert cli(["payments", "record", number, "150.00", "--channel", "transfer", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"amount_fen": 15000' in out and '"channel": "transfer"' in out
    assert not any(i in out for i in ids)
    assert cli(["payments", "record", number, "150.00"]) == 1
    assert "already_paid" in capsys.readouterr().err
    with db.session() as s:
        assert s.scalar(select(Payment.recorded_by)).startswith("cli:")
        assert s.scalar(select(AuditLog).where(AuditLog.action == "payment.received"))
    assert balance(db) == 30000


# -- the deadline: expiry and reminders ---------------------------------------------------------

def test_orders_expire_only_after_the_deadline(app_ctx, db):
    number, _ = household(app_ctx)
    with db.session() as s:
        payments.order_for(s, get_household(s, number), "test", now(app_ctx))
    set_deadline(db, local_today(), backdate_enrolments=True)
    assert expire(app_ctx) == 0  # the deadline day itself still takes payments
    set_deadline(db, local_today() - timedelta(days=1))
    late, _ = household(app_ctx, [M("王小宝", "child")], openid="o_late")  # after the deadline
    assert expire(app_ctx) == 1
    assert expire(app_ctx) == 0
    with db.session() as s:
        assert s.scalar(select(PaymentOrder.status)) is OrderStatus.expired
        status = {e.member.household.number: e.status for e in s.scalars(select(Enrolment))}
        assert status == {number: EnrolmentStatus.lapsed, late: EnrolmentStatus.pending}
        assert s.scalar(select(AuditLog).where(AuditLog.action == "payment.order_expired"))


def test_reminders_7_and_1_days_before_once_each(villager, app_ctx, db):
    unpaid, _ = household(app_ctx, openid="o_unpaid")
    household(app_ctx, openid="o_paid", enrolment="paid")
    household(app_ctx, openid=None)  # nobody to tell
    for who in ("o_unpaid", "o_paid"):
        villager.text(who, "0")
    since = villager.last_call_id()
    set_deadline(db, local_today() + timedelta(days=10))
    assert remind(app_ctx) == 0
    set_deadline(db, local_today() + timedelta(days=7))
    assert remind(app_ctx) == 1
    assert remind(app_ctx) == 0  # idempotent per household and reminder
    texts = [(c["json"] or {}).get("text", {}).get("content", "")
             for c in villager.wait_pushes("o_unpaid", since, 6)]
    assert len(texts) == 1 and "还有 7 天" in texts[0] and "150.00 元" in texts[0]
    assert unpaid in texts[0] and "回复 2 缴费" in texts[0]
    assert villager.calls(touser="o_paid", since=since) == []
    set_deadline(db, local_today() + timedelta(days=1))
    assert remind(app_ctx) == 1
    assert remind(app_ctx) == 0
    set_deadline(db, local_today())
    assert remind(app_ctx) == 0  # the 1-day reminder was sent already
    texts = [(c["json"] or {}).get("text", {}).get("content", "")
             for c in villager.wait_pushes("o_unpaid", since, 6)]
    assert len(texts) == 2 and "还有 1 天" in texts[1]


def test_qr_page_for_unknown_and_paid_orders(villager, app_ctx, db, bot):
    assert requests.get(f"{bot.url}/pay/qr/HZNOSUCHORDER", timeout=5).status_code == 404
    assert requests.get(f"{bot.url}/pay/qr/..%2Fetc", timeout=5).status_code == 404
    number, _ = household(app_ctx, [M("王大山")])
    with db.session() as s:
        payments.record_offline(s, get_household(s, number), 5000, "cash", "cli:x", now(app_ctx))
        no = s.scalar(select(PaymentOrder.out_trade_no))
    page = requests.get(f"{bot.url}/pay/qr/{no}", timeout=5)
    assert page.status_code == 200 and "已经缴费成功" in page.text
    # a household's page: not cached, framed, sniffed, nor its URL sent on
    assert page.headers["Cache-Control"] == "private, no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "img-src 'self' data:" in page.headers["Content-Security-Policy"]


def _effects(db, number) -> dict:
    """What a payment left for a household, in words a person checks: order, payment, ledger,
    enrolments, audit actions and the confirmation's text."""
    with db.session() as s:
        hh = get_household(s, number)
        order = s.scalar(select(PaymentOrder).where(PaymentOrder.household_id == hh.id))
        pay = s.scalar(select(Payment).where(Payment.household_id == hh.id))
        entry = s.scalar(select(JournalEntry).where(
            JournalEntry.ref == f"payment:{pay.transaction_id}"))
        notice = s.scalar(select(OutboxMessage).where(
            OutboxMessage.household_id == hh.id, OutboxMessage.event == "payment_received"))
        return {
            "order": (order.status, order.amount_fen, order.breakdown["totals"]),
            "payment": (pay.amount_fen, pay.channel, pay.order_id == order.id),
            "ledger": sorted((ln.account, ln.amount_fen) for ln in entry.lines),
            "enrolments": sorted(e.status.value for e in s.scalars(
                select(Enrolment).join(Enrolment.member).where(
                    Enrolment.member.has(household_id=hh.id)))),
            "audit": sorted(a.action for a in s.scalars(select(AuditLog).where(
                AuditLog.entity_id.in_([order.out_trade_no, pay.transaction_id])))),
            # the same words but for the household's number and the masked ID numbers' last digits
            "notice": re.sub(r"\*[0-9X]{2}\b", "*", notice.payload["text"].replace(number, "H")),
        }


def test_a_cash_list_pays_each_household_as_one_record_would(app_ctx, db):
    one, _ = household(app_ctx, openid="o_one")
    many = [household(app_ctx, openid=f"o_many_{i}")[0] for i in range(3)]
    with db.session() as s:
        payments.record_offline(s, get_household(s, one), 15000, "cash", "cli:x", now(app_ctx))
    with db.session() as s:
        ids = [get_household(s, n).id for n in many]
        assert payments.record_offline_many(s, [(i, 15000) for i in ids], "cash", "cli:x",
                                            now(app_ctx)) == 3
    expected = _effects(db, one)
    assert expected["enrolments"] == ["paid"] * 3
    for number in many:
        assert _effects(db, number) == expected
    with db.session() as s:  # the list again: already paid, and nothing changes
        before = snapshot(db)
        with pytest.raises(payments.PaymentError) as e:
            payments.record_offline_many(s, [(ids[0], 15000)], "cash", "cli:x", now(app_ctx))
        assert e.value.code == "already_paid"
    assert snapshot(db) == before


def test_a_cash_list_with_a_wrong_amount_records_nothing(app_ctx, db):
    numbers = [household(app_ctx, openid=f"o_list_{i}")[0] for i in range(2)]
    before = snapshot(db)
    with pytest.raises(payments.PaymentError) as e:
        with db.session() as s:
            ids = [get_household(s, n).id for n in numbers]
            payments.record_offline_many(s, [(ids[0], 15000), (ids[1], 10000)], "cash",
                                         "cli:x", now(app_ctx))
    assert e.value.code == "wrong_amount" and e.value.details["household"] == numbers[1]
    assert e.value.details["due_fen"] == 15000
    assert snapshot(db) == before


def test_cli_records_a_village_list_all_or_nothing(app_ctx, db, cli_env, capsys, tmp_path):
    a, ids_a = household(app_ctx, openid="o_list_a")
    b, _ = household(app_ctx, openid="o_list_b")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(f"户号,金额\n{a},150.00\n{b},100\n", encoding="utf-8-sig")
    assert cli(["payments", "record-list", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert f"户号 {b} 应缴 150.00 元" in err and "nothing recorded" in err
    assert snapshot(db)["payments"] == 0
    (tmp_path / "typo.csv").write_text(f"{a},150\nH999,1x\n", encoding="utf-8")
    assert cli(["payments", "record-list", str(tmp_path / "typo.csv")]) == 2
    assert "line 2" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text(f"户号,金额\n{a},150.00\n{b.lower()},150\n", encoding="utf-8")
    assert cli(["payments", "record-list", str(good), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"payments": 2' in out and '"total_fen": 30000' in out
    assert not any(i in out for i in ids_a)
    assert balance(db) == 60000  # personal and collective shares
    assert cli(["payments", "record-list", str(good)]) == 1
    assert f"户号 {a} 这一年度已经缴清" in capsys.readouterr().err
    assert balance(db) == 60000  # personal and collective shares

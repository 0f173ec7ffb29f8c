"""The double-entry ledger: entries balance, refs make posting idempotent, the balance is
derived; `huzhu funds add`, `huzhu ledger check` and `huzhu report fund`."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.cli import main as cli
from core import ledger, payments
from core.models import Household, JournalEntry, JournalLine, Pool, SchemeYear
from tests.factories import local_today, M, make_household


@pytest.fixture(autouse=True)
def ledger_balanced(db):
    yield
    with db.session() as s:
        assert ledger.check(s) == []


@pytest.fixture
def pool_id(app_ctx, db) -> int:
    with db.session() as s:
        return s.scalar(select(Pool.id).where(Pool.code == "demo"))


@pytest.fixture
def cli_env(cfg, monkeypatch):
    for key, value in cfg.values.items():
        monkeypatch.setenv(f"HUZHU_{key}", str(value))


def report(capsys) -> dict:
    capsys.readouterr()
    assert cli(["report", "fund", "--pool", "demo", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_post_is_idempotent_by_ref_and_refuses_unbalanced(db, pool_id):
    today = local_today()
    with db.session() as s:
        e1 = ledger.post(s, pool_id, "funds", "t:1", ledger.funds_lines("donor", 500), today)
        e2 = ledger.post(s, pool_id, "funds", "t:1", ledger.funds_lines("donor", 900), today)
        assert e1.id == e2.id
        with pytest.raises(ledger.LedgerError):
            ledger.post(s, pool_id, "funds", "t:2", {ledger.CASH: 100, "income:donor": -99}, today)
        with pytest.raises(ledger.LedgerError):
            ledger.post(s, pool_id, "funds", "t:3", {ledger.CASH: 0}, today)
        with pytest.raises(ledger.LedgerError):
            ledger.funds_lines("lottery", 100)
        with pytest.raises(ledger.LedgerError):
            ledger.funds_lines("donor", 0)
    with db.session() as s:
        assert s.scalar(select(func.count(JournalEntry.id))) == 1
        assert ledger.balance(s, pool_id) == 500


def test_spec_money_example_three_members(app_ctx, db, pool_id):
    """SPEC "Money": 3 members, 100.00 per person, 50.00 personal: the household pays 150.00
    and the pool's balance grows by 300.00 (personal 150.00, the collective's 150.00)."""
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse"),
                                               M("王小明", "child")], enrolment="pending")
        payment = payments.record_offline(s, hh, 15000, "cash", "cli:test",
                                          datetime.now(app_ctx.cfg.tz))
        assert payment.amount_fen == 15000
    with db.session() as s:
        t = ledger.totals(s, pool_id)
        assert t == {"fund:cash": 15000, "income:personal": -15000,
                     "receivable:collective": 15000, "income:collective": -15000}
        assert ledger.balance(s, pool_id) == 30000
        summary = ledger.summary(s, pool_id)
        assert summary["income_fen"] == {"personal": 15000, "collective": 15000}
        assert summary["balance_fen"] == 30000


def test_contribution_lines_of_other_sources():
    lines = ledger.contribution_lines({"personal": 3000, "collective": 2000, "charity": 1000,
                                       "government": 500})
    assert sum(lines.values()) == 0
    assert lines == {"fund:cash": 3000, "income:personal": -3000,
                     "receivable:collective": 2000, "income:collective": -2000,
                     "receivable:charity": 1000, "income:charity": -1000,
                     "receivable:government": 500, "income:government": -500}


def test_funds_add_and_fund_report(app_ctx, db, cli_env, capsys):
    empty = report(capsys)
    assert empty.pop("period")["start"]  # the scheme year running today
    assert empty == {"pool": "demo", "income_fen": {}, "paid_fen": 0, "fees_fen": 0,
                     "recovered_fen": 0, "carried_over_fen": 0, "balance_fen": 0}
    assert cli(["funds", "add", "--pool", "demo", "--source", "donor", "10000.00",
                "--note", "乡贤捐赠"]) == 0
    assert cli(["funds", "add", "--pool", "demo", "--source", "interest", "12.34"]) == 0
    assert cli(["funds", "add", "--pool", "demo", "--source", "government", "2,000"]) == 0
    doc = report(capsys)
    assert doc["income_fen"] == {"donor": 1000000, "government": 200000, "interest": 1234}
    assert doc["balance_fen"] == 1201234
    assert set(doc) >= {"pool", "income_fen", "paid_fen", "fees_fen", "recovered_fen",
                        "carried_over_fen", "balance_fen"}
    # refused: nothing added
    assert cli(["funds", "add", "--pool", "demo", "--source", "donor", "-5"]) == 2
    assert cli(["funds", "add", "--pool", "demo", "--source", "donor", "0"]) == 2
    assert cli(["funds", "add", "--pool", "nowhere", "--source", "donor", "5"]) == 2
    with pytest.raises(SystemExit):
        cli(["funds", "add", "--pool", "demo", "--source", "lottery", "5"])
    assert report(capsys)["balance_fen"] == 1201234
    # the text report
    capsys.readouterr()
    assert cli(["report", "fund", "--pool", "demo"]) == 0
    text = capsys.readouterr().out
    assert "12,012.34 元" in text and "捐赠" in text


def test_fund_report_carries_the_previous_balance_over(app_ctx, db, pool_id, cli_env, capsys):
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        before_year = year.start - timedelta(days=10)
        ledger.post(s, pool_id, "funds", "old:1", ledger.funds_lines("donor", 70000), before_year)
        ledger.post(s, pool_id, "funds", "new:1", ledger.funds_lines("charity", 5000), local_today())
    doc = report(capsys)
    assert doc["carried_over_fen"] == 70000
    assert doc["income_fen"] == {"charity": 5000}
    assert doc["balance_fen"] == 75000


def test_ledger_check_names_the_unbalanced_entry(app_ctx, db, pool_id, cli_env, capsys):
    with db.session() as s:
        ledger.post(s, pool_id, "funds", "good:1", ledger.funds_lines("donor", 100), local_today())
    assert cli(["ledger", "check"]) == 0
    assert "ledger ok" in capsys.readouterr().out
    with db.session() as s:  # corrupt the books behind the ledger's back
        bad = JournalEntry(pool_id=pool_id, booked_on=local_today(), kind="funds", ref="broken:7")
        bad.lines = [JournalLine(account=ledger.CASH, amount_fen=100),
                     JournalLine(account="income:donor", amount_fen=-90)]
        s.add(bad)
    assert cli(["ledger", "check"]) == 1
    out = capsys.readouterr().out
    assert "broken:7" in out and "sum to 10 fen" in out and "good:1" not in out
    with db.session() as s:  # put it right again for the fixture's check
        entry = s.scalar(select(JournalEntry).where(JournalEntry.ref == "broken:7"))
        s.delete(entry)
    assert cli(["ledger", "check"]) == 0


def test_household_payment_cannot_be_booked_twice(app_ctx, db, pool_id):
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山")], enrolment="pending")
        number = hh.number
        payments.record_offline(s, hh, 5000, "cash", "cli:test", datetime.now(app_ctx.cfg.tz))
    with db.session() as s, pytest.raises(payments.PaymentError) as e:
        hh = s.scalar(select(Household).where(Household.number == number))
        payments.record_offline(s, hh, 5000, "cash", "cli:test", datetime.now(app_ctx.cfg.tz))
    assert e.value.code == "already_paid"
    with db.session() as s:
        assert ledger.balance(s, pool_id) == 10000
        assert s.scalar(select(func.count(JournalEntry.id))) == 1

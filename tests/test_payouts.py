"""Monthly payouts end to end: an approval, the card dialogue, the scheduled run (the clock moved
to the payout day), the bank file, /确认发放, the notifications; bounced transfers before and
after confirmation; the balance running short; claims with no card; scope and bad input; the
service fee; recoveries and the annual cap; carry-over to the next scheme year; the CLI."""
from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from stdnum import luhn

from bot.jobs.payouts import post_service_fees, run_scheduled_payouts
from core import bankcards, ledger
from core.admins import create_invite
from core.models import (AuditLog, BatchStatus, Claim, ClaimStatus, Household,
                         JournalEntry, Member, Objection, OutboxMessage, PayoutBatch, PayoutLine,
                         PayoutLineStatus, Pool, SchemeYear)
from core.payouts import (batch_number, confirm_batch, month_of, plan, record_failure,
                          run_payout)
from tests.factories import local_today, M, make_claim, make_household

VILLAGER = "o_vil_pay"
ADMIN = "o_pool_admin"
REVIEWER = "o_rev_pay"
TODAY = local_today()
_cards = itertools.count(10_000_001)


def new_card_number() -> str:
    body = f"62284800{next(_cards):010d}"
    return body + luhn.calc_check_digit(body)


# ---------------------------------------------------------------------------------------------
# helpers (also used by tests/test_payout_kill.py)

def pool_id(db, code: str = "demo") -> int:
    with db.session() as s:
        return pid(s, code)


def pid(s, code: str = "demo") -> int:
    return s.scalar(select(Pool.id).where(Pool.code == code))


_fund_refs = itertools.count(1)


def fund(db, fen: int, booked_on: date | None = None, code: str = "demo") -> None:
    """Money into the pool, as `huzhu funds add` would (a donation)."""
    with db.session() as s:
        ledger.post(s, pid(s, code), "funds", f"test-fund:{next(_fund_refs)}:{fen}",
                    {ledger.CASH: fen, ledger.income("donor"): -fen}, booked_on or TODAY,
                    "test donation")


def household_with_card(db, vault, openid: str | None = None, village: str = "示范镇/东村",
                        members=None, number: str | None = None) -> dict:
    with db.session() as s:
        hh = make_household(s, vault, members or [M("王大山"), M("李小花", "spouse")],
                            village=village, openid=openid)
        number = number or new_card_number()
        bankcards.add_card(s, vault, hh, number, "农行", hh.members[0], "test")
        return {"id": hh.id, "number": hh.number, "card": number,
                "member": hh.members[0].id}


def approved_claim(db, household_id: int, amount_fen: int, age_days: int = 10,
                   **fields) -> str:
    """An approved claim made with the models, submitted `age_days` ago."""
    with db.session() as s:
        hh = s.get(Household, household_id)
        c = make_claim(s, hh, status="approved", documents=(), amount_fen=amount_fen,
                       **fields)
        c.submitted_at = datetime.now().astimezone() - timedelta(days=age_days)
        return c.number


def claim_status(db, number: str) -> ClaimStatus:
    with db.session() as s:
        return s.scalar(select(Claim.status).where(Claim.number == number))


def outbox_texts(db, openid: str) -> list[str]:
    """The texts queued for a user: their own messages and their households' notices."""
    with db.session() as s:
        return [m.payload["message"]["content"] if m.kind != "notice" else m.payload["text"]
                for m in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
                if m.recipient == openid
                or (m.kind == "notice" and openid in m.payload.get("openids", []))]


def pushed(villager, openid: str, since: int, seconds: float = 5.0) -> list[str]:
    return [c["json"]["text"]["content"] for c in villager.wait_pushes(openid, since, seconds)
            if (c.get("json") or {}).get("msgtype") == "text"]


def bind(villager, db, openid: str, role: str, **scope) -> None:
    with db.session() as s:
        code = create_invite(s, role, "cli:test", **scope)
    assert "绑定成功" in villager.text(openid, f"/绑定 {code}").reply


def run(app_ctx, month: str | None = None, today: date = TODAY, **kw):
    return run_payout(app_ctx.db, app_ctx.vault, app_ctx.cfg.data_dir, "demo",
                      month or month_of(today), "test", today, **kw)


def invariants(db) -> None:
    """Every claim in at most one live line; lines and claims agree; the ledger balances and
    holds one payout entry per confirmed batch for exactly its paid lines."""
    with db.session() as s:
        assert ledger.check(s) == []
        live = s.execute(select(PayoutLine.claim_id, func.count())
                         .where(PayoutLine.status != PayoutLineStatus.failed)
                         .group_by(PayoutLine.claim_id).having(func.count() > 1)).all()
        assert live == []
        for line, status in s.execute(select(PayoutLine, Claim.status)
                                      .join(Claim, Claim.id == PayoutLine.claim_id)):
            if line.status is PayoutLineStatus.pending:
                assert status is ClaimStatus.in_payout
            elif line.status is PayoutLineStatus.paid:
                assert status in (ClaimStatus.paid, ClaimStatus.recovered)
        in_payout = s.scalar(select(func.count(Claim.id))
                             .where(Claim.status == ClaimStatus.in_payout))
        pending = s.scalar(select(func.count(PayoutLine.id))
                           .where(PayoutLine.status == PayoutLineStatus.pending))
        assert in_payout == pending
        for batch in s.scalars(select(PayoutBatch)):
            entries = list(s.scalars(select(JournalEntry).where(
                (JournalEntry.ref == f"payout:{batch.number}")
                | JournalEntry.ref.like(f"payout-return:{batch.number}:%"))))
            paid = s.scalar(select(func.coalesce(func.sum(PayoutLine.amount_fen), 0)).where(
                PayoutLine.batch_id == batch.id, PayoutLine.status == PayoutLineStatus.paid))
            net = sum(line.amount_fen for e in entries for line in e.lines
                      if line.account == ledger.SUBSIDY)
            if batch.status is BatchStatus.confirmed:
                assert net == paid
            else:
                assert entries == []


def next_payout_day(day: int = 5) -> datetime:
    """03:00 local on the payout day of next month (the clock moved forward)."""
    first = (TODAY.replace(day=1) + timedelta(days=32)).replace(day=1)
    return datetime.combine(first.replace(day=day), time(3, 0))


def env_of(cfg) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    return env


def huzhu(cfg, *args, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                         text=True, env=env_of(cfg), timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def read_xlsx(path: str) -> list[tuple]:
    wb = load_workbook(path, read_only=True)
    rows = [tuple(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    return rows


# ---------------------------------------------------------------------------------------------
# the whole path

def test_approval_card_scheduled_run_confirm_and_notifications(villager, db, app_ctx, cfg):
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse")],
                            village="示范镇/东村", openid=VILLAGER)
        hh_id = hh.id
        number = make_claim(s, hh, status="submitted").number
    fund(db, 10_000_000)
    villager.text(VILLAGER, "0")
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    bind(villager, db, ADMIN, "pool_admin", pool="demo")

    # the reviewer approves; the household is asked for a card and gives it by chat
    adm, dis = TODAY - timedelta(days=20), TODAY - timedelta(days=12)
    assert "8,000.00 元" in villager.text(REVIEWER, f"/核定 {number} FM19 12000.00 {adm} {dis} "
                                                    f"居民医保").reply
    since = villager.last_call_id()
    assert "已通过" in villager.text(REVIEWER, f"/通过 {number}").reply
    assert any("请回复“银行卡”" in t for t in pushed(villager, VILLAGER, since))
    card = new_card_number()
    assert "请回复银行卡号" in villager.text(VILLAGER, "银行卡").reply
    villager.text(VILLAGER, card)
    villager.text(VILLAGER, "农行")
    villager.text(VILLAGER, "1")
    assert "银行卡已登记" in villager.text(VILLAGER, "确认").reply
    masked = "*" * 15 + card[-4:]

    # the day before the payout day nothing runs; on the day at 03:00 the run makes the batch
    payday = next_payout_day(5)
    assert run_scheduled_payouts(app_ctx, payday - timedelta(days=1)) == []
    since = villager.last_call_id()
    [r] = run_scheduled_payouts(app_ctx, payday)
    month = month_of(payday.date())
    assert r.created and r.exported and r.lines == 1 and r.total_fen == 800000
    assert r.batch == f"B{month.replace('-', '')}-demo"
    assert claim_status(db, number) is ClaimStatus.in_payout
    told = pushed(villager, VILLAGER, since)
    assert any(number in t and "已列入本月发放" in t and masked in t for t in told)
    summary = pushed(villager, ADMIN, since)
    assert any(r.batch in t and "1 笔" in t and "8,000.00 元" in t and f"/确认发放 {r.batch}" in t
               for t in summary)

    # the bank file: the only place with the full number; owner-readable only; a totals row
    path = Path(r.file)
    assert path.parent == cfg.data_dir / "exports"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = read_xlsx(r.file)
    assert rows[0][:5] == ("序号", "收款人", "银行卡号", "开户银行", "金额（元）")
    assert rows[1][1:4] == ("王大山", card, "中国农业银行") and float(rows[1][4]) == 8000.0
    assert rows[-1][0] == "合计" and rows[-1][1] == "1 笔" and float(rows[-1][4]) == 8000.0

    # the run again (the next morning) makes nothing new
    assert run_scheduled_payouts(app_ctx, payday + timedelta(days=1)) == []
    again = run(app_ctx, month, payday.date())
    assert again.batch == r.batch and not again.created and not again.file_written

    preview = villager.text(ADMIN, "/发放预览").reply
    assert f"待确认批次 {r.batch}" in preview and "8,000.00 元" in preview

    with db.session() as s:
        before = ledger.balance(s, pid(s))
        from core.groups import add_group
        from core.models import OutboxMessage, Village
        add_group(s, s.scalar(select(Village).where(Village.full_name == "示范镇/东村")),
                  "dongcun-group-key", "cli:test")
    since = villager.last_call_id()
    reply = villager.text(ADMIN, f"/确认发放 {r.batch}").reply
    # the confirmation publishes the month's disclosure to the village group, names masked
    with db.session() as s:
        posts = [o.payload for o in s.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "wecom.post"))]
    assert posts and any("王*山" in p.get("markdown", "") and "8,000.00" in p.get("markdown", "")
                         for p in posts)
    assert not any("王大山" in str(p) for p in posts)
    assert "已确认" in reply and "1 笔" in reply and "8,000.00 元" in reply
    assert claim_status(db, number) is ClaimStatus.paid
    told = pushed(villager, VILLAGER, since)
    assert any(number in t and "已转到中国农业银行卡" in t and masked in t and "王*山" in t
               for t in told)
    assert not any(card in t for t in told)
    with db.session() as s:
        assert ledger.balance(s, pid(s)) == before - 800000
        assert ledger.summary(s, pid(s))["paid_fen"] == 800000
    assert "之前已经确认过" in villager.text(ADMIN, f"/确认发放 {r.batch.lower()}").reply
    with db.session() as s:
        assert s.scalar(select(func.count(JournalEntry.id))
                        .where(JournalEntry.kind == "payout")) == 1
        actions = list(s.scalars(select(AuditLog.action).where(
            AuditLog.entity_id == number, AuditLog.action.like("claim.%")).order_by(AuditLog.id)))
        assert actions[-3:] == ["claim.approved", "claim.in_payout", "claim.paid"]
        assert hh_id
    invariants(db)


# ---------------------------------------------------------------------------------------------
# the balance, cards, objections

def test_oldest_first_as_far_as_the_balance_covers_and_the_rest_waits(villager, db, app_ctx):
    bind(villager, db, ADMIN, "pool_admin", pool="demo")
    a = household_with_card(db, app_ctx.vault)
    b = household_with_card(db, app_ctx.vault)
    oldest = approved_claim(db, a["id"], 500000, age_days=30)
    second = approved_claim(db, b["id"], 500000, age_days=20)
    third = approved_claim(db, a["id"], 500000, age_days=10)
    small = approved_claim(db, b["id"], 100000, age_days=5)  # fits, but waits its turn
    fund(db, 1_200_000)
    r = run(app_ctx)
    assert r.lines == 2 and r.total_fen == 1_000_000
    assert r.figures["waiting_balance"] == 2 and r.figures["waiting_balance_fen"] == 600000
    assert [claim_status(db, n) for n in (oldest, second, third, small)] == [
        ClaimStatus.in_payout, ClaimStatus.in_payout, ClaimStatus.approved, ClaimStatus.approved]
    summary = outbox_texts(db, ADMIN)[-1]
    assert "余额不足，2 笔（6,000.00 元）等下次发放" in summary
    # the unconfirmed batch is counted against the balance: the preview takes nothing more
    with db.session() as s:
        p = plan(s, pid(s), TODAY)
        assert p.available_fen == 200000 and p.take == [] and len(p.waiting_balance) == 2
    invariants(db)


def test_claims_without_a_card_or_under_objection_wait_and_admins_are_told(villager, db,
                                                                           app_ctx):
    bind(villager, db, ADMIN, "pool_admin", pool="demo")
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("赵四")], openid="o_nocard")
        no_card_hh = hh.id
    no_card = approved_claim(db, no_card_hh, 300000)
    held_hh = household_with_card(db, app_ctx.vault)
    held = approved_claim(db, held_hh["id"], 300000)
    with db.session() as s:
        s.add(Objection(claim_id=s.scalar(select(Claim.id).where(Claim.number == held)),
                        openid="o_neighbour", reason="不是住院"))
    fund(db, 5_000_000)
    r = run(app_ctx, announce_empty=True)
    assert r.batch is None and r.figures["waiting_card"] == 1 and r.figures["held"] == 1
    with db.session() as s:
        assert s.scalar(select(func.count(PayoutBatch.id))) == 0
    told = outbox_texts(db, ADMIN)[-1]
    assert "没有可以发放的补助" in told and "1 笔还没有登记银行卡" in told and "异议期" in told
    [reminder] = outbox_texts(db, "o_nocard")  # the household is asked for its card again
    assert no_card in reminder and "请回复“银行卡”" in reminder
    assert claim_status(db, no_card) is ClaimStatus.approved
    assert claim_status(db, held) is ClaimStatus.approved


# ---------------------------------------------------------------------------------------------
# bounced transfers

def test_a_bounce_before_confirmation_requeues_the_claim_and_the_rest_is_paid(
        villager, db, app_ctx):
    bind(villager, db, ADMIN, "pool_admin", pool="demo")
    villager.text(VILLAGER, "0")
    a = household_with_card(db, app_ctx.vault, openid=VILLAGER)
    b = household_with_card(db, app_ctx.vault)
    bounced = approved_claim(db, a["id"], 300000, age_days=9)
    fine = approved_claim(db, b["id"], 200000, age_days=8)
    fund(db, 1_000_000)
    r = run(app_ctx)
    since = villager.last_call_id()
    reply = villager.text(ADMIN, f"/发放失败 {r.batch} {bounced} 账户已销户").reply
    assert "转账失败" in reply and bounced in reply and "其余的转账不受影响" in reply
    assert claim_status(db, bounced) is ClaimStatus.approved
    told = pushed(villager, VILLAGER, since)
    assert any(bounced in t and "账户已销户" in t and "请回复“银行卡”" in t for t in told)
    with db.session() as s:
        assert bankcards.active_card(s, a["id"]) is None  # the card it bounced from is off
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.entity_id == bounced)
                                 .order_by(AuditLog.id)))
        assert actions[-2:] == ["claim.payout_failed", "claim.approved"]
    again = villager.text(ADMIN, f"/发放失败 {r.batch} {bounced} 又退回").reply
    assert "已经登记过转账失败" in again

    reply = villager.text(ADMIN, f"/确认发放 {r.batch}").reply
    assert "1 笔，共 2,000.00 元" in reply and "1 笔退回" in reply
    assert claim_status(db, fine) is ClaimStatus.paid
    assert claim_status(db, bounced) is ClaimStatus.approved
    with db.session() as s:
        assert ledger.summary(s, pid(s))["paid_fen"] == 200000
    invariants(db)

    # next month it waits for a card; with the new card it goes into the next batch
    later = (TODAY.replace(day=1) + timedelta(days=32)).replace(day=5)
    r2 = run(app_ctx, today=later)
    assert r2.batch is None and r2.figures["waiting_card"] == 1
    card2 = new_card_number()
    assert "请回复银行卡号" in villager.text(VILLAGER, "银行卡").reply
    villager.text(VILLAGER, card2)
    villager.text(VILLAGER, "建行")
    villager.text(VILLAGER, "2")
    assert "银行卡已登记" in villager.text(VILLAGER, "确认").reply
    later2 = (later + timedelta(days=32)).replace(day=5)
    r3 = run(app_ctx, today=later2)
    assert r3.lines == 1
    rows = read_xlsx(r3.file)
    assert rows[1][2] == card2 and rows[1][3] == "中国建设银行" and rows[1][1] == "李小花"
    invariants(db)


def test_a_bounce_after_confirmation_reverses_the_subsidy(villager, db, app_ctx):
    a = household_with_card(db, app_ctx.vault, openid=VILLAGER)
    b = household_with_card(db, app_ctx.vault)
    bounced = approved_claim(db, a["id"], 300000)
    fine = approved_claim(db, b["id"], 200000)
    fund(db, 1_000_000)
    r = run(app_ctx)
    with db.session() as s:
        confirm_batch(s, r.batch, "test", TODAY)
    with db.session() as s:
        assert ledger.balance(s, pid(s)) == 500000
    with db.session() as s:
        f = record_failure(s, r.batch, bounced, "户名不符", "test", TODAY)
        assert f.after_confirm and f.card_deactivated
    assert claim_status(db, bounced) is ClaimStatus.approved
    assert claim_status(db, fine) is ClaimStatus.paid
    with db.session() as s:
        assert ledger.balance(s, pid(s)) == 800000
        assert ledger.summary(s, pid(s))["paid_fen"] == 200000
        assert s.scalar(select(JournalEntry).where(
            JournalEntry.ref == f"payout-return:{r.batch}:{bounced}")) is not None
    assert any("户名不符" in t for t in outbox_texts(db, VILLAGER))
    invariants(db)


# ---------------------------------------------------------------------------------------------
# who may, and bad input

def test_scope_roles_and_bad_input_change_nothing(villager, db, app_ctx):
    a = household_with_card(db, app_ctx.vault, village="示范镇/东村")
    number = approved_claim(db, a["id"], 300000)
    fund(db, 1_000_000)
    r = run(app_ctx)
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    bind(villager, db, "o_west", "village_admin", village="示范镇/西村")
    bind(villager, db, "o_east", "village_admin", village="示范镇/东村")
    bind(villager, db, ADMIN, "pool_admin", pool="demo")

    assert "不能使用" in villager.text(REVIEWER, f"/确认发放 {r.batch}").reply
    assert "不在你管理的范围内" in villager.text("o_west", f"/确认发放 {r.batch}").reply
    assert "不在你管理的范围内" in villager.text("o_west",
                                                 f"/发放失败 {r.batch} {number} 退回").reply
    assert "没有批次" in villager.text(ADMIN, "/确认发放 B190001-demo").reply
    assert "格式不对" in villager.text(ADMIN, f"/发放失败 {r.batch}").reply
    assert "没有申请" in villager.text(ADMIN, f"/发放失败 {r.batch} C99999999 退回").reply
    west = villager.text("o_west", "/发放预览").reply
    assert "下一批（每月5日）：0 笔" in west and number not in west
    assert claim_status(db, number) is ClaimStatus.in_payout
    with db.session() as s:
        assert s.scalar(select(PayoutBatch.status)) is BatchStatus.exported
        refused = s.scalar(select(func.count(AuditLog.id))
                           .where(AuditLog.action == "admin.refused"))
        assert refused >= 5
    # the east village's admin holds every line of this batch: it may confirm it
    assert "已确认" in villager.text("o_east", f"/确认发放 {r.batch}").reply
    invariants(db)


def test_preview_of_a_village_admin_shows_its_villages_only(villager, db, app_ctx):
    east = household_with_card(db, app_ctx.vault, village="示范镇/东村",
                               members=[M("东大山")])
    west = household_with_card(db, app_ctx.vault, village="示范镇/西村",
                               members=[M("西小明")])
    e = approved_claim(db, east["id"], 300000)
    w = approved_claim(db, west["id"], 400000)
    fund(db, 1_000_000)
    bind(villager, db, "o_east", "village_admin", village="示范镇/东村")
    bind(villager, db, ADMIN, "pool_admin", pool="demo")
    mine = villager.text("o_east", "/发放预览").reply
    assert e in mine and w not in mine and "1 笔，共 3,000.00 元" in mine and "东*山" in mine
    whole = villager.text(ADMIN, "/发放预览").reply
    assert e in whole and w in whole and "2 笔，共 7,000.00 元" in whole
    assert "东大山" not in whole and "西小明" not in whole
    with db.session() as s:
        assert s.scalar(select(func.count(PayoutBatch.id))) == 0  # a preview changes nothing


# ---------------------------------------------------------------------------------------------
# service fee, recovery, carry-over

def test_quarterly_service_fee_is_the_rate_of_the_quarters_paid_subsidies(db, app_ctx):
    a = household_with_card(db, app_ctx.vault)
    approved_claim(db, a["id"], 1_234_567)
    fund(db, 5_000_000, booked_on=TODAY - timedelta(days=200))
    # a payout confirmed in the middle of a quarter, the fee job on the quarter's first day after
    q_start = date(TODAY.year, 3 * ((TODAY.month - 1) // 3) + 1, 1)
    paid_on = q_start - timedelta(days=40)  # inside the previous quarter
    r = run(app_ctx, today=paid_on)
    with db.session() as s:
        confirm_batch(s, r.batch, "test", paid_on)
    posted = post_service_fees(app_ctx, datetime.combine(q_start, time(4, 0)))
    label = f"{paid_on.year}Q{(paid_on.month - 1) // 3 + 1}"
    fee = 30864  # 12,345.67 × 2.5% = 308.64175 → 308.64 (half up)
    assert posted == [("demo", label, fee)]
    assert post_service_fees(app_ctx, datetime.combine(q_start + timedelta(days=1),
                                                        time(4, 0))) == [("demo", label, fee)]
    cli = json.loads(huzhu(app_ctx.cfg, "payout", "fee", "--pool", "demo", "--period", label,
                           "--json").stdout)
    assert cli == [{"pool": "demo", "period": label, "fee_fen": fee, "ref": f"fee:demo:{label}"}]
    with db.session() as s:
        [entry] = s.scalars(select(JournalEntry).where(JournalEntry.kind == "fee"))
        assert entry.ref == f"fee:demo:{label}"
        assert entry.booked_on == q_start - timedelta(days=1)
        assert {l.account: l.amount_fen for l in entry.lines} == {
            ledger.FEE: fee, ledger.FEE_PAYABLE: -fee}
        figures = ledger.summary(s, pid(s))
        assert figures["fees_fen"] == fee
        assert figures["balance_fen"] == 5_000_000 - 1_234_567 - fee
    invariants(db)


def test_recovery_restores_the_annual_cap_and_shows_in_the_fund_report(villager, db, app_ctx,
                                                                        cfg):
    villager.text(VILLAGER, "0")
    a = household_with_card(db, app_ctx.vault, openid=VILLAGER)
    start = TODAY - timedelta(days=80)
    first = approved_claim(db, a["id"], 5_000_000, admission_date=start,
                           discharge_date=start + timedelta(days=5), drg_code="AA19")
    second = approved_claim(db, a["id"], 5_000_000, admission_date=start + timedelta(days=10),
                            discharge_date=start + timedelta(days=15), drg_code="AA19")
    fund(db, 20_000_000)
    r = run(app_ctx)
    with db.session() as s:
        confirm_batch(s, r.batch, "test", TODAY)
        hh = s.get(Household, a["id"])
        third = make_claim(s, hh, s.get(Member, a["member"]), status="submitted").number
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    adm, dis = TODAY - timedelta(days=20), TODAY - timedelta(days=12)
    decide = f"/核定 {third} AA19 60000.00 {adm} {dis} 居民医保"
    assert "已达年度上限" in villager.text(REVIEWER, decide).reply  # 100,000 used

    out = huzhu(cfg, "claims", "recover", first, "--reason", "虚开住院发票")
    assert "recovered" in out.stdout and "owed" in out.stdout
    assert claim_status(db, first) is ClaimStatus.recovered
    assert any(first in t and "追回" in t and "虚开住院发票" in t
               for t in outbox_texts(db, VILLAGER))
    from core.payouts import PayoutError

    with pytest.raises(PayoutError) as e:  # a bounce can no longer be recorded for it
        with db.session() as s:
            record_failure(s, r.batch, first, "退回", "test", TODAY)
    assert e.value.code == "wrong_status"
    # recovered claims no longer count against the cap (SPEC rule step 4)
    assert "补助 40,000.00 元" in villager.text(REVIEWER, decide).reply
    with db.session() as s:
        t = ledger.totals(s, pid(s))
        assert t[ledger.RECOVERY_RECEIVABLE] == 5_000_000
        assert t[ledger.RECOVERY_INCOME] == -5_000_000
        assert ledger.summary(s, pid(s))["recovered_fen"] == 0  # owed, not yet back
    assert huzhu(cfg, "claims", "recover", first, "--reason", "x",
                 check=False).returncode == 2  # already recovered
    assert huzhu(cfg, "claims", "recover", second, check=False).returncode == 2  # no reason
    huzhu(cfg, "claims", "recover", first, "--received")
    report = json.loads(huzhu(cfg, "report", "fund", "--pool", "demo", "--json").stdout)
    assert report["recovered_fen"] == 5_000_000
    assert report["paid_fen"] == 10_000_000
    assert report["balance_fen"] == 20_000_000 - 10_000_000 + 5_000_000
    invariants(db)


def test_the_balance_carries_over_to_the_next_scheme_year(db, app_ctx, cfg):
    with db.session() as s:
        year = s.scalar(select(SchemeYear).where(SchemeYear.pool_id == pid(s)))
        start = year.start
    last_year = start - timedelta(days=100)
    a = household_with_card(db, app_ctx.vault)
    approved_claim(db, a["id"], 700_000)
    fund(db, 2_000_000, booked_on=last_year)
    r = run(app_ctx, today=last_year + timedelta(days=10))
    with db.session() as s:
        confirm_batch(s, r.batch, "test", last_year + timedelta(days=12))
    fund(db, 300_000, booked_on=start + timedelta(days=1))
    report = json.loads(huzhu(cfg, "report", "fund", "--pool", "demo", "--json").stdout)
    assert report["carried_over_fen"] == 1_300_000
    assert report["paid_fen"] == 0  # paid last year
    assert report["income_fen"] == {"donor": 300_000}
    assert report["balance_fen"] == 1_600_000
    text = huzhu(cfg, "report", "fund", "--pool", "demo").stdout
    period = report["period"]
    assert text.splitlines() == [
        f"示范镇（demo）基金情况 {period['start']} 至 {period['end']}",
        "  上年结转         13,000.00 元",
        "  收入·捐赠          3,000.00 元",
        "  补助支出              0.00 元",
        "  服务费                0.00 元",
        "  追回                  0.00 元",
        "  余额             16,000.00 元"]


# ---------------------------------------------------------------------------------------------
# the command line, the file, personal data

def test_cli_run_list_confirm_and_no_card_number_outside_the_bank_file(db, app_ctx, cfg):
    homes = [household_with_card(db, app_ctx.vault) for _ in range(3)]
    numbers = [approved_claim(db, h["id"], 100_000 * (i + 1)) for i, h in enumerate(homes)]
    fund(db, 10_000_000)
    month = month_of(TODAY)
    out = huzhu(cfg, "payout", "run", "--pool", "demo", "--month", month, "--json")
    [doc] = json.loads(out.stdout)
    assert doc["created"] and doc["lines"] == 3 and doc["total_fen"] == 600_000
    listed = json.loads(huzhu(cfg, "payout", "list", "--pool", "demo", "--json").stdout)
    assert listed[0]["batch"] == doc["batch"] and listed[0]["status"] == "exported"
    assert {k: listed[0][k] for k in ("pool", "month", "total_fen", "lines")} == {
        "pool": "demo", "month": month, "total_fen": 600_000, "lines": 3}
    again = json.loads(huzhu(cfg, "payout", "run", "--pool", "demo", "--month", month,
                             "--json").stdout)[0]
    assert again["batch"] == doc["batch"] and not again["created"]
    assert huzhu(cfg, "payout", "run", "--month", "2026-13", check=False).returncode == 2
    assert huzhu(cfg, "payout", "confirm", "Bnope", check=False).returncode == 2
    conf = json.loads(huzhu(cfg, "payout", "confirm", doc["batch"], "--json").stdout)
    assert conf["paid"] == 3 and conf["paid_fen"] == 600_000
    assert all(claim_status(db, n) is ClaimStatus.paid for n in numbers)
    rows = read_xlsx(doc["file"])
    assert {r[2] for r in rows[1:-1]} == {h["card"] for h in homes}
    everything = [out.stdout, json.dumps(listed), json.dumps(conf)]
    with db.session() as s:
        everything += [json.dumps(m.payload, ensure_ascii=False)
                       for m in s.scalars(select(OutboxMessage))]
        everything += [json.dumps([a.before, a.after], ensure_ascii=False, default=str)
                       for a in s.scalars(select(AuditLog))]
        everything += [f"{l.card_number_enc} {l.card_number_masked} {l.failure}"
                       for l in s.scalars(select(PayoutLine))]
    blob = "\n".join(everything)
    for h in homes:
        assert h["card"] not in blob and h["card"][-4:] in blob
    invariants(db)


def test_a_missing_bank_file_is_written_again_without_a_second_summary(villager, db, app_ctx):
    bind(villager, db, ADMIN, "pool_admin", pool="demo")
    a = household_with_card(db, app_ctx.vault)
    approved_claim(db, a["id"], 100_000)
    fund(db, 1_000_000)
    r = run(app_ctx)
    assert len(outbox_texts(db, ADMIN)) == 1
    before = read_xlsx(r.file)
    os.unlink(r.file)
    again = run(app_ctx)
    assert again.file_written and not again.exported and again.batch == r.batch
    assert read_xlsx(again.file) == before
    assert len(outbox_texts(db, ADMIN)) == 1
    # a batch committed but killed before its file: the next run writes it and tells admins
    with db.session() as s:
        s.get(PayoutBatch, s.scalar(select(PayoutBatch.id))).status = BatchStatus.draft
    os.unlink(r.file)
    third = run(app_ctx)
    assert third.file_written and third.exported and third.status == "exported"
    assert len(outbox_texts(db, ADMIN)) == 2


def test_confirming_a_batch_whose_file_is_not_written_is_refused(db, app_ctx):
    a = household_with_card(db, app_ctx.vault)
    approved_claim(db, a["id"], 100_000)
    fund(db, 1_000_000)
    r = run(app_ctx)
    with db.session() as s:
        s.get(PayoutBatch, s.scalar(select(PayoutBatch.id))).status = BatchStatus.draft
    from core.payouts import PayoutError

    with pytest.raises(PayoutError) as e:
        with db.session() as s:
            confirm_batch(s, r.batch, "test", TODAY)
    assert e.value.code == "not_exported"
    invariants(db)


def test_bulk_claim_moves_follow_the_status_table_and_never_half_a_set(db, app_ctx):
    """claims.transition_bulk: a move the table does not allow (approved → paid) is refused,
    and a set one of whose claims is no longer in the starting status moves none of them and
    writes no audit row."""
    from core.claims import TransitionError, transition_bulk
    from core.models import utcnow

    hid = household_with_card(db, app_ctx.vault)["id"]
    numbers = [approved_claim(db, hid, 1000 + i) for i in range(3)]
    with db.session() as s:
        claims = list(s.scalars(select(Claim).where(Claim.number.in_(numbers))))
        items = [{"claim_number": c.number, "household_id": c.household_id,
                  "amount_fen": c.amount_fen} for c in claims]
        ids = select(Claim.id).where(Claim.number.in_(numbers))
        with pytest.raises(TransitionError):
            transition_bulk(s, ids, items, ClaimStatus.approved, ClaimStatus.paid, "test",
                            now=utcnow(), what="test set")
        claims[0].status = ClaimStatus.rejected
        s.flush()
        with pytest.raises(RuntimeError, match="2 of 3 claims"):
            transition_bulk(s, ids, items, ClaimStatus.approved, ClaimStatus.in_payout, "test",
                            now=utcnow(), what="test set")
        s.rollback()
    assert {claim_status(db, n) for n in numbers} == {ClaimStatus.approved}
    with db.session() as s:
        assert not s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "claim.in_payout"))


def test_batch_numbers_fit_and_stay_unique():
    short = Pool(id=7, code="demo", name="x", level="town")
    long = Pool(id=8, code="a" * 30, name="y", level="town")
    assert batch_number(short, "2026-03") == "B202603-demo"
    assert batch_number(long, "2026-03") == "B202603-#8"
    assert len(batch_number(long, "2026-03")) <= 24


# ---------------------------------------------------------------------------------------------
# the schedule

def test_the_jobs_are_scheduled_at_3_and_4_in_the_morning(app_ctx, db):
    from bot.jobs.scheduler import JOBS, Scheduler

    assert JOBS["payout.monthly"].args == {"hour": 3, "minute": 0}
    assert JOBS["payout.service_fee"].args == {"hour": 4, "minute": 0}
    sched = Scheduler(app_ctx)
    sched.start()
    try:
        runs = {j["id"]: datetime.fromisoformat(j["next_run"]) for j in sched.jobs()}
    finally:
        sched.shutdown()
    assert (runs["payout.monthly"].hour, runs["payout.monthly"].minute) == (3, 0)
    assert (runs["payout.service_fee"].hour, runs["payout.service_fee"].minute) == (4, 0)
    assert runs["payout.monthly"].utcoffset() == timedelta(hours=8)  # local: Asia/Shanghai


def test_a_payout_day_missed_is_caught_up_the_next_morning_once(db, app_ctx):
    a = household_with_card(db, app_ctx.vault)
    approved_claim(db, a["id"], 100_000)
    fund(db, 1_000_000)
    payday = next_payout_day(5)
    assert run_scheduled_payouts(app_ctx, payday - timedelta(days=1)) == []
    # the server was down on the 5th: the 6th at 03:00 catches up
    [r] = run_scheduled_payouts(app_ctx, payday + timedelta(days=1))
    assert r.created and r.lines == 1
    approved_claim(db, a["id"], 100_000)
    assert run_scheduled_payouts(app_ctx, payday + timedelta(days=2)) == []  # once a month
    [nxt] = run_scheduled_payouts(app_ctx, next_payout_day(5) + timedelta(days=31))
    assert nxt.month != r.month and nxt.lines == 1

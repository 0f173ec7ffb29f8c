"""`5 查询余额`, `6 基金公示`, `/统计` through the webhook, and the year report
(`huzhu report year`: figures, xlsx, charts)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from core import ledger
from core.admins import bind, create_invite
from core.models import ClaimStatus, EnrolmentStatus, Enrolment, Pool, Village, WechatUser
from core.stats import year_for, year_report
from tests.factories import M, make_household
from tests.transparency_factories import (contribute, local_today, make_claim, pay_claim,
                                          this_month)


def admin(db, openid, role, **scope):
    with db.session() as s:
        code = create_invite(s, role, "cli:test", **scope)
    with db.session() as s:
        bind(s, openid, code)


@pytest.fixture
def fund(app_ctx):
    """东村: 王大山's household (2 members, the spouse not paid yet) with a paid and an approved
    claim; 西村: one more paid household. Contributions, the payout and a service fee booked."""
    db, vault = app_ctx.db, app_ctx.vault
    today = local_today()
    with db.session() as s:
        east = make_household(s, vault, [M("王大山"), M("李小花", "spouse")],
                              village="示范镇/东村", openid="o_wang")
        spouse = s.scalar(select(Enrolment).where(Enrolment.member_id == east.members[1].id))
        spouse.status, spouse.paid_at = EnrolmentStatus.pending, None
        west = make_household(s, vault, [M("赵四海")], village="示范镇/西村", openid="o_zhao")
        contribute(s, east, 5000, 5000, today)
        contribute(s, west, 5000, 5000, today)
        ledger.post(s, east.pool_id, "funds", "test-donation", {"fund:cash": 1000000,
                                                                "income:donor": -1000000}, today)
        paid = make_claim(s, east, 600000, "BR21", out_of_pocket_fen=2800000)
        pay_claim(s, paid, this_month())
        make_claim(s, east, 2000000, "FC19", status=ClaimStatus.approved)
        make_claim(s, west, 0, "FC19", status=ClaimStatus.submitted).amount_fen = None
        ledger.post(s, east.pool_id, "fee", "test-fee", {"expense:service_fee": 15000,
                                                         "payable:service_fee": -15000}, today)
        ids = [vault.decrypt(m.id_number_enc) for hh in (east, west) for m in hh.members]
        pool_id = east.pool_id
    return {"pool_id": pool_id, "ids": ids}


def no_leak(text, ids):
    for name in ("王大山", "李小花", "赵四海"):
        assert name not in text
    for idn in ids:
        assert idn not in text


# -- 查询余额 --------------------------------------------------------------------------------------

def test_balance_shows_each_member_and_the_years_subsidies(villager, fund):
    reply = villager.text("o_wang", "查询余额").reply
    assert "户主 王*山：已缴费，还可补助 74,000.00 元" in reply  # 100,000 − 6,000 − 20,000
    assert "配偶 李*花：待缴费" in reply and "李*花：待缴费，还可" not in reply
    assert "本年度已发放补助 1 笔，共 6,000.00 元" in reply
    assert "回复 2 缴费" in reply and reply.rstrip().endswith("回复 4 查询进度。")
    no_leak(reply, fund["ids"])
    assert villager.text("o_wang", "5").reply == reply
    assert villager.click("o_wang", "MENU_BALANCE").reply == reply


def test_balance_without_a_household_says_how_to_join(villager, app_ctx):
    reply = villager.text("o_stranger", "5").reply
    assert "还没有参加互助" in reply and "回复 1 参加互助" in reply


# -- 基金公示 --------------------------------------------------------------------------------------

def test_fund_shows_the_pool_from_the_ledger(villager, fund):
    reply = villager.text("o_zhao", "基金公示").reply
    assert "示范镇互助基金" in reply
    assert "本年度收入 10,200.00 元（个人缴费 100.00 元、村集体 100.00 元、社会捐赠 10,000.00 元）" \
        in reply
    assert "已发放补助 6,000.00 元，服务费 150.00 元" in reply
    assert "现在余额 4,050.00 元" in reply  # 10,200 − 6,000 − 150
    assert "本年度参加 2 人，申请补助 3 笔（已发放 1 笔）" in reply
    assert villager.text("o_zhao", "6").reply == reply
    no_leak(reply, fund["ids"])


def test_fund_for_a_follower_with_a_village_tag(villager, app_ctx, fund):
    villager.text("o_tagged", "你好")
    with app_ctx.db.session() as s:
        user = s.scalar(select(WechatUser).where(WechatUser.openid == "o_tagged"))
        user.village_id = s.scalar(select(Village.id).where(Village.name == "南村"))
    reply = villager.text("o_tagged", "6").reply
    assert "示范镇互助基金" in reply and "现在余额 4,050.00 元" in reply


@pytest.fixture
def second_pool(app_ctx):
    with app_ctx.db.session() as s:
        pool = Pool(code="hill", name="山乡", level="town")
        s.add(pool)
        s.flush()
        s.add(Village(pool_id=pool.id, town="山乡", name="上村", full_name="山乡/上村"))
    return pool


def test_fund_asks_a_stranger_to_pick_a_village_when_there_are_several_pools(
        villager, app_ctx, fund, second_pool):
    ask = villager.text("o_new", "6").reply
    assert "哪个村" in ask and "1 示范镇/东村" in ask and "4 山乡/上村" in ask
    bad = villager.text("o_new", "北村").reply
    assert "没有找到“北村”" in bad and "4 山乡/上村" in bad
    with app_ctx.db.session() as s:
        assert s.scalar(select(WechatUser.village_id).where(WechatUser.openid == "o_new")) is None
    assert "回复数字" in villager.text("o_new", "9").reply
    shown = villager.text("o_new", "4").reply
    assert "山乡互助基金" in shown and "现在余额 0.00 元" in shown
    with app_ctx.db.session() as s:
        assert s.scalar(select(WechatUser.village_id).where(WechatUser.openid == "o_new")) == \
            s.scalar(select(Village.id).where(Village.name == "上村"))
    # the next time the pool is known
    assert "山乡互助基金" in villager.text("o_new", "6").reply


def test_fund_picks_by_village_name_too(villager, app_ctx, fund, second_pool):
    villager.text("o_new2", "基金公示")
    assert "示范镇互助基金" in villager.text("o_new2", "西村").reply


# -- /统计 -----------------------------------------------------------------------------------------

def test_stats_for_a_pool_admin(villager, app_ctx, fund):
    admin(app_ctx.db, "o_pool", "pool_admin", pool="demo")
    reply = villager.text("o_pool", "/统计").reply
    assert "【示范镇】" in reply
    assert "东村 1/2 人 50.00%，1/1 户" in reply
    assert "西村 1/1 人 100.00%，1/1 户" in reply
    assert "南村 0/0 人，0/0 户" in reply
    assert "申请：待审 1，已通过 1，已发放 1" in reply
    assert "基金余额 4,050.00 元" in reply
    no_leak(reply, fund["ids"])


def test_stats_for_a_village_admin_covers_its_village(villager, app_ctx, fund):
    admin(app_ctx.db, "o_va", "village_admin", village="示范镇/西村")
    reply = villager.text("o_va", "/统计").reply
    assert "西村 1/1 人" in reply and "东村" not in reply
    assert "申请：待审 1" in reply and "已发放 1" not in reply


# -- the year report -------------------------------------------------------------------------------

def test_year_figures_follow_the_definitions(app_ctx):
    """Zhangjiagang's shape: 76% of the money used, 21.34% of the out-of-pocket costs borne."""
    today = local_today()
    with app_ctx.db.session() as s:
        households = [make_household(s, app_ctx.vault, [M(f"钱{i}多")], village="示范镇/南村")
                      for i in range(50)]
        for hh in households:
            contribute(s, hh, 100000, 100000, today)  # 50 × 2,000.00 = 100,000.00 raised
        for i, amount in enumerate((3000000, 2000000, 2600000)):  # 76,000.00 paid
            c = make_claim(s, households[i], amount, "FC19",
                           out_of_pocket_fen=[14058106, 9372071, 12185669][i])
            pay_claim(s, c, this_month())
        make_claim(s, households[3], 500000, "BR21", out_of_pocket_fen=None)
        report = year_report(s, households[0].pool_id, year_for(s, households[0].pool_id, today))
    assert report["raised_fen"] == 10000000 and report["paid_fen"] == 7600000
    assert report["utilisation"] == "0.7600"
    assert report["members"] == 50 and report["claims_paid"] == 3
    assert report["benefit_rate"] == "0.0600"
    assert report["average_subsidy_fen"] == 2533333  # 76,000.00 / 3, half up
    assert report["burden_reduction"] == "0.2134"  # 76,000.00 / 356,158.46
    south = next(v for v in report["villages"] if v["village_name"] == "南村")
    assert (south["persons"], south["persons_paid"], south["rate"]) == (50, 50, "1.0000")


def _cli(cfg, *args):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_report_year_writes_xlsx_and_charts(app_ctx, cfg, fund):
    out = _cli(cfg, "report", "year", "--pool", "demo", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    no_leak(out.stdout, fund["ids"])
    xlsx = doc["files"]["xlsx"]
    assert xlsx.startswith(str(cfg.data_dir / "exports"))
    charts = doc["files"]["charts"]
    from bot.clients.poster import find_font
    assert find_font() is not None and len(charts) == 2
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in charts)
    wb = load_workbook(xlsx)
    overview = {r[0]: r[1] for r in wb["概览"].iter_rows(min_row=2, values_only=True)}
    assert overview["补助支出（元）"] == 6000 and overview["服务费（元）"] == 150
    assert overview["参加人数"] == 2
    villages = [r for r in wb["各村参加"].iter_rows(min_row=2, values_only=True)]
    assert villages[0][:7] == ("示范镇/东村", 1, 1, 1, 2, 2, 1)
    text = _cli(cfg, "report", "year", "--pool", "demo")
    assert text.returncode == 0 and "utilisation" in text.stdout and ".xlsx" in text.stdout
    assert _cli(cfg, "report", "year", "--pool", "nope").returncode == 2

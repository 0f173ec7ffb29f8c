"""Every seed programme played whole: each preset of config/schemes/ is loaded with
`huzhu scheme load` and its seed's cases are played with the seed's own numbers — thresholds at
their edges, the minimum, the caps, the continuity bonus, exclusions, newborns, payment windows,
cover from payment — reviewers and villagers through the webhook, reports through the CLI.

The presets carry their seed's real dates (2020–2025). A run picks a day of the seed's calendar
(`seed_today`) and moves every date of the file by the same number of days so that this day is
today: the windows, the year and the stays keep their places relative to each other, and the
bot runs on the real clock.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from core.admins import create_invite
from core.config import SCHEMES_DIR
from core.models import (AuditLog, Claim, DialogueState, Enrolment, EnrolmentStatus, Household,
                         Member, Payment, PaymentException, PaymentOrder, Pool, SchemeYear)
from core.money import format_yuan
from tests.factories import M, local_today, make_claim, make_household, make_id

TODAY = local_today()
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


# ---------------------------------------------------------------------------------------------
# The harness

def run(cfg, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def cli_json(cfg, *args: str):
    out = run(cfg, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Seed:
    """One preset, moved so that `seed_today` (a day of the seed's own calendar) is today."""

    def __init__(self, name: str, seed_today: date, tmp_path: Path, cfg, db, app_ctx, villager):
        self.name, self.seed_today = name, seed_today
        self.tmp, self.cfg, self.db, self.x, self.v = tmp_path, cfg, db, app_ctx, villager
        self.delta = TODAY - seed_today
        for csv in SCHEMES_DIR.glob("*.csv"):  # the quota tables, beside the moved file
            shutil.copy(csv, tmp_path / csv.name)

    def day(self, seed_day: date) -> date:
        """A day of the seed's calendar, on the real calendar."""
        return seed_day + self.delta

    def text(self, years_back: int = 0, edit=None) -> str:
        text = (SCHEMES_DIR / f"{self.name}.yaml").read_text(encoding="utf-8")
        if edit:
            text = edit(text)

        def move(m: re.Match) -> str:
            seed_day = date(int(m[1]) - years_back, int(m[2]), int(m[3]))
            return self.day(seed_day).isoformat()
        return _ISO.sub(move, text)

    def write(self, years_back: int = 0, edit=None, tag: str = "") -> Path:
        path = self.tmp / f"{self.name}{tag}-{years_back}.yaml"
        path.write_text(self.text(years_back, edit), encoding="utf-8")
        return path

    def load(self, years_back: int = 0) -> dict:
        return cli_json(self.cfg, "scheme", "load", str(self.write(years_back)))

    def year(self, years_back: int = 0) -> SchemeYear:
        with self.db.session() as s:
            pool = s.scalar(select(Pool).where(Pool.code == self.pool_code))
            years = s.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool.id)
                              .order_by(SchemeYear.start.desc())).all()
            year = years[years_back]
            s.expunge(year)
            return year

    @property
    def pool_code(self) -> str:
        return {"tangqiao-2020": "tangqiao", "anji-2024": "anji", "haimen-2023": "haimen",
                "lianshui-2020": "lianshui", "zhangjiagang": "zhangjiagang"}[self.name]

    @property
    def village(self) -> str:
        return self.year().scheme.villages[0]

    def bind(self, openid: str, role: str) -> str:
        village = self.village
        with self.db.session() as s:
            code = create_invite(s, role, "cli:test",
                                 village=village if role == "village_admin" else None,
                                 pool=self.pool_code if role != "village_admin" else None)
        assert "绑定成功" in self.v.text(openid, f"/绑定 {code}").reply
        return openid

    def household(self, members: list[M], openid: str | None, enrolment: str = "paid",
                  years_back: int = 0) -> dict:
        village, year_id = self.village, self.year(years_back).id
        with self.db.session() as s:
            year = s.get(SchemeYear, year_id)
            hh = make_household(s, self.x.vault, members, village=village, openid=openid,
                                enrolment=enrolment, year=year)
            return {"id": hh.id, "number": hh.number, "members": [m.id for m in hh.members],
                    "hashes": [m.id_number_hash for m in hh.members]}

    def enrol_previous_year(self, home: dict, index: int) -> None:
        """The member paid in the scheme year before (the continuity bonus)."""
        previous = self.year(1)
        with self.db.session() as s:
            s.add(Enrolment(member_id=home["members"][index], scheme_year_id=previous.id,
                            id_number_hash=home["hashes"][index], status=EnrolmentStatus.paid))

    def claim(self, home: dict, index: int = 0, **fields) -> str:
        with self.db.session() as s:
            hh = s.get(Household, home["id"])
            return make_claim(s, hh, s.get(Member, home["members"][index]), **fields).number

    def decide(self, reviewer: str, number: str, drg: str, amount: str, admitted: date,
               discharged: date, insurance: str = "居民医保") -> str:
        """/核定 with a stay given in the seed's calendar."""
        return self.v.text(reviewer, f"/核定 {number} {drg} {amount} {self.day(admitted)} "
                                     f"{self.day(discharged)} {insurance} 县人民医院").reply

    def row(self, number: str) -> Claim:
        with self.db.session() as s:
            claim = s.scalar(select(Claim).where(Claim.number == number))
            s.expunge(claim)
            return claim

    def quota(self, code: str) -> int:
        return self.year().scheme.benefit.quotas_fen[code]


def audits(db, actor: str, action: str) -> int:
    with db.session() as s:
        return s.scalar(select(func.count(AuditLog.id)).where(AuditLog.actor == actor,
                                                              AuditLog.action == action))


def claims_json(cfg) -> dict:
    return {c["number"]: c for c in cli_json(cfg, "claims", "list")}


def households_json(cfg, number: str) -> dict:
    return next(h for h in cli_json(cfg, "households", "list") if h["number"] == number)


def cn(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


@pytest.fixture
def seed(tmp_path, cfg, db, app_ctx, villager):
    return lambda name, seed_today: Seed(name, seed_today, tmp_path, cfg, db, app_ctx, villager)


# ---------------------------------------------------------------------------------------------
# 安吉 2024: thresholds 3500 / 2500 / 7000, min 300, +10% from the second year on the amount,
# six exclusions, the uninsured send an invoice, no payment outside 5月20日–7月20日.

def test_anji_2024(seed, cfg, db):
    run_ = seed("anji-2024", date(2025, 3, 2))
    run_.load(years_back=1)  # 2023年度: for the continuity bonus
    loaded = run_.load()
    assert loaded["pool"] == "anji" and loaded["per_person_fen"] == 8000
    reviewer = run_.bind("o_anji_reviewer", "reviewer")
    home = run_.household([M("王大山"), M("李小花", "spouse", insurance="employee"),
                           M("王老汉", "parent", insurance="uninsured")], "o_anji")
    run_.enrol_previous_year(home, 0)  # 王大山 paid in 2023: a continuous member
    q = run_.quota("FM19")
    stay = (date(2024, 9, 2), date(2024, 9, 9))

    # threshold edges, per insurance type (个人支付金额≥3500 / ≥2500 / ≥7000)
    cases = [(1, "2499.99", "职工医保", None), (1, "2500.00", "职工医保", min(q, 250000)),
             (2, "6999.99", "未参保", None), (2, "7000.00", "未参保", min(q, 700000))]
    for n, (who, amount, insurance, expected) in enumerate(cases):
        admitted = stay[0] + timedelta(days=12 * n)
        number = run_.claim(home, who)
        reply = run_.decide(reviewer, number, "FM19", amount, admitted,
                            admitted + timedelta(days=3), insurance)
        claim = run_.row(number)
        if expected is None:
            assert claim.reasons == ["below_threshold"] and "未达起付标准" in reply
        else:
            assert claim.amount_fen == expected and claim.reasons == []
            assert f"补助 {format_yuan(expected)}" in reply
    edge = run_.claim(home, 0)
    run_.decide(reviewer, edge, "FM19", "3499.99", date(2024, 12, 1), date(2024, 12, 3))
    assert run_.row(edge).reasons == ["below_threshold"]

    # the continuity bonus lifts the amount after the minimum and the maximum (+10%)
    continuous = run_.claim(home, 0)
    reply = run_.decide(reviewer, continuous, "FM19", "20000.00", *stay)
    assert run_.row(continuous).amount_fen == q * 11 // 10 and "+10%" in reply
    first_year = run_.claim(home, 1)
    run_.decide(reviewer, first_year, "FM19", "20000.00", date(2025, 1, 5), date(2025, 1, 9),
                "职工医保")
    assert run_.row(first_year).amount_fen == q

    # the minimum: 单次住院最低补助300元 (the lowest quota of the table, raised if below)
    low = min(run_.year().scheme.benefit.quotas_fen.items(), key=lambda kv: kv[1])
    minimum = run_.claim(home, 1)
    run_.decide(reviewer, minimum, low[0], "9000.00", date(2025, 2, 1), date(2025, 2, 3),
                "职工医保")
    assert run_.row(minimum).amount_fen == max(low[1], 30000)

    # the annual cap (10 万元 picked): what is left of it, and then nothing
    with db.session() as s:
        hh = s.get(Household, home["id"])
        make_claim(s, hh, s.get(Member, home["members"][0]), status="paid", amount_fen=9_500_000,
                   admission_date=run_.day(date(2024, 10, 1)),
                   discharge_date=run_.day(date(2024, 10, 5)))
    capped = run_.claim(home, 0)
    run_.decide(reviewer, capped, "FM19", "20000.00", date(2024, 11, 1), date(2024, 11, 6))
    # (the continuous claim above is in_review: only approved, in-payout and paid ones count)
    assert run_.row(capped).amount_fen == min(q * 11 // 10, 10_000_000 - 9_500_000)

    # exclusions: the seed's six by code; another code is refused with the list, audited
    abroad = run_.claim(home, 1)
    reply = run_.v.text(reviewer, f"/驳回 {abroad} excluded_abroad").reply
    assert run_.row(abroad).status.value == "rejected"
    assert run_.row(abroad).reasons == ["excluded_abroad"]
    other = run_.claim(home, 1)
    refusals = audits(db, reviewer, "admin.refused")
    reply = run_.v.text(reviewer, f"/驳回 {other} excluded_public_health").reply
    assert "没有「public_health」" in reply
    for code in ("excluded_non_disease", "excluded_work_injury", "excluded_crime",
                 "excluded_third_party_liable", "excluded_non_designated_hospital",
                 "excluded_abroad"):
        assert code in reply
    assert run_.row(other).status.value == "submitted"
    assert audits(db, reviewer, "admin.refused") == refusals + 1

    # the uninsured send 出院记录, 费用清单 and 发票 (no 医保报销单)
    run_.v.text("o_anji", "申请补助")
    ask = run_.v.text("o_anji", "3").reply
    assert "出院记录、费用清单、发票" in ask and "结算单" not in ask
    run_.v.text("o_anji", "取消")
    run_.v.text("o_anji", "申请补助")
    assert "出院记录、费用清单、结算单" in run_.v.text("o_anji", "1").reply
    run_.v.text("o_anji", "取消")

    # no payment outside the window (交费: 5月20日–7月20日)
    late = run_.household([M("赵一")], "o_anji_late", enrolment="pending")
    reply = run_.v.text("o_anji_late", "2").reply
    assert "现在不是缴费时间" in reply and cn(run_.day(date(2024, 7, 20))) in reply

    # the CLI: the decisions with the seed's numbers, cover from the year's first day
    listed = claims_json(cfg)
    assert listed[continuous]["amount_fen"] == q * 11 // 10
    assert listed[edge]["reasons"] == ["below_threshold"]
    assert listed[abroad]["reasons"] == ["excluded_abroad"]
    members = households_json(cfg, home["number"])["members"]
    assert {m["cover_from"] for m in members} == {run_.day(date(2024, 8, 1)).isoformat()}
    assert households_json(cfg, late["number"])["members"][0]["cover_from"] is None


def test_anji_2024_the_uninsured_apply_through_their_village(seed, cfg, db, tmp_path):
    """未参加基本医保…需到所在村（社区）…办理申请手续: the claim waits for /确认申请; a rejection
    appealed (复核) and decided again; 群众个人可通过APP查询了解病种清单和病种定额补助标准."""
    from bot.devtools import claim_samples as samples
    from tests.test_claims import processed, wait_for

    run_ = seed("anji-2024", date(2025, 3, 2))
    run_.load()
    reviewer = run_.bind("o_anji_rv", "reviewer")
    clerk = run_.bind("o_anji_clerk", "village_admin")
    o = "o_anji_home"
    run_.household([M("钱大山"), M("钱老汉", "parent", insurance="uninsured")], o)
    q = run_.quota("FM19")

    # 查病种: the group's quota, the thresholds of this household's insurance types
    r = run_.v.text(o, "查病种 fm19").reply
    assert "FM19 " in r and format_yuan(q) in r
    assert "居民医保 3,500.00 元" in r and "未参保 7,000.00 元" in r and "职工医保" not in r
    assert "拍出院记录、费用清单、结算单（未参保的拍出院记录、费用清单、发票）" in r

    # the uninsured member's claim: 出院记录, 费用清单, 发票, then held for the village
    pages = {"出院记录": samples.discharge_record(), "费用清单": samples.itemized_bill(),
             "发票": samples.other_photo()}
    assert "1 钱*山" in run_.v.text(o, "申请补助").reply
    ask = run_.v.text(o, "2").reply
    assert "出院记录、费用清单、发票" in ask and "结算单" not in ask
    for n, (label, page) in enumerate(pages.items()):
        assert "请发" in run_.v.text(o, label).reply
        run_.v.image(o, samples.save(page, tmp_path / f"doc{n}.png"))
        assert wait_for(lambda: processed(db, o))
    r = run_.v.text(o, "提交").reply
    number = re.search(r"C\d{8}", r).group(0)
    assert run_.row(number).awaits_village
    assert number not in run_.v.text(reviewer, "/待审").reply
    assert number in run_.v.text(clerk, "/待审").reply
    r = run_.v.text(clerk, f"/确认申请 {number}").reply
    assert f"已确认钱*汉的补助申请 {number}，进入审核" in r
    assert number in run_.v.text(reviewer, "/待审").reply
    kinds = {d["kind"] for d in claims_json(cfg)[number]["documents"]}
    assert kinds == {"discharge_record", "itemized_bill", "invoice"}

    # rejected as a stay abroad, appealed by the household, decided again: 7000.00 is the edge
    run_.decide(reviewer, number, "FM19", "7000.00", date(2025, 2, 10), date(2025, 2, 14),
                "未参保")
    run_.v.text(reviewer, f"/驳回 {number} excluded_abroad")
    assert run_.row(number).reasons == ["excluded_abroad"]
    r = run_.v.text(o, f"复核 {number} 是在县人民医院住的院，不是境外").reply
    assert "复核申请" in r
    listed = claims_json(cfg)[number]
    assert listed["status"] == "appealed"
    r = run_.v.text(reviewer, f"/复核 {number} 改判 出院记录是县人民医院").reply
    assert "改判" in r and f"补助 {format_yuan(min(q, 700000))}" in r
    run_.v.text(reviewer, f"/通过 {number}")
    listed = claims_json(cfg)[number]
    assert listed["status"] == "approved" and listed["amount_fen"] == min(q, 700000)
    assert listed["reasons"] == []

    # someone else's claim cannot be appealed: refused, nothing changed
    other = run_.household([M("孙二")], "o_anji_other")
    rejected = run_.claim(other)
    run_.v.text(reviewer, f"/驳回 {rejected} excluded_crime")
    r = run_.v.text(o, f"复核 {rejected} 也看看这个").reply
    assert f"没有找到您家的补助申请“{rejected}”" in r
    assert run_.row(rejected).status.value == "rejected"


# ---------------------------------------------------------------------------------------------
# 塘桥 2020: 3000 / 2000, no uninsured threshold, everything basic insurance leaves out,
# newborns added after the start of reimbursement and paid for on their own, ≥100 / ≤50.

def test_tangqiao_2020(seed, cfg, db, tmp_path):
    run_ = seed("tangqiao-2020", date(2020, 9, 15))
    # WeChat Pay's callbacks come to this bot
    run_.x.cfg.values["PAY_NOTIFY_URL"] = f"{run_.v.server}/pay/notify"
    run_.x.cfg.values["PUBLIC_URL"] = run_.v.server
    run_.load()
    reviewer = run_.bind("o_tq_reviewer", "reviewer")
    clerk = run_.bind("o_tq_village", "village_admin")
    home = run_.household([M("韩大山"), M("韩小花", "spouse", insurance="employee"),
                           M("韩老汉", "parent", insurance="uninsured")], "o_tq")
    q = run_.quota("FM19")
    for n, (who, amount, insurance, ok) in enumerate(
            [(0, "2999.99", "居民医保", False), (0, "3000.00", "居民医保", True),
             (1, "1999.99", "职工医保", False), (1, "2000.00", "职工医保", True)]):
        admitted = date(2020, 6, 10) + timedelta(days=10 * n)
        number = run_.claim(home, who)
        run_.decide(reviewer, number, "FM19", amount, admitted, admitted + timedelta(days=2),
                    insurance)
        claim = run_.row(number)
        assert (claim.reasons == []) is ok
        if ok:
            assert claim.amount_fen == min(q, int(amount.replace(".", "")))

    # a member without basic insurance may join but is not subsidized
    uninsured = run_.claim(home, 2)
    reply = run_.decide(reviewer, uninsured, "FM19", "50000.00", date(2020, 7, 1),
                        date(2020, 7, 9), "未参保")
    assert run_.row(uninsured).reasons == ["uninsured_not_covered"]
    assert "未参保人员不在补助范围" in reply

    # its own exclusions, the stay abroad among them
    for code in ("excluded_abroad", "excluded_public_health", "excluded_not_covered_by_basic"):
        number = run_.claim(home, 0)
        run_.v.text(reviewer, f"/驳回 {number} {code}")
        assert run_.row(number).reasons == [code]
    number = run_.claim(home, 0)
    reply = run_.v.text(reviewer, f"/驳回 {number} excluded_cosmetic").reply
    assert "没有「cosmetic」" in reply and "excluded_self_harm" in reply
    assert "应当由公共卫生负担的住院" in reply
    assert run_.row(number).status.value == "submitted"

    # a newborn: added after the year started, paid for on its own, through 2 缴费 and /收款
    baby = make_id(run_.day(date(2020, 9, 5)))
    older = make_id(run_.day(date(2020, 5, 1)))  # 137 days old: past newborn_days 90
    r = run_.v.text("o_tq", "添加成员").reply
    assert "出生 90 天以内的新生儿" in r
    run_.v.text("o_tq", "韩小宝")
    r = run_.v.text("o_tq", older).reply
    assert "只能添加出生 90 天以内的新生儿" in r and "出生日期不在其中" in r
    with db.session() as s:
        assert s.scalar(select(func.count(Member.id))) == 3
    run_.v.text("o_tq", baby)
    run_.v.text("o_tq", "2")  # 子女
    run_.v.text("o_tq", "1")  # 居民医保
    assert "已添加" in run_.v.text("o_tq", "确认").reply
    order = run_.v.text("o_tq", "2").reply
    assert "50.00 元" in order and cn(run_.day(date(2021, 5, 31))) in order
    assert "韩*宝" in order and "韩*山" not in order  # the child only, not the household
    assert baby not in order and "韩小宝" not in order  # masked, as every reply
    summary = run_.v.text(clerk, f"/收款 {home['number']} 50").reply
    assert "应缴 50.00 元" in summary
    assert "已登记" in run_.v.text(clerk, "确认").reply
    with db.session() as s:
        rows = s.scalars(select(Enrolment).join(Member).where(
            Member.household_id == home["id"])).all()
        assert {e.status for e in rows} == {EnrolmentStatus.paid}
        assert [e.newborn for e in rows] == [False, False, False, True]
        assert s.scalar(select(Payment.amount_fen).where(Payment.channel == "cash")) == 5000
    assert "已经缴清" in run_.v.text("o_tq", "2").reply

    # another newborn, paid by WeChat Pay: the order stays payable after the window
    other = run_.household([M("韩二山")], "o_tq2")
    for text in ("添加成员", "韩二宝", make_id(run_.day(date(2020, 9, 1))), "2", "1", "确认"):
        run_.v.text("o_tq2", text)
    since = run_.v.last_call_id()
    assert "50.00 元" in run_.v.text("o_tq2", "2").reply
    pushed = run_.v.wait_pushes("o_tq2", since, 8)
    assert any((c.get("json") or {}).get("msgtype") == "image" for c in pushed)
    with db.session() as s:
        order = s.scalar(select(PaymentOrder).where(PaymentOrder.household_id == other["id"]))
        assert order.breakdown["newborn"] is True and order.amount_fen == 5000
        out_trade_no = order.out_trade_no
    paid_reply = requests.post(f"{run_.v.emulator}/_emulator/pay/{out_trade_no}", json={},
                               timeout=20)
    assert paid_reply.status_code == 200, paid_reply.text
    for _ in range(100):
        with db.session() as s:
            paid = s.scalar(select(func.count(Enrolment.id)).join(Member).where(
                Member.household_id == other["id"], Enrolment.status == EnrolmentStatus.paid))
        if paid == 2:
            break
        time.sleep(0.1)
    assert paid == 2
    with db.session() as s:
        assert s.scalar(select(func.count(PaymentException.id))) == 0

    # funding rules: a personal share above 50.00 is refused at load, nothing stored
    bad = run_.write(edit=lambda t: t.replace('personal: "50.00", collective: "40.00"',
                                              'personal: "60.00", collective: "30.00"'),
                     tag="-bad")
    out = run(cfg, "scheme", "load", str(bad))
    assert out.returncode == 2 and "个人出资 60.00 元 超过规定的最高 50.00 元" in out.stderr
    assert "contribution.shares.personal" in out.stderr
    assert run_.year().scheme.contribution.shares_fen["personal"] == 5000


def test_tangqiao_2020_the_village_confirms_who_joins(seed, cfg, db):
    """具体参加人员由各村、居确认: a chat sign-up pays only after the village's /确认登记."""
    from tests.test_signup import run as chat

    run_ = seed("tangqiao-2020", date(2020, 5, 10))  # 交费: 4月1日–5月31日
    run_.load()
    clerk = run_.bind("o_tq_clerk", "village_admin")
    o = "o_tq_new"
    done = chat(run_.v, o, ["1", "韩山村", "韩大海", make_id(date(1968, 3, 3)), "13800138000",
                            "1", "1", "韩小梅", make_id(date(1970, 4, 4)), "1", "2", "2",
                            "确认"])[-1]
    number = re.search(r"户号 (H\d+)", done).group(1)
    assert "参加人员要由塘桥镇韩山村确认" in done and "村村" not in done
    assert "属于下面哪类人员" not in done
    home = households_json(cfg, number)
    assert [m["cover_from"] for m in home["members"]] == [None, None]

    # before the village confirms: no payment, by WeChat Pay or in cash
    r = run_.v.text(o, "2").reply
    assert "还在等塘桥镇韩山村确认" in r and "50.00" not in r
    assert f"登记 {number}" in run_.v.text(clerk, "/待审").reply
    assert "还没有经村里确认" in run_.v.text(clerk, f"/收款 {number} 100").reply

    # a category the scheme does not have: refused with what there is, audited, nothing changed
    refused = audits(db, clerk, "admin.refused")
    r = run_.v.text(clerk, f"/确认登记 {number} 2 低保").reply
    assert "没有人员类别“低保”" in r and "可写的类别：无。" in r
    assert audits(db, clerk, "admin.refused") == refused + 1
    with db.session() as s:
        assert s.scalar(select(Household.awaits_village).where(Household.number == number))

    r = run_.v.text(clerk, f"/确认登记 {number}").reply
    assert f"已确认户号 {number} 的登记" in r and "个人应缴 100.00 元" in r  # 2 × 50.00
    r = run_.v.text(o, "2").reply
    assert "100.00 元" in r and "还在等" not in r
    assert "应缴 100.00 元" in run_.v.text(clerk, f"/收款 {number} 100").reply
    assert "已登记" in run_.v.text(clerk, "确认").reply
    start = run_.day(date(2020, 6, 1)).isoformat()  # cover from the year's first day
    assert [m["cover_from"] for m in households_json(cfg, number)["members"]] == [start, start]


# ---------------------------------------------------------------------------------------------
# 海门 2023: money is raised until 10月底 while the year runs from 7月: cover starts the day
# the payment is recorded; ≥80 per person, the household ≥50%.

def test_haimen_2023(seed, cfg, db):
    run_ = seed("haimen-2023", date(2023, 10, 20))
    run_.load()
    reviewer = run_.bind("o_hm_reviewer", "reviewer")
    clerk = run_.bind("o_hm_village", "village_admin")
    home = run_.household([M("沈大山")], "o_hm", enrolment="pending")
    assert "40.00 元" in run_.v.text("o_hm", "2").reply  # the window is open
    run_.v.text(clerk, f"/收款 {home['number']} 40")
    assert "已登记" in run_.v.text(clerk, "确认").reply
    assert households_json(cfg, home["number"])["members"][0]["cover_from"] == TODAY.isoformat()

    before = run_.claim(home)
    reply = run_.decide(reviewer, before, "FM19", "12000.00", date(2023, 9, 9),
                        date(2023, 9, 15))
    claim = run_.row(before)
    assert claim.reasons == ["not_covered_yet"] and claim.amount_fen is None
    assert "缴费前入院" in reply and cn(run_.day(date(2023, 9, 9))) in reply
    assert cn(TODAY) in reply  # the cover's first day
    after = run_.claim(home)
    run_.decide(reviewer, after, "FM19", "12000.00", date(2023, 10, 20), date(2023, 10, 20))
    assert run_.row(after).amount_fen == min(run_.quota("FM19"), 1_200_000)
    listed = claims_json(cfg)
    assert listed[before]["reasons"] == ["not_covered_yet"]
    assert any(cn(TODAY) in step["text"] for step in listed[before]["trace"])

    # 六类困难对象原则上不参与: the chat sign-up asks each member's category, 低保 is refused
    from tests.test_signup import run as chat

    o = "o_hm_new"
    asked = chat(run_.v, o, ["1", "叠石桥村", "沈二海", make_id(date(1966, 6, 6)),
                             "13800138000", "1"])[-1]
    assert "1 无" in asked and "低保" in asked and "支出型贫困" in asked
    r = run_.v.text(o, "贫困户").reply  # a category the scheme does not name: asked again
    assert "没有“贫困户”这个选项" in r and "1 无" in r and "7 支出型贫困" in r
    r = run_.v.text(o, "低保").reply
    assert "不能参加互助" in r
    with db.session() as s:
        assert s.scalar(select(func.count(Household.id))) == 1  # 沈大山's only
    r = chat(run_.v, o, ["1", "叠石桥村", "沈二海", make_id(date(1966, 6, 6)), "13800138000",
                         "1", "1", "2", "确认"])[-1]
    assert "户号" in r and households_json(cfg, re.search(r"户号 (H\d+)", r).group(1))

    bad = run_.write(edit=lambda t: t.replace(
        'shares: {personal: "40.00", collective: "20.00", charity: "20.00"}',
        'shares: {personal: "30.00", collective: "30.00", charity: "20.00"}'), tag="-bad")
    out = run(cfg, "scheme", "load", str(bad))
    assert out.returncode == 2 and "低于筹资标准 80.00 元 的 50%" in out.stderr


# ---------------------------------------------------------------------------------------------
# 张家港: the town pays the 低保 member's share; threshold about 2000; 300 minimum, 20 万 a year.

def test_zhangjiagang_town_pays_the_low_income_share(seed, cfg, db):
    run_ = seed("zhangjiagang", date(2021, 12, 15))  # the window is open
    run_.load()
    clerk = run_.bind("o_zjg_village", "village_admin")
    home = run_.household([M("朱大山"), M("朱阿婆", "parent", category="低保")], "o_zjg",
                          enrolment="pending")
    assert "应缴 50.00 元" in run_.v.text(clerk, f"/收款 {home['number']} 50").reply
    assert "已登记" in run_.v.text(clerk, "确认").reply
    fund = cli_json(cfg, "report", "fund", "--pool", "zhangjiagang")
    assert fund["income_fen"]["personal"] == 5000
    assert fund["income_fen"]["collective"] == 10000
    assert fund["income_fen"]["town"] == 5000
    assert run(cfg, "ledger", "check").returncode == 0


def test_zhangjiagang_thresholds_and_caps(seed, cfg, db):
    run_ = seed("zhangjiagang", date(2022, 9, 1))
    run_.load()
    reviewer = run_.bind("o_zjg_reviewer", "reviewer")
    home = run_.household([M("朱二山"), M("朱二嫂", "spouse", insurance="employee")], "o_zjg2")
    # 起付线一般在2000元左右: 2000.00 for both insurance types
    for n, (who, amount, insurance, ok) in enumerate([(0, "1999.99", "居民医保", False),
                                                      (0, "2000.00", "居民医保", True),
                                                      (1, "1999.99", "职工医保", False),
                                                      (1, "2000.00", "职工医保", True)]):
        number = run_.claim(home, who)
        admitted = date(2022, 2, 1) + timedelta(days=10 * n)
        reply = run_.decide(reviewer, number, "FM19", amount, admitted, admitted, insurance)
        assert (run_.row(number).reasons == []) is ok, reply
    # 年度累计最高可以补助20万元
    with db.session() as s:
        hh = s.get(Household, home["id"])
        make_claim(s, hh, s.get(Member, home["members"][0]), status="paid",
                   amount_fen=19_800_000, admission_date=run_.day(date(2022, 5, 1)),
                   discharge_date=run_.day(date(2022, 5, 3)))
    capped = run_.claim(home, 0)
    run_.decide(reviewer, capped, "AB19", "90000.00", date(2022, 7, 1), date(2022, 7, 20))
    assert run_.row(capped).amount_fen == 200_000
    full = run_.claim(home, 0)
    with db.session() as s:  # the capped claim approved: nothing is left
        s.execute(Claim.__table__.update().where(Claim.number == capped).values(status="paid"))
    run_.decide(reviewer, full, "FM19", "9000.00", date(2022, 8, 1), date(2022, 8, 3))
    assert run_.row(full).reasons == ["annual_cap_reached"]


# ---------------------------------------------------------------------------------------------
# 涟水 2020: ≥50 per person, no members added within the year, max per claim and per year.

def test_lianshui_2020(seed, cfg, db):
    run_ = seed("lianshui-2020", date(2020, 8, 20))
    run_.load()
    reviewer = run_.bind("o_ls_reviewer", "reviewer")
    home = run_.household([M("胡大山"), M("胡小花", "spouse", insurance="employee"),
                           M("胡老汉", "parent", insurance="uninsured")], "o_ls")
    n = 0
    for who, insurance, edge in [(0, "居民医保", 200000), (1, "职工医保", 150000),
                                 (2, "未参保", 400000)]:
        for amount, ok in [(edge - 1, False), (edge, True)]:
            n += 1
            number = run_.claim(home, who)
            admitted = date(2020, 1, 5) + timedelta(days=9 * n)
            run_.decide(reviewer, number, "FM19", format_yuan(amount, unit=False).replace(",", ""),
                        admitted, admitted + timedelta(days=1), insurance)
            assert (run_.row(number).reasons == []) is ok, (insurance, amount)
    top = max(run_.year().scheme.benefit.quotas_fen.values())
    code = next(c for c, v in run_.year().scheme.benefit.quotas_fen.items() if v == top)
    biggest = run_.claim(home, 0)
    run_.decide(reviewer, biggest, code, "90000.00", date(2020, 5, 1), date(2020, 5, 20))
    assert run_.row(biggest).amount_fen == min(top, 2_000_000)  # 单次最高 2 万 (picked)

    # no claims.documents in the preset: the uninsured are still not asked for a 结算单
    run_.v.text("o_ls", "申请补助")
    ask = run_.v.text("o_ls", "3").reply
    assert "为胡*汉申请补助" in ask and "出院记录、费用清单、发票" in ask and "结算单" not in ask
    run_.v.text("o_ls", "取消")

    # 周期内不临时增减互助成员: no newborn joins within the year
    r = run_.v.text("o_ls", "添加成员").reply
    assert "年度中途不添加成员" in r
    run_.v.text("o_ls", "胡小宝")
    r = run_.v.text("o_ls", make_id(run_.day(date(2020, 8, 1)))).reply
    assert "本方案年度中途不添加成员" in r
    with db.session() as s:
        assert s.scalar(select(func.count(Member.id)).where(
            Member.household_id == home["id"])) == 3
    run_.v.text("o_ls", "取消")
    assert "已经缴清" in run_.v.text("o_ls", "2").reply


# ---------------------------------------------------------------------------------------------
# claims.file_within_days (no seed sets one: the demo scheme with 30 days)

def test_filing_deadline(tmp_path, cfg, db, app_ctx, villager):
    text = (SCHEMES_DIR / "demo.yaml").read_text(encoding="utf-8").replace(
        "  review_working_days: 5\n", "  review_working_days: 5\n  file_within_days: 30\n", 1)
    for csv in SCHEMES_DIR.glob("*.csv"):
        shutil.copy(csv, tmp_path / csv.name)
    (tmp_path / "demo.yaml").write_text(text, encoding="utf-8")
    assert run(cfg, "scheme", "load", str(tmp_path / "demo.yaml")).returncode == 0
    discharged = TODAY - timedelta(days=40)
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山")], village="示范镇/东村",
                            openid="o_late")
        collecting = make_claim(s, hh, status="collecting",
                                stated={"discharge_date": discharged.isoformat()}).number
        submitted = make_claim(s, hh).number
    reply = villager.text("o_late", "提交").reply
    last = discharged + timedelta(days=30)
    assert "30 天内申请" in reply and cn(last) in reply
    with db.session() as s:
        assert s.scalar(select(Claim.status).where(Claim.number == collecting)).value \
            == "collecting"
    with db.session() as s:
        code = create_invite(s, "reviewer", "cli:test", pool="demo")
    villager.text("o_late_reviewer", f"/绑定 {code}")
    reply = villager.text("o_late_reviewer",
                          f"/核定 {submitted} FM19 12000 {discharged - timedelta(days=3)} "
                          f"{discharged} 居民医保").reply
    assert "超过申请期限" in reply and cn(last) in reply
    with db.session() as s:
        assert s.scalar(select(Claim.reasons).where(Claim.number == submitted)) == ["filed_late"]


# ---------------------------------------------------------------------------------------------
# enrolment.uninsured: refused, and 上年参加 from a village list (the demo scheme)

def _demo_with(tmp_path: Path, cfg, old: str, new: str) -> None:
    text = (SCHEMES_DIR / "demo.yaml").read_text(encoding="utf-8")
    assert old in text
    for csv in SCHEMES_DIR.glob("*.csv"):
        shutil.copy(csv, tmp_path / csv.name)
    (tmp_path / "demo.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    out = run(cfg, "scheme", "load", str(tmp_path / "demo.yaml"))
    assert out.returncode == 0, out.stderr


def test_a_scheme_refusing_the_uninsured_says_so_at_sign_up(tmp_path, cfg, db, villager):
    _demo_with(tmp_path, cfg, "newborn_days: 90}", "newborn_days: 90, uninsured: refused}")
    o = "o_no_insurance"
    villager.text(o, "1")
    villager.text(o, "1")  # 东村
    villager.text(o, "王大山")
    villager.text(o, make_id(date(1961, 3, 4)))
    assert "3 未参保" in villager.text(o, "13800138000").reply
    with db.session() as s:
        before = s.get(DialogueState, o).data
    r = villager.text(o, "3").reply
    assert "只接受参加了基本医保" in r and "1 居民医保" in r and "3 未参保" not in r
    with db.session() as s:
        state = s.get(DialogueState, o)
        assert state.state == "head_insurance" and state.data == before
        assert s.scalar(select(func.count(Household.id))) == 0
    assert "属于下面哪类人员" in villager.text(o, "1").reply  # 居民医保: on with the sign-up
    assert "1 添加成员" in villager.text(o, "1").reply  # 1 无

    # a village list: the row is refused, nothing imported
    from openpyxl import Workbook

    from core.importer import COLUMNS

    wb = Workbook()
    ws = wb.active
    ws.title = "名单"
    ws.append(list(COLUMNS))
    ws.append(["示范镇/东村", "", "赵四", "赵四", make_id(date(1970, 1, 1)), "户主", "未参保"])
    wb.save(tmp_path / "list.xlsx")
    out = run(cfg, "households", "import", str(tmp_path / "list.xlsx"))
    assert out.returncode != 0 and "未参保的不能参加" in out.stdout + out.stderr
    with db.session() as s:
        assert s.scalar(select(func.count(Household.id))) == 0


def test_a_village_list_declares_earlier_participation(tmp_path, cfg, db, villager):
    from openpyxl import Workbook

    from core.importer import COLUMNS

    _demo_with(tmp_path, cfg, "newborn_days: 90}", "newborn_days: 90}")
    ids = [make_id(date(1960, 2, 2)), make_id(date(1962, 3, 3))]
    wb = Workbook()
    ws = wb.active
    ws.title = "名单"
    ws.append(list(COLUMNS))
    ws.append(["示范镇/东村", "", "王大山", "王大山", ids[0], "户主", "居民医保", "", "", "是"])
    ws.append(["示范镇/东村", "", "王大山", "李小花", ids[1], "配偶", "居民医保", "", "", "否"])
    wb.save(tmp_path / "list.xlsx")
    out = run(cfg, "households", "import", str(tmp_path / "list.xlsx"))
    assert out.returncode == 0, out.stdout + out.stderr
    with db.session() as s:
        assert [e.continued for e in s.scalars(select(Enrolment).order_by(Enrolment.id))] == \
            [True, False]
        s.execute(Enrolment.__table__.update().values(status="paid", paid_at=None))
        hh = s.scalar(select(Household))
        head, spouse = (make_claim(s, hh, m).number for m in hh.members)
        quota = s.scalar(select(SchemeYear)).scheme.benefit.quotas_fen["FM19"]
    with db.session() as s:
        code = create_invite(s, "reviewer", "cli:test", pool="demo")
    villager.text("o_list_reviewer", f"/绑定 {code}")
    stay = f"{TODAY - timedelta(days=9)} {TODAY - timedelta(days=5)}"
    for number in (head, spouse):
        villager.text("o_list_reviewer", f"/核定 {number} FM19 90000 {stay} 居民医保")
    with db.session() as s:
        amounts = {n: s.scalar(select(Claim.amount_fen).where(Claim.number == n))
                   for n in (head, spouse)}
    assert amounts == {head: quota * 11 // 10, spouse: quota}

    # anything but 是 or 否 is a row error, and nothing is imported
    ws.append(["示范镇/东村", "", "赵四", "赵四", make_id(date(1970, 1, 1)), "户主", "居民医保",
               "", "", "可能"])
    wb.save(tmp_path / "bad.xlsx")
    out = run(cfg, "households", "import", str(tmp_path / "bad.xlsx"))
    assert out.returncode != 0 and "上年参加" in out.stdout + out.stderr
    assert "应填 是 或 否" in out.stdout + out.stderr

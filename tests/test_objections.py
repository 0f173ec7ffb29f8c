"""The objection window (异议期): approved claims disclosed to the groups N days before they may
be paid; `异议 <claim> <reason>` from an enrolled member holds a claim out of the payout until a
reviewer decides with `/异议处理`; both sides told; N = 0 disables it."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from bot.jobs.transparency import run_objection_lists
from core import payouts
from core.groups import add_group
from core.models import (AuditLog, BankCard, Claim, ClaimStatus, Objection, Village)
from core.objections import held_claim_ids
from tests.factories import M, make_household
from tests.test_balance_fund import admin
from tests.transparency_factories import (contribute, local_today, make_claim,
                                          set_objection_days)

SEND = "/cgi-bin/webhook/send"


def pushed(emulator, openid, since: int, contains: str, wait=8.0) -> str:
    """The text pushed to `openid` after emulator call `since` that holds `contains` ('' when
    none came in time)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = requests.get(f"{emulator}/_emulator/calls",
                             params={"touser": openid, "since": since}, timeout=5).json()
        for c in found:
            body = c.get("json") or {}
            if body.get("msgtype") == "text" and contains in body["text"]["content"]:
                return body["text"]["content"]
        time.sleep(0.1)
    return ""


def last_call(emulator) -> int:
    return max((c["id"] for c in requests.get(f"{emulator}/_emulator/calls", timeout=5).json()),
               default=0)


@pytest.fixture
def window(app_ctx, villager):
    """A 7-day window in the demo pool; 王大山's household (东村) has two approved claims with a
    card on file; 赵四海 (西村) is an enrolled member; a reviewer is bound; 东村 has a group."""
    db = app_ctx.db
    key = f"obj-{uuid.uuid4().hex[:12]}"
    with db.session() as s:
        set_objection_days(s, s.scalar(select(Village.pool_id)), 7)
        claimant = make_household(s, app_ctx.vault, [M("王大山")], village="示范镇/东村",
                                  openid="o_claimant")
        objector = make_household(s, app_ctx.vault, [M("赵四海")], village="示范镇/西村",
                                  openid="o_objector")
        make_household(s, app_ctx.vault, [M("钱未缴")], village="示范镇/西村",
                       openid="o_unpaid", enrolment="pending")
        contribute(s, objector, 5000000, 5000000, local_today())
        s.add(BankCard(household_id=claimant.id, number_enc="x", number_hash="h",
                       number_masked="***************1234", bank_name="农业银行",
                       holder_member_id=claimant.members[0].id))
        c1 = make_claim(s, claimant, 2000000, "FC19")
        c2 = make_claim(s, claimant, 500000, "BR21")
        add_group(s, s.scalar(select(Village).where(Village.name == "东村")), key, "cli:test")
        pool_id = claimant.pool_id
        numbers = (c1.number, c2.number)
    admin(db, "o_reviewer", "reviewer", pool="demo")
    for who in ("o_claimant", "o_objector", "o_reviewer", "o_unpaid", "o_outsider"):
        villager.text(who, "0")  # everyone wrote lately: pushes go as customer-service messages
    return {"pool_id": pool_id, "claims": numbers, "key": key}


def claim(db, number) -> Claim:
    with db.session() as s:
        return s.scalar(select(Claim).where(Claim.number == number))


def test_the_objection_flow_holds_the_claim_out_of_the_payout(app_ctx, villager, emulator, window):
    db, pid, today = app_ctx.db, window["pool_id"], local_today()
    c1, c2 = window["claims"]
    id_of = {n: claim(db, n).id for n in (c1, c2)}
    ids = lambda *ns: {id_of[n] for n in ns}  # noqa: E731
    with db.session() as s:  # approved but not disclosed yet: not paid
        assert held_claim_ids(s, pid, today) == ids(c1, c2)
        assert {c.claim_number for c in payouts.plan(s, pid, today).held} == {c1, c2}

    # the daily job discloses them to the group with a 7-day window
    assert run_objection_lists(app_ctx, today)[0]["claims"] == 2
    posts = []
    deadline = time.monotonic() + 10
    while not posts and time.monotonic() < deadline:
        posts = [c for c in requests.get(f"{emulator}/_emulator/calls",
                                         params={"path": SEND}, timeout=5).json()
                 if c["query"]["key"] == window["key"]]
        time.sleep(0.1)
    text = posts[0]["json"]["markdown"]["content"]
    assert f"{c1}｜东村｜王*山｜冠状动脉手术｜**20,000.00 元**" in text
    assert "异议 申请号 理由" in text and "王大山" not in text
    assert run_objection_lists(app_ctx, today) == []  # nothing new to disclose
    with db.session() as s:
        assert held_claim_ids(s, pid, today) == ids(c1, c2)  # window open
        assert held_claim_ids(s, pid, today + timedelta(days=7)) == set()  # window over

    # objections from people who may not object change nothing
    r = villager.text("o_outsider", f"异议 {c1} 他没住院")
    assert "只有本年度已缴费参加互助的家庭" in r.reply
    assert "只有本年度已缴费" in villager.text("o_unpaid", f"异议 {c1} 他没住院").reply
    assert "请写明理由" in villager.text("o_objector", f"异议 {c1}").reply
    assert "没有找到补助申请“C99999999”" in villager.text("o_objector", "异议 C99999999 假的").reply
    assert "请这样发：异议 申请号 理由" in villager.text("o_objector", "异议").reply
    with db.session() as s:
        assert s.scalar(select(Objection.id)) is None

    since = last_call(emulator)
    r = villager.text("o_objector", f"异议 {c1.lower()} 他这次住院是去体检")
    assert f"已收到您对补助申请 {c1} 的异议" in r.reply
    assert "收到村民的异议，暂缓发放" in pushed(emulator, "o_claimant", since, "暂缓发放")
    reviewer_msg = pushed(emulator, "o_reviewer", since, "【异议】")
    assert c1 in reviewer_msg and "他这次住院是去体检" in reviewer_msg and "王*山" in reviewer_msg
    assert "已经收到" in villager.text("o_objector", f"异议 {c1} 再说一遍").reply
    assert claim(db, c1).flags["objection"] == "open"
    with db.session() as s:
        assert [o.status for o in s.scalars(select(Objection))] == ["open"]
        later = today + timedelta(days=8)
        assert held_claim_ids(s, pid, later) == ids(c1)  # held past the window
        plan = payouts.plan(s, pid, later)
        assert [c.claim_number for c in plan.held] == [c1]
        assert [c.claim_number for c in plan.take] == [c2]

    # the reviewer finds the objection unfounded: paid with the next batch; both sides told
    since = last_call(emulator)
    r = villager.text("o_reviewer", f"/异议处理 {c1} 不成立 已核实住院病历")
    assert "异议不成立" in r.reply and "已通知" in r.reply
    assert pushed(emulator, "o_objector", since, "异议不成立，这笔补助照常发放")
    assert "随下一次发放" in pushed(emulator, "o_claimant", since, "经审核员核实不成立")
    assert claim(db, c1).status is ClaimStatus.approved
    with db.session() as s:
        assert [o.status for o in s.scalars(select(Objection))] == ["cleared"]
        assert held_claim_ids(s, pid, later) == set()
        assert {c.claim_number for c in payouts.plan(s, pid, later).take} == {c1, c2}
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert "objection.raised" in actions and "objection.cleared" in actions
    assert "没有待处理的异议" in villager.text("o_reviewer", f"/异议处理 {c1} 不成立").reply


def test_an_upheld_objection_rejects_the_claim(app_ctx, villager, emulator, window):
    db, c2 = app_ctx.db, window["claims"][1]
    run_objection_lists(app_ctx, local_today())
    villager.text("o_objector", f"异议 {c2} 住院是去做体检的")
    r = villager.text("o_reviewer", f"/异议处理 {c2} 成立")
    assert "请写原因代码" in r.reply and "fraud" in r.reply
    assert claim(db, c2).status is ClaimStatus.approved  # bad input changes nothing
    assert "请写“不成立”或“成立”" in villager.text("o_reviewer", f"/异议处理 {c2} 也许").reply
    since = last_call(emulator)
    r = villager.text("o_reviewer", f"/异议处理 {c2} 成立 excluded_non_disease 体检住院")
    assert "异议成立，申请已驳回（非疾病住院）" in r.reply
    c = claim(db, c2)
    assert c.status is ClaimStatus.rejected and c.reasons == ["excluded_non_disease"]
    household = pushed(emulator, "o_claimant", since, "经审核员核实成立")
    assert "这笔补助不予发放" in household and "健康体检" in household
    assert pushed(emulator, "o_objector", since, "异议成立，这笔补助不予发放")
    with db.session() as s:
        assert [o.status for o in s.scalars(select(Objection))] == ["upheld"]


def test_only_reviewers_of_the_pool_decide(app_ctx, villager, window):
    db, c1 = app_ctx.db, window["claims"][0]
    run_objection_lists(app_ctx, local_today())
    villager.text("o_objector", f"异议 {c1} 没有住院")
    admin(db, "o_village", "village_admin", village="示范镇/东村")
    assert "不能使用“/异议处理”" in villager.text("o_village", f"/异议处理 {c1} 不成立").reply
    with db.session() as s:
        from core.models import Pool
        other = Pool(code="other", name="别镇", level="town")
        s.add(other)
    admin(db, "o_other_rev", "pool_admin", pool="other")
    assert "不在你管理的资金池" in villager.text("o_other_rev", f"/异议处理 {c1} 不成立").reply
    with db.session() as s:
        refused = [(a.actor, a.after["why"]) for a in s.scalars(
            select(AuditLog).where(AuditLog.action == "admin.refused"))]
        assert ("o_village", "role") in refused
        assert ("o_other_rev", "objection_admin_refused") in refused
        assert [o.status for o in s.scalars(select(Objection))] == ["open"]


def test_the_window_closes_after_n_days(app_ctx, villager, window):
    db, c1 = app_ctx.db, window["claims"][0]
    run_objection_lists(app_ctx, local_today() - timedelta(days=7))  # disclosed a week ago
    r = villager.text("o_objector", f"异议 {c1} 太晚了吧")
    assert "公示期已在" in r.reply and "结束" in r.reply
    with db.session() as s:
        assert s.scalar(select(Objection.id)) is None
        assert held_claim_ids(s, window["pool_id"], local_today()) == set()


def test_zero_days_disables_the_window(app_ctx, villager, window):
    db, pid = app_ctx.db, window["pool_id"]
    with db.session() as s:
        set_objection_days(s, pid, 0)
    assert run_objection_lists(app_ctx, local_today()) == []
    assert "没有设异议公示期" in villager.text("o_objector", f"异议 {window['claims'][0]} 不对").reply
    with db.session() as s:
        assert held_claim_ids(s, pid, local_today()) == set()
        assert len(payouts.plan(s, pid, local_today()).take) == 2

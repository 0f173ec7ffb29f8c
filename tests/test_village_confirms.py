"""What waits for the village, through the webhook: a chat sign-up under
`enrolment.village_confirms` may not pay before `/确认登记` (which may set members' categories);
an uninsured member's claim under `claims.uninsured_via_village` stays out of /待审 until
`/确认申请`; categories asked at sign-up, an excluded one refused. Other villages' households
and claims are refused with an audit row and change nothing."""
from __future__ import annotations

import re

import pytest

from sqlalchemy import select

from core.models import AuditLog, Claim, Household, Member, SchemeYear
from tests.factories import make_id
from tests.test_balance_fund import admin
from tests.test_review import (REVIEWER, claim_row, home, new_claim,  # noqa: F401 (fixture)
                               pushes_after)
from tests.test_signup import run

HEAD, SPOUSE, CHILD = "王大山", "李小花", "王小军"
VILLAGE_ADMIN = "o_village_east"
OTHER_ADMIN = "o_village_west"


def set_rules(db, part: str, **values) -> None:
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        rules = dict(year.rules)
        rules[part] = {**rules[part], **values}
        year.rules = rules


def refusals(db, actor: str) -> list[dict]:
    with db.session() as s:
        return [a.after for a in s.scalars(select(AuditLog).where(
            AuditLog.actor == actor, AuditLog.action == "admin.refused").order_by(AuditLog.id))]


def sign_up(villager, o: str, category_answers: tuple[str, ...] = ()) -> str:
    """示范镇/东村: head 居民医保, spouse 职工医保, child 未参保; returns the last reply."""
    answers = ["1", "1", HEAD, make_id(), "13800138000", "1", *category_answers[:1],
               "1", SPOUSE, make_id(), "1", "2", *category_answers[1:2],
               "1", CHILD, make_id(), "2", "3", *category_answers[2:3], "2", "确认"]
    return run(villager, o, answers)[-1]


def test_the_village_confirms_a_chat_sign_up_before_it_pays(villager, db, emulator):
    set_rules(db, "enrolment", village_confirms=True)
    admin(db, VILLAGE_ADMIN, "village_admin", village="示范镇/东村")
    admin(db, OTHER_ADMIN, "village_admin", village="示范镇/西村")
    villager.text(VILLAGE_ADMIN, "/帮助")
    since = villager.last_call_id()
    o = "o_vc_head"
    done = sign_up(villager, o)  # no category asked: the village says
    number = re.search(r"户号 (H\d+)", done).group(1)
    assert "要由示范镇东村确认" in done and "请在" not in done
    asked = "\n".join(pushes_after(villager, VILLAGE_ADMIN, since))
    assert f"【待确认登记】示范镇东村 户号 {number}，3 人" in asked
    assert f"/确认登记 {number} 2 低保" in asked and "王*山" in asked and "王大山" not in asked

    r = villager.text(o, "2").reply
    assert "还在等示范镇东村确认" in r
    assert f"等村里确认：登记 {number}（/确认登记 户号）" in villager.text(VILLAGE_ADMIN,
                                                                       "/待审").reply
    assert number not in villager.text(OTHER_ADMIN, "/待审").reply
    r = villager.text(VILLAGE_ADMIN, f"/收款 {number} 150")
    assert "还没有经村里确认" in r.reply

    # another village's administrator, and bad arguments: refused, audited, nothing changed
    r = villager.text(OTHER_ADMIN, f"/确认登记 {number}")
    assert f"户号 {number} 不在你管理的村" in r.reply
    r = villager.text(VILLAGE_ADMIN, f"/确认登记 {number} 2 贫困户")
    assert "没有人员类别“贫困户”" in r.reply and "无、低保、特困" in r.reply
    r = villager.text(VILLAGE_ADMIN, f"/确认登记 {number} 7 低保")
    assert "成员序号是 1 到 3" in r.reply
    r = villager.text(VILLAGE_ADMIN, f"/确认登记 {number} 2")
    assert "要成对写" in r.reply
    assert "没有户号 H00000000" in villager.text(VILLAGE_ADMIN, "/确认登记 H00000000").reply
    assert [a["why"] for a in refusals(db, OTHER_ADMIN)] == ["village_confirm_refused"]
    assert len(refusals(db, VILLAGE_ADMIN)) >= 4
    with db.session() as s:
        hh = s.scalar(select(Household).where(Household.number == number))
        assert hh.awaits_village and [m.category for m in hh.members] == [None, None, None]

    since = villager.last_call_id()
    r = villager.text(VILLAGE_ADMIN, f"/确认登记 {number.lower()} 2 低保")
    assert f"已确认户号 {number} 的登记" in r.reply and "李*花（低保）" in r.reply
    assert "个人应缴 100.00 元" in r.reply
    told = "\n".join(pushes_after(villager, o, since))
    assert "村里已确认" in told and "100.00 元" in told and "回复 2 缴费" in told
    with db.session() as s:
        hh = s.scalar(select(Household).where(Household.number == number))
        assert not hh.awaits_village and [m.category for m in hh.members] == [None, "低保", None]
        row = s.scalar(select(AuditLog).where(AuditLog.action == "household.village_confirmed"))
        assert row.actor == VILLAGE_ADMIN and row.after["categories"] == {"2": "低保"}
    r = villager.text(o, "2").reply
    assert "100.00 元" in r and "还在等" not in r
    r = villager.text(VILLAGE_ADMIN, f"/确认登记 {number}")
    assert "没有等待村里确认的登记" in r.reply


def test_sign_up_asks_categories_and_refuses_an_excluded_one(villager, db):
    set_rules(db, "contribution", excluded=["特困供养"])
    o = "o_cat_head"
    r = run(villager, o, ["1", "1", HEAD, make_id(), "13800138000", "1"])[-1]
    assert "1 无" in r and "2 低保" in r and "3 特困" in r and "4 特困供养" in r
    r = villager.text(o, "2").reply  # the head is 低保
    assert "1 添加成员" in r
    run(villager, o, ["1", SPOUSE, make_id(), "1", "1"])
    r = villager.text(o, "特困供养").reply
    assert "李*花 属于“特困供养”人员" in r and "不能参加互助" in r and "这位成员不登记" in r
    assert "1 添加成员" in r and "2 完成" in r
    summary = villager.text(o, "2").reply
    assert "王*山" in summary and "（低保）" in summary and "李*花" not in summary
    assert "个人应缴 0.00 元" in summary
    villager.text(o, "确认")
    with db.session() as s:
        assert [(m.name, m.category) for m in s.scalars(select(Member))] == [(HEAD, "低保")]

    # the head of an excluded category: the sign-up ends, nothing written
    o = "o_cat_excluded"
    run(villager, o, ["1", "1", "赵四", make_id(), "13800138001", "1"])
    r = villager.text(o, "4").reply
    assert "不能参加互助" in r and "回复 0 看菜单" in r
    with db.session() as s:
        assert s.scalar(select(Household).where(Household.id > 1)) is None


def test_an_uninsured_member_s_claim_waits_for_the_village(villager, db, app_ctx, home):
    set_rules(db, "claims", uninsured_via_village=True)
    with db.session() as s:
        spouse = s.get(Member, home["spouse"])
        spouse.insurance = "uninsured"
    admin(db, VILLAGE_ADMIN, "village_admin", village="示范镇/东村")
    admin(db, OTHER_ADMIN, "village_admin", village="示范镇/西村")
    villager.text(VILLAGE_ADMIN, "/帮助")
    since = villager.last_call_id()
    # submitted through the claim dialogue's service: held for the village
    number = _submitted_claim(app_ctx, db, home, "spouse")
    insured = _submitted_claim(app_ctx, db, home, "head")
    assert claim_row(db, number).awaits_village and not claim_row(db, insured).awaits_village
    asked = "\n".join(pushes_after(villager, VILLAGE_ADMIN, since))
    assert "【待确认申请】" in asked and f"/确认申请 {number}" in asked and insured not in asked
    told = "\n".join(pushes_after(villager, "o_vil_review", since, 2))
    assert "要先由村里确认" in told

    queue = villager.text(REVIEWER, "/待审").reply
    assert number not in queue and insured in queue
    assert "等村里确认" in villager.text("o_vil_review", "4").reply

    assert f"未参保成员的申请 {number}" in villager.text(VILLAGE_ADMIN, "/待审").reply
    r = villager.text(OTHER_ADMIN, f"/确认申请 {number}")
    assert f"申请 {number} 不在你管理的村" in r.reply
    assert refusals(db, OTHER_ADMIN)[-1]["why"] == "village_confirm_refused"
    r = villager.text(VILLAGE_ADMIN, f"/确认申请 {insured}")
    assert "不需要村里确认" in r.reply
    r = villager.text(REVIEWER, f"/确认申请 {number}")
    assert "不能使用" in r.reply
    assert claim_row(db, number).awaits_village

    since = villager.last_call_id()
    r = villager.text(VILLAGE_ADMIN, f"/确认申请 {number}")
    assert f"已确认李*花的补助申请 {number}，进入审核" in r.reply
    assert not claim_row(db, number).awaits_village
    assert "现在进入审核" in "\n".join(pushes_after(villager, "o_vil_review", since))
    assert number in villager.text(REVIEWER, "/待审").reply
    assert "不需要村里确认" in villager.text(VILLAGE_ADMIN, f"/确认申请 {number}").reply


def _submitted_claim(app_ctx, db, home, who: str) -> str:
    """A collecting claim with its three documents (the uninsured's 发票 instead of the 结算单),
    submitted as the claim dialogue does."""
    from core import claims
    from tests.factories import local_today

    documents = ("discharge_record", "itemized_bill",
                 "invoice" if who == "spouse" else "settlement_sheet")  # the spouse: uninsured
    number = new_claim(db, home, member=who, status="collecting", documents=documents)
    with db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        claim.created_by = "o_vil_review"
        claims.submit(s, claim, "o_vil_review", local_today())
    return number


def test_the_scheme_keys_are_checked_with_file_line_and_key(tmp_path):
    from core.config import SCHEMES_DIR
    from core.scheme import SchemeError, load_scheme

    text = (SCHEMES_DIR / "demo.yaml").read_text(encoding="utf-8")
    (tmp_path / "demo-quotas.csv").write_text(
        (SCHEMES_DIR / "demo-quotas.csv").read_text(encoding="utf-8"), encoding="utf-8")
    plain = tmp_path / "plain.yaml"
    plain.write_text(text, encoding="utf-8")
    scheme = load_scheme(plain)  # old files keep their meaning
    assert not scheme.enrolment.village_confirms and not scheme.claims.uninsured_via_village
    assert scheme.claims.appeal_days == 15
    on = tmp_path / "on.yaml"
    on.write_text(text.replace('newborn_days: 90}',
                               'newborn_days: 90, village_confirms: true}')
                  .replace("  review_working_days: 5", "  review_working_days: 5\n"
                           "  uninsured_via_village: true"), encoding="utf-8")
    scheme = load_scheme(on)
    assert scheme.enrolment.village_confirms and scheme.claims.uninsured_via_village
    from core.scheme import scheme_from_rules
    again = scheme_from_rules(scheme.to_rules())
    assert again.enrolment.village_confirms and again.claims.uninsured_via_village
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  review_working_days: 5", "  review_working_days: 5\n"
                                "  uninsured_via_village: 村里办"), encoding="utf-8")
    with pytest.raises(SchemeError, match=r"bad.yaml 第\d+行 claims.uninsured_via_village: "
                                          r"应为 true 或 false"):
        load_scheme(bad)


def test_a_renewal_waits_for_the_village_too(villager, db, app_ctx):
    """Each year the village confirms who takes part: last year's household renewing in chat
    waits for /确认登记 as a new one does."""
    from datetime import timedelta

    from tests.factories import M, make_household

    set_rules(db, "enrolment", village_confirms=True)
    admin(db, VILLAGE_ADMIN, "village_admin", village="示范镇/东村")
    o = "o_vc_renew"
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        old = SchemeYear(pool_id=year.pool_id, start=year.start - timedelta(days=365),
                         end=year.start - timedelta(days=1),
                         enrolment_opens=year.start - timedelta(days=400),
                         enrolment_closes=year.start - timedelta(days=300), rules=year.rules)
        s.add(old)
        s.flush()
        number = make_household(s, app_ctx.vault, [M(HEAD), M(SPOUSE, "spouse")],
                                village="示范镇/东村", openid=o, enrolment="paid",
                                year=old).number
    villager.text(o, "参加互助")
    r = villager.text(o, "确认").reply
    assert "续保成功" in r and "要由示范镇东村确认" in r
    assert "还在等示范镇东村确认" in villager.text(o, "2").reply
    assert "已确认" in villager.text(VILLAGE_ADMIN, f"/确认登记 {number}").reply
    assert "100.00 元" in villager.text(o, "2").reply

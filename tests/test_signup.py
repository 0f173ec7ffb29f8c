"""参加互助 and 添加成员 through the webhook (real HTTP, the emulator): the SPEC order, bad answers
re-asked without any change, the window, already-registered IDs, newborns, renewal, masking."""
from __future__ import annotations

import json
import logging
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update

from core.crypto import mask_id
from core.households import personal_due_fen
from core.models import (AuditLog, DialogueState, Enrolment, EnrolmentStatus, Household,
                         HouseholdLink, InboundMessage, LinkRole, Member, SchemeYear, Village,
                         WechatUser)
from core.scheme import scheme_of
from tests.factories import local_today, M, make_household, make_id

HEAD = "王大山"
SPOUSE = "李小花"


@pytest.fixture
def ids():
    return {"head": make_id(date(1958, 4, 3)), "spouse": make_id(date(1961, 9, 30)),
            "child": make_id(date(1990, 1, 15))}


def count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def state_of(db, openid):
    with db.session() as s:
        row = s.get(DialogueState, openid)
        return (row.state, dict(row.data)) if row else None


def no_plain_id(text: str, *numbers: str) -> None:
    for n in numbers:
        assert n not in text, f"unmasked ID {mask_id(n)} leaked"
        assert n.lower() not in text


def run(villager, openid, answers):
    replies = []
    for a in answers:
        replies.append(villager.text(openid, a).reply)
    return replies


def test_whole_sign_up_in_the_spec_order(villager, db, app_ctx, ids, caplog):
    caplog.set_level(logging.DEBUG)
    o = "o_signup_full"
    r = run(villager, o, ["1"])
    assert "哪个村" in r[0] and "1 示范镇 东村" in r[0] and "回复数字" in r[0]
    r = run(villager, o, ["2"])[0]
    assert "示范镇西村" in r and "户主的姓名" in r
    assert "身份证号" in villager.text(o, HEAD).reply
    assert "手机号" in villager.text(o, ids["head"]).reply
    r = villager.text(o, "13800138000").reply
    assert "1 居民医保" in r and "2 职工医保" in r and "3 未参保" in r
    with db.session() as s:  # the open dialogue keeps the phone encrypted
        state = s.get(DialogueState, o)
        assert "13800138000" not in json.dumps(state.data)
    r = villager.text(o, "居民医保").reply  # the word works as well as the number
    # the scheme names categories (低保, 特困): each member's is asked, 无 first
    assert "1 无" in r and "2 低保" in r and "3 特困" in r and "王*山（户主）" in r
    r = villager.text(o, "无").reply  # the word works as well as the number
    assert "1 添加成员" in r and "2 完成" in r and "王*山" in r
    assert "姓名" in villager.text(o, "添加成员").reply
    assert "身份证号" in villager.text(o, SPOUSE).reply
    r = villager.text(o, ids["spouse"]).reply
    assert "1 配偶" in r and "2 子女" in r and "3 父母" in r and "4 其他" in r
    assert "1 居民医保" in villager.text(o, "1").reply
    assert "1 无" in villager.text(o, "2").reply
    assert "2 完成" in villager.text(o, "1").reply
    assert "姓名" in villager.text(o, "1").reply
    villager.text(o, "王小军")
    villager.text(o, ids["child"])
    villager.text(o, "子女")
    villager.text(o, "3")
    villager.text(o, "1")
    summary = villager.text(o, "完成").reply
    assert count(db, Household) == 0  # nothing written before 确认
    assert mask_id(ids["head"]) in summary and mask_id(ids["spouse"]) in summary
    assert "王*山" in summary and "李*花" in summary and "王*军" in summary
    assert "150.00 元" in summary  # 3 × the 50.00 personal share of the demo scheme
    assert "确认" in summary and "电话 13800138000" in summary  # to check, in full
    done = villager.text(o, "确认").reply
    m = re.search(r"户号 (H\d{8})", done)
    assert m and "150.00 元" in done and "2 缴费" in done

    with db.session() as s:
        hh = s.scalar(select(Household).where(Household.number == m.group(1)))
        assert hh.village.full_name == "示范镇/西村" and hh.phone_masked == "138****8000"
        assert app_ctx.vault.decrypt(hh.phone_enc) == "13800138000"
        assert "13800138000" not in hh.phone_enc
        # the replies kept for WeChat's retries hold the phone masked only
        cached = json.dumps([r.reply for r in s.scalars(select(InboundMessage))],
                            ensure_ascii=False)
        assert "电话 138****8000" in cached and "13800138000" not in cached
        assert [x.birth_year for x in hh.members] == [1958, 1961, 1990]
        members = hh.members
        assert [x.name for x in members] == [HEAD, SPOUSE, "王小军"]
        assert [x.relation.value for x in members] == ["head", "spouse", "child"]
        assert [x.insurance.value for x in members] == ["resident", "employee", "uninsured"]
        for x, key in zip(members, ("head", "spouse", "child")):
            assert app_ctx.vault.decrypt(x.id_number_enc) == ids[key]
            assert ids[key] not in x.id_number_enc
            assert x.id_number_hash == app_ctx.vault.lookup_hash(ids[key])
            assert x.id_number_masked == mask_id(ids[key])
        enrolments = s.scalars(select(Enrolment)).all()
        assert len(enrolments) == 3
        assert {e.status for e in enrolments} == {EnrolmentStatus.pending}
        link = s.scalar(select(HouseholdLink).where(HouseholdLink.openid == o))
        assert link.household_id == hh.id and link.role is LinkRole.head
        row = s.scalar(select(AuditLog).where(AuditLog.action == "household.register"))
        assert row.actor == o and row.after["personal_due_fen"] == 15000
        assert s.get(DialogueState, o) is None
        audit_text = str(row.after)
    all_text = "\n".join([summary, done, audit_text, caplog.text])
    no_plain_id(all_text, *ids.values())

    # the same user again: already in, with the amount still due
    again = villager.text(o, "参加互助").reply
    assert m.group(1) in again and "150.00 元" in again and "添加成员" in again


def test_each_bad_answer_re_asks_and_changes_nothing(villager, db, ids):
    o = "o_signup_bad"
    steps = [
        ("1", None, None),
        ("1", ["9", "北京村"], "没有"),
        (HEAD, ["12345", "确认", "王大山1"], "姓名"),
        (ids["head"], ["123", ids["head"][:-1] + ("0" if ids["head"][-1] != "0" else "1"),
                       make_id(local_today() + timedelta(days=3))], "身份证号"),
        ("13800138000", ["1234", "电话"], "手机号"),
        ("1", ["4", "医保"], "1、2 或 3"),
        ("1", ["4", "残疾", "0"], "这个选项"),
        ("1", ["3", "好的"], "1 或 2"),
        (SPOUSE, ["完成啦1"], "姓名"),
        (ids["spouse"], [ids["head"], "abc"], "身份证号"),
        ("1", ["5", "户主"], "1、2、3 或 4"),
        ("2", ["0"], "1、2 或 3"),
        ("1", ["低保户"], "1 无"),
        ("2", ["是吗", "3"], "1 或 2"),
    ]
    for good, bads, hint in steps:
        before = state_of(db, o)
        for bad in bads or []:
            reply = villager.text(o, bad).reply
            assert hint in reply, (bad, reply)
            assert state_of(db, o) == before, bad  # nothing changed
        villager.text(o, good)
    assert state_of(db, o)[0] == "confirm"
    before = state_of(db, o)
    assert "确认" in villager.text(o, "好").reply
    assert state_of(db, o) == before and count(db, Household) == 0
    assert "登记成功" in villager.text(o, "确认").reply
    assert count(db, Household) == 1 and count(db, Member) == 2


def test_the_dialogue_keeps_id_numbers_encrypted_until_confirmed(villager, db, ids):
    o = "o_signup_state"
    run(villager, o, ["1", "1", HEAD, ids["head"]])
    with db.session() as s:
        data = str(s.get(DialogueState, o).data)
    assert ids["head"] not in data and mask_id(ids["head"]) in data


def test_cancel_writes_nothing(villager, db, ids):
    o = "o_signup_cancel"
    run(villager, o, ["1", "1", HEAD, ids["head"], "13800138000", "1", "2"])
    assert "已取消" in villager.text(o, "取消").reply
    assert count(db, Household) == 0 and count(db, Enrolment) == 0 and state_of(db, o) is None


def test_village_from_the_qr_code_is_not_asked(villager, db, ids):
    o = "o_signup_qr"
    with db.session() as s:
        south = s.scalar(select(Village).where(Village.full_name == "示范镇/南村"))
        vid = south.id
    welcome = villager.subscribe(o, f"village:{vid}").reply
    assert "示范镇/南村" in welcome
    with db.session() as s:
        assert s.scalar(select(WechatUser).where(WechatUser.openid == o)).village_id == vid
    r = villager.text(o, "1").reply
    assert "哪个村" not in r and "示范镇南村" in r and "户主的姓名" in r
    run(villager, o, [HEAD, ids["head"], "13800138000", "2", "1", "2", "确认"])
    with db.session() as s:
        assert s.scalar(select(Household)).village_id == vid


def _close_window(db, days_ago: int = 1):
    today = local_today()
    with db.session() as s:
        s.execute(update(SchemeYear).values(enrolment_opens=today - timedelta(days=80),
                                            enrolment_closes=today - timedelta(days=days_ago)))


def test_outside_the_window_says_the_dates_and_whom_to_ask(villager, db, ids):
    _close_window(db)
    today = local_today()
    o = "o_signup_closed"
    villager.subscribe(o)
    r = villager.text(o, "1").reply  # village first (no QR code), then the window
    r = villager.text(o, "1").reply
    closes = today - timedelta(days=1)
    assert "不在参加互助的登记时间" in r
    assert f"{closes.year}年{closes.month}月{closes.day}日" in r
    assert "东村村委会" in r and "互助管理员" in r
    assert state_of(db, o) is None and count(db, Household) == 0


def test_outside_the_window_with_a_qr_village_answers_at_once(villager, db):
    _close_window(db)
    with db.session() as s:
        vid = s.scalar(select(Village.id).where(Village.full_name == "示范镇/东村"))
    villager.subscribe("o_closed_qr", f"village:{vid}")
    r = villager.text("o_closed_qr", "参加互助").reply
    assert "不在参加互助的登记时间" in r and "东村村委会" in r


def test_an_id_already_registered_says_which_household(villager, db, app_ctx, ids):
    with db.session() as s:
        other = make_household(s, app_ctx.vault, [M("赵老四", id_number=ids["spouse"])],
                               village="示范镇/东村", enrolment="pending")
        number = other.number
    o = "o_signup_dup"
    run(villager, o, ["1", "2", HEAD])
    before = state_of(db, o)
    r = villager.text(o, ids["spouse"]).reply
    assert number in r and "赵*四" in r and "东村" in r and "村管理员" in r
    assert mask_id(ids["spouse"]) in r
    no_plain_id(r, ids["spouse"])
    assert state_of(db, o) == before
    # a member's ID twice in the same household is refused too
    run(villager, o, [ids["head"], "13800138000", "1", "1", "1", SPOUSE])
    r = villager.text(o, ids["head"]).reply
    assert "已经在您家的名单里" in r


def test_registered_meanwhile_is_refused_at_confirmation(villager, db, app_ctx, ids):
    o = "o_signup_race"
    run(villager, o, ["1", "1", HEAD, ids["head"], "13800138000", "1", "1", "2"])
    with db.session() as s:
        make_household(s, app_ctx.vault, [M(HEAD, id_number=ids["head"])], enrolment="pending")
    r = villager.text(o, "确认").reply
    assert "已经登记在" in r and "没有保存" in r
    assert count(db, Household) == 1  # only the other one
    assert state_of(db, o) is None


def test_an_excluded_category_cannot_join_and_subsidized_ones_pay_nothing(villager, db, app_ctx,
                                                                         ids):
    """Categories come from the village's lists (import); a person known as 低保 has the
    personal share paid by the collective; a scheme may exclude a category (Haimen)."""
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        rules = dict(year.rules)
        rules["contribution"] = {**rules["contribution"], "excluded": ["孤儿"]}
        year.rules = rules
        # known from last year's village list, in a household that is not in this year
        make_household(s, app_ctx.vault, [M("钱一", id_number=ids["spouse"], category="低保"),
                                          M("孙二", "child", id_number=ids["child"],
                                            category="孤儿")], enrolment=None)
    o = "o_signup_cat"
    run(villager, o, ["1", "1", HEAD, ids["head"], "13800138000", "1", "1", "1", SPOUSE])
    r = villager.text(o, ids["spouse"]).reply
    assert "配偶" in r  # accepted
    run(villager, o, ["1", "1", "1", "王小二"])
    before = state_of(db, o)
    r = villager.text(o, ids["child"]).reply
    assert "孤儿" in r and "不能参加" in r and state_of(db, o) == before
    summary = villager.text(o, "取消").reply
    run(villager, o, ["1", "1", HEAD, ids["head"], "13800138000", "1", "1", "1", SPOUSE,
                      ids["spouse"], "1", "1"])  # 钱一 is 低保 on the village's list: not asked
    summary = villager.text(o, "2").reply
    assert "（低保）" in summary and "个人应缴 50.00 元" in summary and "1 人由集体代缴" in summary
    villager.text(o, "确认")
    with db.session() as s:
        hh = s.scalar(select(Household).join(HouseholdLink).where(HouseholdLink.openid == o))
        assert [m.category for m in hh.members] == [None, "低保"]
        assert personal_due_fen(scheme_of(s.scalar(select(SchemeYear))), hh.members) == 5000


def test_personal_due_fen():
    from core.scheme import load_scheme
    from core.config import SCHEMES_DIR

    scheme = load_scheme(SCHEMES_DIR / "haimen-2023.yaml")
    assert personal_due_fen(scheme, [{"category": None}, {"category": None}]) == 8000
    with pytest.raises(ValueError):
        personal_due_fen(scheme, [{"category": "特困"}])
    demo = load_scheme(SCHEMES_DIR / "demo.yaml")
    assert personal_due_fen(demo, [M("a"), M("b", category="低保"), M("c", category="特困")]) == 5000


# -- 添加成员 ----------------------------------------------------------------------------------

def test_newborn_added_outside_the_window(villager, db, app_ctx, ids):
    o = "o_newborn"
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M(HEAD, id_number=ids["head"])], openid=o,
                            enrolment="paid")
        number = hh.number
        year = s.scalar(select(SchemeYear))
        start = year.start
    _close_window(db)
    baby = make_id(start + timedelta(days=3))
    old = make_id(start - timedelta(days=3))
    r = villager.text(o, "添加成员").reply
    assert number in r and "出生 90 天以内的新生儿" in r
    villager.text(o, "王小宝")
    before = state_of(db, o)
    r = villager.text(o, old).reply  # 93 days old: demo.yaml's newborn_days is 90
    assert "只能添加出生 90 天以内的新生儿" in r and "出生日期不在其中" in r
    assert state_of(db, o) == before
    r = villager.text(o, baby).reply
    assert "1 配偶" in r
    villager.text(o, "2")
    villager.text(o, "1")
    summary = villager.text(o, "1").reply
    assert mask_id(baby) in summary and "50.00 元" in summary and "确认" in summary
    assert count(db, Member) == 1
    done = villager.text(o, "确认").reply
    assert "已添加" in done and "50.00 元" in done and "2 缴费" in done
    no_plain_id(summary + done, baby)
    with db.session() as s:
        hh = s.scalar(select(Household).where(Household.number == number))
        assert len(hh.members) == 2
        e = s.scalar(select(Enrolment).where(Enrolment.member_id == hh.members[1].id))
        assert e.status is EnrolmentStatus.pending  # until its share is paid
        assert s.scalar(select(AuditLog).where(AuditLog.action == "household.add_member")
                        ).after["newborn"] is True


def test_adding_members_inside_the_window_takes_anyone(villager, db, app_ctx, ids):
    o = "o_add_open"
    with db.session() as s:
        make_household(s, app_ctx.vault, [M(HEAD, id_number=ids["head"])], openid=o,
                       enrolment="pending")
    r = run(villager, o, ["添加成员", SPOUSE, ids["spouse"], "配偶", "2", "1", "确认"])
    assert "新生儿" not in r[0]
    assert "已添加" in r[-1] and "100.00 元" in r[-1]  # both still unpaid


def test_only_the_head_adds_members_and_only_when_enrolled(villager, db, app_ctx, ids):
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M(HEAD, id_number=ids["head"])], openid="o_h1",
                            enrolment=None)
        s.add(HouseholdLink(household_id=hh.id, openid="o_relative", role=LinkRole.proxy))
    assert "户主本人" in villager.text("o_relative", "添加成员").reply
    assert "还没有登记" in villager.text("o_nobody", "添加成员").reply
    _close_window(db)
    assert "还没有参加" in villager.text("o_h1", "添加成员").reply
    assert state_of(db, "o_h1") is None


def test_renewal_for_a_new_scheme_year(villager, db, app_ctx, ids):
    """Last year's household enrols again with the same members, one 确认."""
    o = "o_renew"
    today = local_today()
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        old = SchemeYear(pool_id=year.pool_id, start=year.start - timedelta(days=365),
                         end=year.start - timedelta(days=1),
                         enrolment_opens=year.start - timedelta(days=400),
                         enrolment_closes=year.start - timedelta(days=300), rules=year.rules)
        s.add(old)
        s.flush()
        hh = make_household(s, app_ctx.vault, [M(HEAD, id_number=ids["head"]),
                                               M(SPOUSE, "spouse", id_number=ids["spouse"])],
                            openid=o, enrolment="paid", year=old)
        number = hh.number
    assert today  # the demo year's window is open
    r = villager.text(o, "参加互助").reply
    assert number in r and "续保" in r and mask_id(ids["spouse"]) in r and "100.00 元" in r
    r = villager.text(o, "确认").reply
    assert "续保成功" in r and number in r
    with db.session() as s:
        current = s.scalar(select(SchemeYear).order_by(SchemeYear.start.desc()))
        assert s.scalar(select(func.count(Enrolment.id)).where(
            Enrolment.scheme_year_id == current.id)) == 2
    assert "已经参加" in villager.text(o, "参加互助").reply

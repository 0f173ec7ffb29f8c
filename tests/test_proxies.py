"""Relatives as proxies, through the webhook: 绑定家人 → a 6-digit code valid 24 hours,
绑定 <code> by a relative, 家人 and 解绑 N by the head (and by the relative)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.households import household_for_user
from core.models import AuditLog, HouseholdLink, LinkRole, ProxyCode, utcnow
from tests.factories import M, make_household

HEAD, SON, DAUGHTER = "o_px_head", "o_px_son", "o_px_daughter"


@pytest.fixture
def household(db, app_ctx):
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse")], openid=HEAD)
        return hh.number


def code_for(villager, label: str = "儿子小明") -> str:
    r = villager.text(HEAD, "绑定家人").reply
    assert "称呼" in r
    r = villager.text(HEAD, label).reply
    m = re.search(r"绑定码：(\d{6})", r)
    assert m, r
    assert "24 小时内有效" in r and f"绑定 {m.group(1)}" in r
    return m.group(1)


def links(db, openid):
    with db.session() as s:
        return [(link.household.number, link.role, link.label) for link in
                s.scalars(select(HouseholdLink).where(HouseholdLink.openid == openid))]


def test_a_relative_binds_with_the_head_s_code(villager, db, household):
    code = code_for(villager)
    since = villager.last_call_id()
    r = villager.text(SON, f"绑定 {code}").reply
    assert "绑定成功" in r and household in r and "2 缴费" in r
    assert links(db, SON) == [(household, LinkRole.proxy, "儿子小明")]
    with db.session() as s:
        assert household_for_user(s, SON).number == household  # pays, claims, queries for it
        assert s.scalar(select(ProxyCode).where(ProxyCode.code == code)).used_by == SON
        assert s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "proxy.bind")) == 1
    # the head is told, through the outbox
    pushed = villager.wait_pushes(HEAD, since, 5)
    texts = [c["json"]["text"]["content"] for c in pushed if c.get("json", {}).get("text")]
    assert any("儿子小明" in t and household in t and "解绑" in t for t in texts)


def test_the_label_can_be_given_inline_and_codes_differ(villager, household):
    r1 = villager.text(HEAD, "绑定家人 女儿小红").reply
    r2 = villager.text(HEAD, "绑定家人 女儿小红").reply
    c1, c2 = (re.search(r"绑定码：(\d{6})", r).group(1) for r in (r1, r2))
    assert c1 != c2 and "女儿小红" in r1


def test_a_code_works_once_and_for_24_hours(villager, db, household):
    code = code_for(villager)
    assert "绑定成功" in villager.text(SON, f"绑定 {code}").reply
    r = villager.text(DAUGHTER, f"绑定 {code}").reply
    assert "已经用过" in r and links(db, DAUGHTER) == []
    code2 = code_for(villager, "女儿")
    with db.session() as s:
        s.execute(update(ProxyCode).where(ProxyCode.code == code2)
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    r = villager.text(DAUGHTER, f"绑定 {code2}").reply
    assert "过期" in r and links(db, DAUGHTER) == []


def test_just_under_24_hours_still_binds(villager, db, household):
    from core.outbox import as_utc

    code = code_for(villager)
    with db.session() as s:
        row = s.scalar(select(ProxyCode).where(ProxyCode.code == code))
        left = as_utc(row.expires_at) - utcnow()
        assert timedelta(hours=23, minutes=59) < left <= timedelta(hours=24)
        row.expires_at = utcnow() + timedelta(minutes=1)
    assert "绑定成功" in villager.text(DAUGHTER, f"绑定 {code}").reply


def test_wrong_codes_are_refused_and_guessing_is_stopped(villager, db, household):
    code = code_for(villager)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert "不对" in villager.text(DAUGHTER, f"绑定 {wrong}").reply
    r = villager.text(DAUGHTER, f"绑定 {code}").reply  # even the right one, for an hour
    assert "次数太多" in r and links(db, DAUGHTER) == []
    assert "6 位" in villager.text("o_px_other", "绑定 12ab").reply
    assert links(db, "o_px_other") == []


def test_bind_asks_for_the_code_when_it_is_missing(villager, db, household):
    code = code_for(villager)
    assert "6 位绑定码" in villager.text(SON, "绑定").reply
    assert "6 位" in villager.text(SON, "abc").reply
    assert "绑定成功" in villager.text(SON, code).reply


def test_the_head_cannot_bind_to_the_own_household_nor_twice(villager, db, household):
    code = code_for(villager)
    assert "您就是这一户" in villager.text(HEAD, f"绑定 {code}").reply
    assert "绑定成功" in villager.text(SON, f"绑定 {code_for(villager)}").reply
    assert "已经绑定过" in villager.text(SON, f"绑定 {code_for(villager)}").reply
    assert len(links(db, SON)) == 1


def test_only_a_head_makes_codes(villager, db, household):
    assert "还没有登记" in villager.text("o_px_stranger", "绑定家人").reply
    villager.text(SON, f"绑定 {code_for(villager)}")
    r = villager.text(SON, "绑定家人").reply
    assert "只有户主" in r and household in r
    with db.session() as s:
        assert s.scalar(select(func.count(ProxyCode.id))) == 1


def test_the_head_lists_and_removes_proxies(villager, db, household):
    assert "还没有绑定" in villager.text(HEAD, "家人").reply
    villager.text(SON, f"绑定 {code_for(villager, '儿子小明')}")
    villager.text(DAUGHTER, f"绑定 {code_for(villager, '女儿小红')}")
    r = villager.text(HEAD, "家人").reply
    assert "1. 儿子小明" in r and "2. 女儿小红" in r and "解绑 1" in r
    assert "没有第 7 位" in villager.text(HEAD, "解绑 7").reply
    assert len(links(db, SON)) == 1
    since = villager.last_call_id()
    r = villager.text(HEAD, "解绑 1").reply
    assert "儿子小明" in r and "解除" in r
    assert links(db, SON) == [] and len(links(db, DAUGHTER)) == 1
    with db.session() as s:
        assert household_for_user(s, SON) is None
        assert s.scalar(select(AuditLog).where(AuditLog.action == "proxy.remove")).actor == HEAD
    pushed = villager.wait_pushes(SON, since, 5)
    assert any(household in c["json"]["text"]["content"] for c in pushed)
    r = villager.text(HEAD, "家人").reply
    assert "1. 女儿小红" in r and "儿子小明" not in r


def test_a_relative_lists_and_leaves(villager, db, household):
    villager.text(SON, f"绑定 {code_for(villager)}")
    r = villager.text(SON, "家人").reply
    assert f"1. 户号 {household}" in r
    since = villager.last_call_id()
    assert household in villager.text(SON, "解绑 1").reply
    assert links(db, SON) == []
    pushed = villager.wait_pushes(HEAD, since, 5)
    assert any("不再代办" in c["json"]["text"]["content"] for c in pushed)

"""Guessing administrator invite codes over the webhook: 10 wrong codes per user and 100 over
all users an hour, then a lock that names the time it lifts; one answer for a wrong, a used and
an expired code."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from core.admins import create_invite
from core.models import AdminGrant, AdminInvite, AuditLog, GuessAttempt, utcnow
from core.outbox import as_utc

SAME = "邀请码不对，或已用过、已过期。"


def invite(db, role="reviewer") -> str:
    with db.session() as s:
        return create_invite(s, role, "cli:test")


def granted(db, openid) -> bool:
    with db.session() as s:
        return s.scalar(select(AdminGrant).where(AdminGrant.openid == openid)) is not None


def wrong(i: int) -> str:
    return f"WRNG{i:04d}"


def move_clock(db, by: timedelta) -> None:
    """The attempts happened `by` earlier (the server's clock moved forward by as much)."""
    with db.session() as s:
        for row in s.scalars(select(GuessAttempt)):
            row.at = as_utc(row.at) - by


def shown_time(db, cfg, openid=None) -> str:
    """HH:MM, local, of the minute the lock lifts: an hour after the oldest wrong code that
    still counts, rounded up."""
    with db.session() as s:
        q = select(func.min(GuessAttempt.at))
        if openid:
            q = q.where(GuessAttempt.openid == openid)
        first = as_utc(s.scalar(q))
    lifts = first + timedelta(hours=1)
    lifts = (lifts + timedelta(seconds=59, microseconds=999999)).replace(second=0,
                                                                         microsecond=0)
    local = lifts.astimezone(cfg.tz)
    return f"{local.year}年{local.month}月{local.day}日 {local.hour:02d}:{local.minute:02d}"


def test_the_11th_try_in_an_hour_is_refused_even_with_the_right_code(villager, db, cfg):
    code = invite(db)
    for i in range(10):
        assert SAME in villager.text("o_guess", f"/绑定 {wrong(i)}").reply
    r = villager.text("o_guess", f"/绑定 {code}").reply
    assert "输错次数太多" in r and "绑定已暂停" in r
    assert shown_time(db, cfg, "o_guess") in r, r
    assert not granted(db, "o_guess")
    with db.session() as s:  # the right code was not even looked at: it is still unused
        assert s.scalar(select(AdminInvite.used_at)) is None
        refusals = [a.after["why"] for a in s.scalars(
            select(AuditLog).where(AuditLog.actor == "o_guess").order_by(AuditLog.id))]
    assert refusals == ["bad_code"] * 10 + ["locked"]
    # another administrator is not hindered by this one's lock
    assert "绑定成功" in villager.text("o_other_admin", f"/绑定 {invite(db)}").reply
    # 59 minutes later: still locked; after the hour: the right code binds
    move_clock(db, timedelta(minutes=59))
    assert "绑定已暂停" in villager.text("o_guess", f"/绑定 {code}").reply
    move_clock(db, timedelta(minutes=1, seconds=1))
    assert "绑定成功" in villager.text("o_guess", f"/绑定 {code}").reply
    assert granted(db, "o_guess")


def test_codes_sent_while_locked_do_not_lengthen_the_lock(villager, db):
    for i in range(10):
        villager.text("o_guess2", f"/绑定 {wrong(i)}")
    for i in range(5):
        assert "绑定已暂停" in villager.text("o_guess2", f"/绑定 {wrong(i)}").reply
    with db.session() as s:
        assert s.scalar(select(func.count(GuessAttempt.id))) == 10
    move_clock(db, timedelta(hours=1, seconds=1))
    assert "绑定成功" in villager.text("o_guess2", f"/绑定 {invite(db)}").reply


def test_100_wrong_codes_an_hour_over_all_users_lock_everyone(villager, db, cfg):
    code = invite(db)
    for i in range(100):  # 20 users, 5 each: none reaches its own limit
        assert SAME in villager.text(f"o_many_{i % 20}", f"/绑定 {wrong(i)}").reply
    r = villager.text("o_newcomer", f"/绑定 {code}").reply
    assert "输错邀请码的人太多" in r and shown_time(db, cfg) in r, r
    assert not granted(db, "o_newcomer")
    move_clock(db, timedelta(hours=1, seconds=1))
    assert "绑定成功" in villager.text("o_newcomer", f"/绑定 {code}").reply


def test_wrong_used_and_expired_codes_get_the_same_answer(villager, db):
    used = invite(db)
    assert "绑定成功" in villager.text("o_first", f"/绑定 {used}").reply
    expired = invite(db)
    with db.session() as s:
        s.execute(update(AdminInvite).where(AdminInvite.used_at.is_(None))
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    answers = {villager.text("o_prober", f"/绑定 {c}").reply
               for c in (wrong(1), used, expired)}
    assert len(answers) == 1 and SAME in answers.pop()
    assert not granted(db, "o_prober")
    with db.session() as s:  # the audit log, for the operators, says which it was
        whys = [a.after["why"] for a in s.scalars(
            select(AuditLog).where(AuditLog.actor == "o_prober").order_by(AuditLog.id))]
        assert whys == ["bad_code", "code_used", "code_expired"]
        assert s.scalar(select(func.count(GuessAttempt.id))) == 3


def test_bind_without_a_code_is_usage_and_counts_nothing(villager, db):
    for text in ("/绑定", "/绑定 AB CD"):
        assert "格式不对" in villager.text("o_lost", text).reply
    with db.session() as s:
        assert s.scalar(select(func.count(GuessAttempt.id))) == 0

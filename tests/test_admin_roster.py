"""Listing and revoking administrators: `/管理员` (super, in chat, openids masked),
`huzhu admin list [--json]` and `huzhu admin revoke OPENID|CODE` (openids in full); each audited;
a revoked administrator's next command is refused."""
from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import func, select

from core.admins import bind, create_invite, mask_openid
from core.models import AdminGrant, AdminInvite, AuditLog
from tests.test_admin import _env

SUPER = "oSUPERx1234567890abcdefghijk"  # 28 characters, as WeChat's openids
VILLAGE = "oVILLAGEx234567890abcdefghij"
POOL = "oPOOLxxx34567890abcdefghijkl"


def admin(db, openid, role, **scope) -> str:
    with db.session() as s:
        code = create_invite(s, role, "cli:test", **scope)
    with db.session() as s:
        bind(s, openid, code)
    return code


def grants(db) -> list[tuple[str, str]]:
    with db.session() as s:
        return sorted((g.openid, g.role.value) for g in s.scalars(select(AdminGrant)))


def audits(db, action) -> list[AuditLog]:
    with db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.action == action)
                              .order_by(AuditLog.id)))
        s.expunge_all()
    return rows


def cli(cfg, *args):
    return subprocess.run([sys.executable, "-m", "bot.cli", "admin", *args],
                          capture_output=True, text=True, env=_env(cfg), timeout=60)


def test_a_super_lists_administrators_masked(villager, db):
    admin(db, SUPER, "super")
    admin(db, VILLAGE, "village_admin", village="示范镇/东村")
    admin(db, POOL, "pool_admin", pool="demo")
    admin(db, POOL, "reviewer")
    r = villager.text(SUPER, "/管理员").reply
    assert "管理员共 3 位" in r
    assert f"{mask_openid(SUPER)}（你）：超级管理员（全部）" in r
    assert f"{mask_openid(VILLAGE)}：村管理员（东村）" in r
    assert f"{mask_openid(POOL)}：资金池管理员（示范镇）、审核员（全部）" in r
    for openid in (SUPER, VILLAGE, POOL):
        assert openid not in r
    assert mask_openid(VILLAGE) == "oVIL…efghij"
    listed = audits(db, "admin.list")
    assert [(a.actor, a.after) for a in listed] == [(SUPER, {"grants": 4, "via": "chat"})]


def test_a_super_revokes_and_the_revoked_admins_next_command_is_refused(villager, db):
    admin(db, SUPER, "super")
    admin(db, VILLAGE, "village_admin", village="示范镇/东村")
    assert "参加率" in villager.text(VILLAGE, "/帮助").reply  # works before
    r = villager.text(SUPER, f"/管理员 撤销 {mask_openid(VILLAGE)}").reply
    assert f"已撤销 {mask_openid(VILLAGE)} 的管理员身份：村管理员（东村）" in r
    assert grants(db) == [(SUPER, "super")]
    refused = villager.text(VILLAGE, "/统计").reply
    assert "还没有绑定管理员" in refused
    [row] = audits(db, "admin.revoke")
    assert row.actor == SUPER and row.entity == "admin_grant" and row.after is None
    assert row.before["openid"] == VILLAGE and row.before["role"] == "village_admin"
    assert row.before["scope"] == "示范镇/东村" and row.before["bound_at"]
    # the full openid works too
    admin(db, POOL, "pool_admin", pool="demo")
    assert "已撤销" in villager.text(SUPER, f"/管理员 撤销 {POOL}").reply
    assert grants(db) == [(SUPER, "super")]


def test_only_a_super_may_and_bad_input_changes_nothing(villager, db):
    admin(db, SUPER, "super")
    admin(db, VILLAGE, "village_admin", village="示范镇/东村")
    admin(db, POOL, "pool_admin", pool="demo")
    admin(db, "oOTHERxx4567890abcdefghij", "reviewer")  # ends as VILLAGE does
    before = grants(db)
    assert "不能使用“/管理员”" in villager.text(POOL, f"/管理员 撤销 {VILLAGE}").reply
    assert "还没有绑定管理员" in villager.text("o_stranger", "/管理员").reply
    for text in ("/管理员 撤销", f"/管理员 删除 {VILLAGE}", f"/管理员 撤销 {VILLAGE} 多余"):
        assert "格式不对" in villager.text(SUPER, text).reply
    assert "没有找到管理员“oNOBODY”" in villager.text(SUPER, "/管理员 撤销 oNOBODY").reply
    assert "不止一位" in villager.text(SUPER, "/管理员 撤销 efghij").reply  # two end so
    assert "没有找到" in villager.text(SUPER, "/管理员 撤销 ghij").reply  # too short to tell
    assert "不能撤销你自己" in villager.text(SUPER, f"/管理员 撤销 {SUPER}").reply
    assert grants(db) == before
    assert audits(db, "admin.revoke") == []
    assert "/管理员 [撤销 openid]" in villager.text(SUPER, "/帮助").reply
    assert "/管理员" not in villager.text(POOL, "/帮助").reply


def test_cli_lists_in_full_and_revokes_by_openid_or_code(cfg, db, app_ctx, villager):
    admin(db, SUPER, "super")
    used = admin(db, VILLAGE, "village_admin", village="示范镇/东村")
    out = cli(cfg, "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {(r["openid"], r["role"], r["scope"]) for r in rows} == {
        (SUPER, "super", "all"), (VILLAGE, "village_admin", "示范镇/东村")}
    assert all(r["bound_at"] for r in rows)
    text = cli(cfg, "list")
    assert text.returncode == 0 and SUPER in text.stdout and VILLAGE in text.stdout
    # a used code: the grant it made goes
    out = cli(cfg, "revoke", used)
    assert out.returncode == 0 and f"revoked {VILLAGE} village_admin" in out.stdout, out.stderr
    assert grants(db) == [(SUPER, "super")]
    assert "还没有绑定管理员" in villager.text(VILLAGE, "/统计").reply
    # an unused code stops binding
    with db.session() as s:
        fresh = create_invite(s, "reviewer", "cli:test")
    out = cli(cfg, "revoke", fresh)
    assert out.returncode == 0 and "withdrawn" in out.stdout, out.stderr
    assert "邀请码不对，或已用过、已过期" in villager.text("o_late", f"/绑定 {fresh}").reply
    # an openid
    admin(db, POOL, "pool_admin", pool="demo")
    out = cli(cfg, "revoke", POOL, "--json")
    assert out.returncode == 0, out.stderr
    assert [r["role"] for r in json.loads(out.stdout)["revoked"]] == ["pool_admin"]
    assert grants(db) == [(SUPER, "super")]
    actions = [(a.action, a.actor.startswith("cli:")) for a in
               audits(db, "admin.revoke") + audits(db, "admin.invite_revoked")]
    assert actions == [("admin.revoke", True), ("admin.revoke", True),
                       ("admin.invite_revoked", True)]


def test_cli_revoke_of_nothing_known_exits_2_and_changes_nothing(cfg, db, app_ctx):
    admin(db, SUPER, "super")
    out = cli(cfg, "revoke", "oNOBODY")
    assert out.returncode == 2 and "no administrator and no invite code" in out.stderr
    assert grants(db) == [(SUPER, "super")]
    with db.session() as s:
        assert s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action.in_(["admin.revoke", "admin.invite_revoked"]))) == 0
        assert s.scalar(select(func.count(AdminInvite.id)).where(
            AdminInvite.used_at.is_(None))) == 0

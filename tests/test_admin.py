"""Administrators: invite codes from the CLI, /绑定, /帮助, refusals written to the audit log."""
from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import select

from core.admins import create_invite, scope_of
from core.models import AdminGrant, AuditLog, Village


def invite(db, role, **kw) -> str:
    with db.session() as s:
        return create_invite(s, role, "cli:test", **kw)


def test_non_admin_command_is_refused_and_audited(villager, db):
    r = villager.text("o_nobody", "/待审")
    assert "还没有绑定管理员" in r.reply
    with db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.actor == "o_nobody")))
    assert [(a.action, a.entity_id, a.after["why"]) for a in rows] == [
        ("admin.refused", "待审", "not_admin")]


def test_bind_with_a_code_then_help_lists_commands(villager, db):
    code = invite(db, "pool_admin", pool="demo")
    r = villager.text("o_admin", f"/绑定 {code}")
    assert "绑定成功" in r.reply and "资金池管理员" in r.reply
    assert "/帮助" in villager.text("o_admin", "/帮助").reply
    with db.session() as s:
        grant = s.scalar(select(AdminGrant).where(AdminGrant.openid == "o_admin"))
        assert grant.role.value == "pool_admin"
        assert scope_of(s, "o_admin").covers_pool(grant.pool_id)


def test_a_code_works_once(villager, db):
    code = invite(db, "reviewer")
    assert "绑定成功" in villager.text("o_rev1", f"/绑定 {code}").reply
    again = villager.text("o_rev2", f"/绑定 {code}")
    assert "邀请码不对，或已用过、已过期" in again.reply  # the same answer as a wrong code
    with db.session() as s:
        assert s.scalar(select(AdminGrant).where(AdminGrant.openid == "o_rev2")) is None
        row = s.scalar(select(AuditLog).where(AuditLog.actor == "o_rev2"))
        assert (row.action, row.after["why"]) == ("admin.bind_refused", "code_used")


def test_wrong_code_and_missing_code(villager):
    assert "邀请码不对" in villager.text("o_x", "/绑定 ZZZZZZZZ").reply
    assert "/绑定 邀请码" in villager.text("o_x", "/绑定").reply


def test_village_admin_scope_is_its_village(db, app_ctx):
    with db.session() as s:
        villages = list(s.scalars(select(Village).order_by(Village.id)))
        assert len(villages) >= 2
        mine, other = villages[0], villages[1]
        code = create_invite(s, "village_admin", "cli:test", village=mine.full_name)
    from core.admins import bind
    with db.session() as s:
        bind(s, "o_va", code)
        scope = scope_of(s, "o_va")
        assert scope.covers_village(s.get(Village, mine.id))
        assert not scope.covers_village(s.get(Village, other.id))
        assert not scope.covers_pool(mine.pool_id)


def test_cli_admin_invite_json(cfg, db, app_ctx):
    env = {**_env(cfg)}
    out = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "invite", "--role",
                          "village_admin", "--village", "示范镇/东村", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    code = json.loads(out.stdout)["code"]
    assert len(code) == 8
    bad = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "invite", "--role",
                          "village_admin"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "village_required" in bad.stderr


def _env(cfg) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    return env


def test_a_refused_command_audits_its_arguments_masked(villager, db):
    villager.text("o_leak", "/收款 11010519491231002X 6222021234567890123")
    with db.session() as s:
        row = s.scalar(select(AuditLog).where(AuditLog.actor == "o_leak"))
    text = json.dumps(row.after, ensure_ascii=False)
    assert "11010519491231002X" not in text and "6222021234567890123" not in text
    assert "110*************2X" in text

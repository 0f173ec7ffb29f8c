"""`huzhu claims list`, `huzhu claims remind`, `huzhu catalog import`, `huzhu icd search`:
the real command line in a subprocess, on the test database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog import CHS_DRG_11
from core.models import AuditLog, Claim, DrgGroup, Household, OutboxMessage
from core.review import Facts, approve, record, reject
from tests.factories import local_today, M, make_claim, make_household

SHARED_DRG = Path(__file__).resolve().parents[2] / "shared" / "data" / "chs-drg-1.1"
TODAY = local_today()


def run(cfg, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def facts(amount_fen: int) -> Facts:
    return Facts("FM19", amount_fen, TODAY - timedelta(days=20), TODAY - timedelta(days=12),
                 "resident", "县人民医院")


@pytest.fixture
def claims(app_ctx, db):
    """An approved claim, a rejected one (computed: below the threshold), a submitted one."""
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse")],
                            village="示范镇/东村", openid="o_cli_household")
        approved = make_claim(s, hh, hh.members[0], due_date=TODAY + timedelta(days=3))
        record(s, approved, facts(1_200_000), "cli:test", today=TODAY)
        approve(s, approved, "cli:test", today=TODAY)
        rejected = make_claim(s, hh, hh.members[1], documents=("settlement_sheet",))
        record(s, rejected, facts(250_000), "cli:test", today=TODAY)
        reject(s, rejected, "below_threshold", None, "cli:test", today=TODAY)
        waiting = make_claim(s, hh, hh.members[1])
        secrets = [hh.members[0].name, hh.members[1].name]
        full_ids = [app_ctx.vault.decrypt(m.id_number_enc) for m in hh.members]
        return {"approved": approved.number, "rejected": rejected.number,
                "waiting": waiting.number, "household": hh.number,
                "secrets": secrets + full_ids}


def test_claims_list_json_has_the_decision_and_masks_names(cfg, claims):
    out = run(cfg, "claims", "list", "--json")
    assert out.returncode == 0, out.stderr
    for secret in claims["secrets"]:
        assert secret not in out.stdout
    rows = {r["number"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {claims["approved"], claims["rejected"], claims["waiting"]}

    a = rows[claims["approved"]]
    assert a["household"] == claims["household"] and a["member"] == "王*山"
    assert a["status"] == "approved" and a["amount_fen"] == 800000 and a["reasons"] == []
    assert a["trace"][0] == {"step": "enrolment", "text": "本年度已参加互助并缴费"}
    assert a["trace"][-1] == {"step": "decision", "text": "核定补助 8,000.00 元"}
    assert a["due_date"] == (TODAY + timedelta(days=3)).isoformat()
    assert [d["kind"] for d in a["documents"]] == ["discharge_record", "itemized_bill",
                                                   "settlement_sheet"]
    assert all(len(d["sha256"]) == 64 for d in a["documents"])

    r = rows[claims["rejected"]]
    assert r["member"] == "李*花" and r["status"] == "rejected"
    assert r["amount_fen"] is None and r["reasons"] == ["below_threshold"]
    assert any(s["step"] == "threshold" and "未达到" in s["text"] for s in r["trace"])

    w = rows[claims["waiting"]]
    assert w["status"] == "submitted" and w["amount_fen"] is None
    assert w["reasons"] == [] and w["trace"] == []


def test_claims_list_by_status_and_as_text(cfg, claims):
    out = run(cfg, "claims", "list", "--status", "approved", "--json")
    assert [r["number"] for r in json.loads(out.stdout)] == [claims["approved"]]
    out = run(cfg, "claims", "list")
    assert out.returncode == 0 and claims["rejected"] in out.stdout and "8,000.00 元" in out.stdout
    for secret in claims["secrets"]:
        assert secret not in out.stdout
    bad = run(cfg, "claims", "list", "--status", "nonsense")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_claims_remind_queues_the_overdue_list_once(cfg, app_ctx, db):
    from core.admins import bind, create_invite

    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("孙五")], village="示范镇/南村")
        late = make_claim(s, hh, due_date=TODAY - timedelta(days=1)).number
        bind(s, "o_cli_reviewer", create_invite(s, "reviewer", "cli:test", pool="demo"))
    out = run(cfg, "claims", "remind")
    assert out.returncode == 0 and "1 reminder" in out.stdout
    assert "0 reminder" in run(cfg, "claims", "remind").stdout
    with db.session() as s:
        rows = list(s.scalars(select(OutboxMessage).where(
            OutboxMessage.recipient == "o_cli_reviewer")))
    assert len(rows) == 1 and late in rows[0].payload["message"]["content"]
    assert "孙五" not in rows[0].payload["message"]["content"]
    assert run(cfg, "claims", "remind", "--date", "2026-02-30").returncode == 2


def group_count(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(DrgGroup))


def test_catalog_import_the_national_groups(cfg, app_ctx, db):
    before = group_count(db)
    out = run(cfg, "catalog", "import", str(CHS_DRG_11))
    assert out.returncode == 0, out.stderr
    assert f"{628 - before} DRG group(s) added" in out.stdout
    assert group_count(db) == 628
    again = run(cfg, "catalog", "import", str(CHS_DRG_11))
    assert "0 DRG group(s) added, 0 renamed" in again.stdout
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "catalog.import")) == 2


def test_catalog_import_csv_and_a_bad_file_imports_nothing(cfg, app_ctx, db, tmp_path):
    good = tmp_path / "groups.csv"
    good.write_text("code,name\nXX11,测试病种甲\nXX12,测试病种乙\n", encoding="utf-8")
    before = group_count(db)
    out = run(cfg, "catalog", "import", str(good))
    assert out.returncode == 0 and "2 DRG group(s) added" in out.stdout
    bad = tmp_path / "bad.dat"
    bad.write_text("ZZ21 甲\nnot-a-code\nZZ22 乙\n", encoding="utf-8")
    out = run(cfg, "catalog", "import", str(bad))
    assert out.returncode == 2 and "第2行" in out.stderr
    assert group_count(db) == before + 2
    assert run(cfg, "catalog", "import", str(tmp_path / "missing.dat")).returncode == 2


@pytest.mark.skipif(not SHARED_DRG.is_dir(), reason=f"CHS-DRG 1.1 data not at {SHARED_DRG}")
def test_icd_search(cfg):
    out = run(cfg, "icd", "search", "肺炎", "--file", str(SHARED_DRG / "ZD_INFO.dat"), "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert 0 < len(found) <= 10 and all("肺炎" in f["name"] for f in found)
    missing = run(cfg, "icd", "search", "肺炎", "--file", "/nonexistent/ZD_INFO.dat")
    assert missing.returncode == 2 and "找不到" in missing.stderr


def test_claims_list_without_claims(cfg, app_ctx, db):
    out = run(cfg, "claims", "list", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == []
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Claim)) == 0
        assert s.scalar(select(func.count()).select_from(Household)) == 0

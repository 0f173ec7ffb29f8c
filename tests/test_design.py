"""The quota designer (测算): quotas for every group fitted to the money raised, the simulated
year checked against the rule, `huzhu scheme design` with its files and its refusals, the
back-test, and `/测算` in chat with its picture."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import requests
from sqlalchemy import select

import importlib
from core.design import RuleDrift, design, simulate

simulate_module = importlib.import_module("core.design.simulate")
from core.design.fit import DEFAULT_INSURANCE_MIX, Stratum
from core.design.service import quoted_groups
from core.design.simulate import check_against_rule
from core.design.weights import default_weights
from core.scheme import load_scheme, read_quota_table

SCHEMES = Path(__file__).resolve().parent.parent / "config" / "schemes"


def preset(name: str):
    return load_scheme(SCHEMES / f"{name}.yaml")


def fitted(name: str = "tangqiao-2020", members: int = 20_000, funds_fen: int | None = None,
           scheme=None, **kw):
    scheme = scheme or preset(name)
    codes = quoted_groups(scheme)
    funds = funds_fen or members * scheme.contribution.per_person_fen
    return design(scheme, default_weights(codes), codes, members, funds, Decimal("0.10"),
                  DEFAULT_INSURANCE_MIX, 1.0, scheme.benefit.quota_excluded, **kw)


# ---------------------------------------------------------------------------------------------
# Fitting

def test_every_group_gets_a_quota_and_the_expected_payout_meets_the_funds():
    d = fitted(members=20_000)
    assert len(d.quotas_fen) == 628
    assert all(q % 100 == 0 and q > 0 for q in d.quotas_fen.values())  # whole yuan
    funds = 20_000 * 10_000
    assert d.funds_fen == funds and d.reserve_fen == funds // 10
    # subsidies + fee on them = funds − reserve, up to the quotas' rounding
    assert abs(d.expected_payout_fen + d.fee_fen - (funds - d.reserve_fen)) < funds * 0.002
    assert d.fee_fen == round(d.expected_payout_fen * 0.025)
    # major-disease groups get more (大病大补，小病小补)
    assert d.quotas_fen["AA19"] > d.quotas_fen["FM19"] > d.quotas_fen["OR19"]


def test_more_money_gives_proportionally_higher_quotas():
    low, high = fitted(members=20_000), fitted(members=20_000, funds_fen=20_000 * 15_000)
    assert high.scale > low.scale * 1.3
    assert high.quotas_fen["FM19"] > low.quotas_fen["FM19"]


def test_an_excluded_group_stays_out_of_the_design(tmp_path):
    base = preset("tangqiao-2020")
    quotas = (SCHEMES / "tangqiao-2020-quotas.csv").read_text(encoding="utf-8")
    (tmp_path / "q.csv").write_text(quotas.replace("drg_code,quota\n", "drg_code,quota\n")
                                    .replace("OB19,800.00\n", ""), encoding="utf-8")
    table = read_quota_table(tmp_path / "q.csv")
    scheme = replace(base, benefit=replace(base.benefit, quota_excluded={"OB19": "由生育保险支付"},
                                           quotas_fen={k: v for k, v in table.quotas_fen.items()
                                                       if k != "OB19"}))
    d = fitted(scheme=scheme)
    assert "OB19" not in d.quotas_fen and d.excluded == {"OB19": "由生育保险支付"}
    assert len(d.quotas_fen) == 627


# ---------------------------------------------------------------------------------------------
# Simulation

@pytest.mark.parametrize("name,members", [("tangqiao-2020", 20_000), ("anji-2024", 50_000),
                                          ("lianshui-2020", 3_000)])
def test_simulated_mean_payout_is_within_two_percent_of_the_expected(name, members):
    d = fitted(name, members=members)
    sim = simulate(d, 3000, seed=7)
    mean = float(sim.totals_fen.mean())
    assert abs(mean - d.expected_payout_fen) / d.expected_payout_fen < 0.02, (
        mean, d.expected_payout_fen)
    assert sim.checked >= 100  # the rule decided a sample of the draws


def test_simulation_reports_the_risk_and_the_month():
    d = fitted(members=2_000)
    doc = simulate(d, 2000, seed=3).to_json()
    assert doc["years"] == 2000
    p = doc["payout_fen"]
    assert p["p50"] <= p["p90"] <= p["p99"]
    # a village of 2,000 with a 10% reserve runs out in some years, late in the year
    assert 0 < doc["p_exhaust"] < 0.5
    assert doc["month_exhaust"] in range(6, 13)
    assert abs(sum(doc["exhaust_by_month"]) - doc["p_exhaust"]) < 1e-3
    band = doc["balance_fen"]
    assert band["p5"][-1] <= band["p50"][-1] <= band["p95"][-1]
    # the same seed gives the same years
    assert simulate(d, 2000, seed=3).to_json() == doc


def test_a_scheme_whose_cap_binds_is_simulated_claim_by_claim_and_agrees_with_the_rule():
    base = preset("anji-2024")
    tight = replace(base, benefit=replace(base.benefit, annual_cap_fen=base.benefit.max_per_claim_fen))
    d = fitted(scheme=tight, members=30_000, funds_fen=30_000 * 40_000)
    sim = simulate(d, 300, seed=11)  # members with two claims go through `capped`
    assert sim.checked > 300


def test_a_small_pool_s_picture_reads_in_yuan():
    """/测算 on a pool of a few dozen members: the picture's axes in 万元 would all read 0;
    below 100,000 yuan of funds they are in yuan, every tick a different number."""
    from core.design.outputs import chart

    small = fitted(members=40)
    sim = simulate(small, 500, seed=1)
    drawn: list[str] = []
    assert chart(small, sim, drawn=drawn)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "全年补助总额的分布（元）" in drawn and not any("万元" in t for t in drawn)
    ticks = [t for t in drawn if t.replace(",", "").lstrip("-").isdigit() and t != "0"]
    assert len(ticks) >= 8 and len(set(ticks)) == len(ticks)
    assert "-0" not in drawn
    big: list[str] = []
    chart(fitted(members=20_000), simulate(fitted(members=20_000), 200, seed=1), drawn=big)
    assert "全年补助总额的分布（万元）" in big


def test_the_rule_catches_a_simulation_that_drifts(monkeypatch):
    """If the vectorised payout stops following adjudicate(), the simulation fails."""
    d = fitted(members=5_000)
    monkeypatch.setattr(simulate_module, "payout",
                        lambda E, O, threshold: np.where(O >= threshold, E, 0))  # forgets O
    with pytest.raises(RuleDrift, match="the rule"):
        simulate(d, 200, seed=1)


def test_the_check_names_a_wrong_amount():
    d = fitted(members=5_000)
    s = Stratum("resident", False, 1.0, d.scheme.claims.thresholds_fen["resident"])
    g = d.model.codes.index("FM19")
    right = min(d.quotas_fen["FM19"], 5_000_000)
    assert check_against_rule(d, [(s, g, 5_000_000, right, ())]) == 1
    with pytest.raises(RuleDrift, match="FM19"):
        check_against_rule(d, [(s, g, 5_000_000, right + 1, ())])
    # below the threshold the rule pays nothing, and so must the simulation
    assert check_against_rule(d, [(s, g, 100_000, 0, ())]) == 1
    # the annual cap: what earlier claims used is taken off
    cap = d.scheme.benefit.annual_cap_fen
    assert check_against_rule(d, [(s, g, 5_000_000, min(right, 1000), (cap - 1000,))]) == 1


# ---------------------------------------------------------------------------------------------
# The command line

def cli(tmp_path: Path, *args: str, db_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATA_DIR=str(tmp_path / "data"))
    if db_url:
        env["HUZHU_DATABASE_URL"] = db_url
    return subprocess.run([sys.executable, "-m", "bot.cli", "scheme", "design", *args],
                          capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)


def test_scheme_design_writes_quotas_workbook_and_picture(tmp_path):
    out = tmp_path / "out"
    r = cli(tmp_path, "--scheme", str(SCHEMES / "anji-2024.yaml"), "--members", "20000",
            "--simulate", "500", "--seed", "5", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"groups", "scale", "funds_fen", "reserve_fen", "fee_fen", "expected_payout_fen",
            "simulation"} <= set(doc)
    assert doc["groups"] == 628 and doc["funds_fen"] == 20_000 * 8_000
    assert doc["reserve_fen"] == doc["funds_fen"] // 10
    sim = doc["simulation"]
    assert sim["years"] == 500 and 0 <= sim["p_exhaust"] <= 1
    assert set(sim["payout_fen"]) >= {"p50", "p90", "p99"} and "month_exhaust" in sim
    # quotas.csv: every group, and a scheme file takes it as it is
    table = read_quota_table(out / "quotas.csv")
    assert len(table.quotas_fen) == 628 and not table.expanded
    scheme_text = (SCHEMES / "anji-2024.yaml").read_text(encoding="utf-8").replace(
        "anji-2024-quotas.csv", "quotas.csv")
    (out / "anji.yaml").write_text(scheme_text, encoding="utf-8")
    assert len(load_scheme(out / "anji.yaml").benefit.quotas_fen) == 628
    # the workbook: inputs, quotas, simulation
    from openpyxl import load_workbook

    wb = load_workbook(out / "design.xlsx")
    assert wb.sheetnames == ["测算输入", "病种定额", "模拟结果"]
    assert wb["病种定额"].max_row == 629
    assert wb["病种定额"]["B2"].value == "心脏移植"
    # the picture: a PNG drawn with a Chinese face
    from PIL import Image

    image = Image.open(out / "design.png")
    assert image.format == "PNG" and image.size == (1400, 760)
    colours = image.convert("RGB").getcolors(1 << 20)
    assert len(colours) > 20  # drawn, not blank


def test_a_small_risk_is_not_printed_as_none(tmp_path):
    """4 years in 10,000 run out in December: the summary says 0.04%, not "0.0%, mostly in
    December"."""
    out = cli(tmp_path, "--scheme", str(SCHEMES / "anji-2024.yaml"), "--members", "20000",
              "--simulate", "10000", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert "基金用完的概率 0.04%，用完时多在 12 月" in out.stdout
    from core.design.outputs import percent

    assert [percent(p) for p in (0.0, 0.00004, 0.0004, 0.012, 0.375)] == [
        "0%", "不到 0.01%", "0.04%", "1.2%", "37.5%"]


def test_scheme_design_prints_a_summary_without_writing(tmp_path):
    r = cli(tmp_path, "--scheme", str(SCHEMES / "tangqiao-2020.yaml"), "--members", "3000",
            "--simulate", "200")
    assert r.returncode == 0, r.stderr
    assert "病种 628 个有定额" in r.stdout and "基金用完的概率" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] or not any(
        p.suffix in (".csv", ".xlsx", ".png") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("args,weights,words", [
    (["--funds", "0"], None, "--funds"),
    (["--funds", "-5"], None, "--funds"),
    (["--members", "0"], None, "--members"),
    (["--members", "-3"], None, "--members"),
    (["--reserve", "0.5"], None, "--reserve"),
    (["--reserve", "-0.1"], None, "--reserve"),
    (["--reserve", "lots"], None, "--reserve"),
    (["--simulate", "0"], None, "--simulate"),
    ([], "code,weight\nFM19,2.0\nQQ99,1.0\n", "第3行"),  # unknown code
    ([], "code,weight\nFM19,-2.0\n", "第2行"),  # negative weight
    ([], "code,weight\nFM19,\n", "第2行"),  # missing weight
    ([], "code,weight\nFM19,2.0\nOR19,1\nFM19,3\n", "第4行"),  # duplicate
    ([], "code,weight,rate\nFM19,2.0,-1\n", "第2行"),  # negative rate
    ([], "drg,weight\nFM19,2\n", "第1行"),  # header
    ([], "code,weight,rate\nFM19,2.0,2\nOR19,1,\n", "第3行"),  # a rate on some rows only
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, weights, words):
    out = tmp_path / "out"
    extra = []
    if weights is not None:
        (tmp_path / "w.csv").write_text(weights, encoding="utf-8")
        extra = ["--weights", str(tmp_path / "w.csv")]
    # the option under test comes last: it is the one argparse keeps
    r = cli(tmp_path, "--scheme", str(SCHEMES / "tangqiao-2020.yaml"), "--members", "3000",
            "--simulate", "50", "--out", str(out), *extra, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    if weights is not None:
        assert "w.csv" in lines[0]
    assert not out.exists()
    assert r.stdout == ""


def test_a_good_weights_file_with_rates_is_used(tmp_path):
    """A city's table: every group with its weight and admissions per 1,000; the designer
    uses its rates (more admissions: lower quotas for the same money)."""
    from core.scheme import national_groups

    rows = [f"{code},{1.0 + (i % 7) / 3:.3f},{0.15 if code[0] != 'A' else 0.01}"
            for i, code in enumerate(national_groups())]
    (tmp_path / "w.csv").write_text("# a city's weights\ncode,weight,rate\n" + "\n".join(rows),
                                    encoding="utf-8")
    args = ("--scheme", str(SCHEMES / "tangqiao-2020.yaml"), "--members", "3000", "--json")
    r = cli(tmp_path, *args, "--weights", str(tmp_path / "w.csv"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["groups"] == 628 and "w.csv（628 个病种）" in doc["weights"]
    assert abs(doc["expected_claims"] / 3000 - 0.0935) < 0.05  # rates of ~94 per 1,000 used
    (tmp_path / "w.csv").write_text("code,weight,rate\n" + "\n".join(
        row.rsplit(",", 1)[0] + ",0.3" for row in rows), encoding="utf-8")
    busier = json.loads(cli(tmp_path, *args, "--weights", str(tmp_path / "w.csv")).stdout)
    assert busier["scale"] < doc["scale"]


def test_options_that_need_a_pool_are_refused_with_a_scheme(tmp_path):
    for extra in (["--from-claims"], ["--backtest"]):
        r = cli(tmp_path, "--scheme", str(SCHEMES / "tangqiao-2020.yaml"), "--members", "10",
                *extra)
        assert r.returncode == 2 and extra[0] in r.stderr and "--pool" in r.stderr
    r = cli(tmp_path, "--scheme", str(SCHEMES / "tangqiao-2020.yaml"))
    assert r.returncode == 2 and "--members" in r.stderr


# ---------------------------------------------------------------------------------------------
# A stored pool: members, claims, back-test

def _pool_with_claims(db, app_ctx, n_households: int = 100):
    from core.models import ClaimStatus
    from tests.factories import M, local_today, make_claim, make_household

    today = local_today()
    with db.session() as s:
        homes = [make_household(s, app_ctx.vault, [M(f"村民{i}"), M(f"家属{i}", "spouse")],
                                village=("示范镇/东村" if i % 2 else "示范镇/西村"))
                 for i in range(n_households)]
        for i, hh in enumerate(homes[:12]):
            make_claim(s, hh, hh.members[0], status="paid", drg_code=("FM19", "ES31", "OR19")[i % 3],
                       out_of_pocket_fen=(900_000, 500_000, 400_000)[i % 3],
                       admission_date=today - timedelta(days=20 + i),
                       discharge_date=today - timedelta(days=15 + i), insurance="resident",
                       amount_fen=(800_000, 200_000, 40_000)[i % 3])
        # rejected by the rule alone: no quota then
        make_claim(s, homes[13], homes[13].members[0], status="rejected", drg_code="GZ15",
                   out_of_pocket_fen=600_000, admission_date=today - timedelta(days=5),
                   discharge_date=today - timedelta(days=3), insurance="resident",
                   reasons=["unknown_drg"])
        assert ClaimStatus.paid


def test_design_from_a_pools_claims_with_a_backtest(tmp_path, db, db_url, app_ctx):
    _pool_with_claims(db, app_ctx)
    r = cli(tmp_path, "--pool", "demo", "--from-claims", "--backtest", "--simulate", "200",
            "--json", db_url=db_url)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["members"] == 200 and doc["groups"] == 628
    assert "本资金池已核准的 12 笔补助" in doc["weights"]
    lines = {line["village"]: line for line in doc["backtest"]}
    assert set(lines) == {"示范镇/东村", "示范镇/西村", "示范镇/南村"}
    assert sum(line["claims"] for line in lines.values()) == 13
    assert sum(line["paid_fen"] for line in lines.values()) == 4 * (800_000 + 200_000 + 40_000)
    assert sum(line["proposed_fen"] for line in lines.values()) > 0
    assert lines["示范镇/南村"] == {"village": "示范镇/南村", "claims": 0, "paid_fen": 0,
                                  "proposed_fen": 0}
    # villages and totals only: no member's name, ID or claim number
    assert "村民" not in r.stdout and "家属" not in r.stdout and '"C7' not in r.stdout
    # and the text form names the villages
    r = cli(tmp_path, "--pool", "demo", "--from-claims", "--backtest", db_url=db_url)
    assert r.returncode == 0 and "示范镇/东村" in r.stdout and "按新定额" in r.stdout
    # and says which year's claims it replayed
    year = doc["backtest_year"]
    start, end = (date.fromisoformat(year[k]) for k in ("start", "end"))
    assert f"回测：{start.year}年{start.month}月{start.day}日至{end.year}年{end.month}月{end.day}日" \
        in r.stdout


def test_an_unknown_pool_is_refused(tmp_path, db, db_url, app_ctx):
    r = cli(tmp_path, "--pool", "nowhere", db_url=db_url)
    assert r.returncode == 2 and "--pool nowhere" in r.stderr and "demo" in r.stderr


def test_a_pool_with_nobody_paid_up_asks_for_the_members(tmp_path, db, db_url, app_ctx):
    r = cli(tmp_path, "--pool", "demo", db_url=db_url)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "huzhu: --pool demo: 本年度还没有已缴费的参加人员；请用 --members 给出参加人数\n"
    r = cli(tmp_path, "--pool", "demo", "--members", "3000", db_url=db_url)
    assert r.returncode == 0 and r.stdout.startswith("测算：示范镇，参加 3,000 人，"), r.stderr


# ---------------------------------------------------------------------------------------------
# /测算 in chat

def test_pool_admin_gets_the_summary_and_the_picture(villager, db, app_ctx, cfg, bot):
    from core.admins import create_invite
    from tests.factories import M, make_household

    cfg.values["PUBLIC_URL"] = bot.url
    with db.session() as s:
        for i in range(20):
            make_household(s, app_ctx.vault, [M(f"村民{i}"), M(f"家属{i}", "spouse")],
                           village="示范镇/东村")
        pool_code = create_invite(s, "pool_admin", "cli:test", pool="demo")
        village_code = create_invite(s, "village_admin", "cli:test", village="示范镇/东村")
    assert "绑定成功" in villager.text("o_pool_design", f"/绑定 {pool_code}").reply
    reply = villager.text("o_pool_design", "/测算").reply
    assert "【示范镇】测算" in reply and "参加 40 人" in reply and "基金用完的概率" in reply
    assert "4,000.00 元" in reply  # 40 members × 100.00
    # the command for the full table names this pool, ready to copy
    assert "huzhu scheme design --pool demo --simulate 10000" in reply
    url = next(w for w in reply.split() if "/design/" in w).removeprefix("图：")
    assert url.startswith(bot.url) and url.endswith(".png")
    picture = requests.get(url, timeout=60)
    assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"
    assert picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no-store" in picture.headers["Cache-Control"]
    # a forged link shows nothing
    forged = url.replace("/design/", "/design/x")
    assert requests.get(forged, timeout=10).status_code == 404

    # a village administrator may not; the refusal is audited
    assert "绑定成功" in villager.text("o_village_design", f"/绑定 {village_code}").reply
    refused = villager.text("o_village_design", "/测算").reply
    assert "不能使用“/测算”" in refused
    from core.models import AuditLog

    with db.session() as s:
        row = s.scalar(select(AuditLog).where(AuditLog.action == "admin.refused",
                                              AuditLog.actor == "o_village_design"))
        assert row is not None


def test_design_with_no_paid_members_says_so(villager, db, app_ctx, cfg, bot):
    from core.admins import create_invite

    with db.session() as s:
        code = create_invite(s, "super", "cli:test")
    assert "绑定成功" in villager.text("o_super_design", f"/绑定 {code}").reply
    reply = villager.text("o_super_design", "/测算").reply
    assert "没有已缴费的参加人员" in reply


def test_a_pools_members_insurance_mix_and_continuing_share(rules_db, tmp_path, app_ctx):
    """Paid members of the running year by insurance type, and the share of them paid the
    year before too (the continuing members the bonus applies to)."""
    import shutil as sh
    from datetime import date

    from core.catalog import ensure_catalog
    from core.design.pool import find_pool, pool_facts
    from core.scheme import store_scheme
    from tests.factories import M, make_household

    folder = tmp_path / "schemes"
    folder.mkdir()
    sh.copy(SCHEMES / "anji-2024-quotas.csv", folder)
    text = (SCHEMES / "anji-2024.yaml").read_text(encoding="utf-8")
    (folder / "a24.yaml").write_text(text, encoding="utf-8")
    (folder / "a25.yaml").write_text(
        text.replace("2025-07-31", "2026-07-31").replace("2024-08-01", "2025-08-01")
        .replace("2024-05-20", "2025-05-20").replace("2024-07-20", "2025-07-20"),
        encoding="utf-8")
    with rules_db.session() as s:
        ensure_catalog(s)
        y24 = store_scheme(s, load_scheme(folder / "a24.yaml"))
        y25 = store_scheme(s, load_scheme(folder / "a25.yaml"))
        people = [M("甲"), M("乙", "spouse", "employee"), M("丙", "child"), M("丁", "parent")]
        make_household(s, app_ctx.vault, people, village="天荒坪镇/大溪村", year=y25)
        # two of the four were paid members in 2024 as well (same ID numbers)
        make_household(s, app_ctx.vault, [M("甲", id_number=people[0].id_number),
                                          M("乙", "spouse", "employee", id_number=people[1].id_number)],
                       village="天荒坪镇/五鹤村", year=y24)
        facts = pool_facts(s, find_pool(s, "anji"), date(2025, 9, 1))
    assert facts.members == 4
    assert facts.mix == {"resident": 0.75, "employee": 0.25}
    assert facts.continuing_share == 0.5
    # a design for this pool splits members by it: continuing ones get the 10% bonus
    d = design(facts.scheme, default_weights(quoted_groups(facts.scheme)),
               quoted_groups(facts.scheme), 4000, 4000 * 8000, Decimal("0.10"), facts.mix,
               facts.continuing_share)
    assert {(s.insurance, s.continuing) for s in d.model.strata} == {
        ("resident", True), ("resident", False), ("employee", True), ("employee", False)}
    code = "FM19"
    i = d.model.codes.index(code)
    q = d.quotas_fen[code]
    assert d.effective[True][i] == min(max(round(q * 1.1), 30000), 5000000)

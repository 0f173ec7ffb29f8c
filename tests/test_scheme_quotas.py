"""Quota tables by group, ADRG, MDC and default (`*`), exclusions with a reason, and the
claims they decide: a group a scheme covers is paid whatever row gave its quota; a group no row
reaches (and an invalid code) stays `unknown_drg`, as in the files written before."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.adjudication import ClaimFacts, History, Rules, adjudicate
from core.catalog import CHS_DRG_11, parse_catalog
from core.scheme import SchemeError, load_scheme, read_quota_table
from tests.test_scheme import GOOD, write_scheme

PRESETS = Path(__file__).resolve().parent.parent / "config" / "schemes"
NATIONAL = dict(parse_catalog(CHS_DRG_11))


def table(tmp_path: Path, text: str):
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")
    return read_quota_table(path)


def decide(scheme, drg: str, out_of_pocket_fen: int):
    facts = ClaimFacts(1, drg, out_of_pocket_fen, scheme.year.start, scheme.year.start,
                       "resident")
    return adjudicate(facts, Rules.from_scheme(scheme), History(True, False))


def test_the_most_specific_row_applies_group_adrg_mdc_default(tmp_path):
    t = table(tmp_path, "drg_code,quota\nFM19,8000\nFM4,6000\nF,3000\n*,1000\n")
    assert t.quotas_fen["FM19"] == 800000  # the group's own row
    assert t.quotas_fen["FM43"] == t.quotas_fen["FM45"] == 600000  # ADRG FM4
    assert t.quotas_fen["FM29"] == 300000  # FM2 is another ADRG: MDC F
    assert t.quotas_fen["FB19"] == 300000  # MDC F
    assert t.quotas_fen["GZ15"] == 100000  # everything else
    assert len(t.quotas_fen) == 628 and not t.excluded
    assert "FM19" not in t.expanded and "GZ15" in t.expanded


def test_adrg_row_reaches_only_its_own_groups(tmp_path):
    t = table(tmp_path, "drg_code,quota\nES3,2000\n")
    assert set(t.quotas_fen) == {c for c in NATIONAL if c.startswith("ES3")}
    assert t.quotas_fen["ES31"] == 200000


def test_an_excluded_group_has_no_quota_and_keeps_its_reason(tmp_path):
    t = table(tmp_path, "drg_code,quota,note\nOB19,-,由生育保险支付\nO,800,\n*,1000,\n")
    assert "OB19" not in t.quotas_fen and t.excluded == {"OB19": "由生育保险支付"}
    assert t.quotas_fen["OR19"] == 80000
    assert len(t.quotas_fen) == 627


def test_an_mdc_may_be_excluded_and_a_group_of_it_still_named(tmp_path):
    t = table(tmp_path, "drg_code,quota,note\nY,不补助,另有专项救助\nYR29,500,\n")
    assert t.quotas_fen == {"YR29": 50000}
    assert set(t.excluded) == {c for c in NATIONAL if c[0] == "Y"} - {"YR29"}
    assert set(t.excluded.values()) == {"另有专项救助"}


@pytest.mark.parametrize("text,line,word", [
    ("drg_code,quota,note\nOB19,-,\n", 2, "原因"),
    ("drg_code,quota\nFQ9,1000\n", 2, "ADRG FQ9"),
    ("drg_code,quota\nFM19,1000\n9,500\n", 3, "MDC 9"),
    ("drg_code,quota\n*,1000\n*,2000\n", 3, "重复"),
    ("drg_code,quota,note\nFM19,1000\n", 2, "三列"),
    ("drg_code,quota\nF,-1\n", 2, "定额"),
])
def test_bad_rows_name_the_line(tmp_path, text, line, word):
    with pytest.raises(SchemeError) as err:
        table(tmp_path, text)
    assert f"q.csv 第{line}行" in str(err.value) and word in str(err.value), str(err.value)


def test_a_file_without_defaults_keeps_its_meaning(tmp_path):
    """An old table naming a few groups: the others stay without a quota, `unknown_drg`."""
    scheme = load_scheme(write_scheme(tmp_path, GOOD))
    assert len(scheme.benefit.quotas_fen) == 3 and not scheme.benefit.quota_expanded
    decision = decide(scheme, "GZ15", 5_000_000)
    assert decision.reasons == ("unknown_drg",)
    assert decide(scheme, "FM19", 5_000_000).amount_fen == 800000


def test_an_invalid_code_stays_unknown_drg_under_a_default(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path, GOOD, "drg_code,quota\n*,1000\n"))
    assert len(scheme.benefit.quotas_fen) == 628
    assert decide(scheme, "ZZ99", 5_000_000).reasons == ("unknown_drg",)
    assert decide(scheme, "GZ15", 5_000_000).amount_fen == 100000


def test_an_excluded_group_is_refused_unknown_drg(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path, GOOD,
                                      "drg_code,quota,note\nOB19,-,由生育保险支付\n*,1000,\n"))
    assert dict(scheme.benefit.quota_excluded) == {"OB19": "由生育保险支付"}
    assert decide(scheme, "OB19", 5_000_000).reasons == ("unknown_drg",)
    # kept through the stored rules
    from core.scheme import scheme_from_rules

    assert scheme_from_rules(scheme.to_rules()) == scheme


def test_tangqiao_pays_a_group_outside_its_example_table():
    """GZ15 with 50,000 out of pocket: once refused unknown_drg, now paid by MDC G's row."""
    scheme = load_scheme(PRESETS / "tangqiao-2020.yaml")
    decision = decide(scheme, "GZ15", 5_000_000)
    assert decision.approved and decision.amount_fen == scheme.benefit.quotas_fen["GZ15"] > 0

"""Scheme files: validation with file, line and key in every error; presets; storing in the DB."""
from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog import CHS_DRG_11, SAMPLE_CATALOG, import_catalog, parse_catalog
from core.config import SCHEMES_DIR
from core.models import AuditLog, Pool, Quota, SchemeYear, Village
from core.scheme import (SchemeError, current_scheme_year, enrolment_scheme_year, load_scheme,
                         previous_scheme_year, scheme_from_rules, scheme_of, scheme_year_on,
                         store_scheme)

PRESET_NAMES = ("anji-2024", "tangqiao-2020", "haimen-2023", "zhangjiagang", "lianshui-2020",
                "demo")


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# A valid scheme to break one line at a time.

GOOD = """\
pool: {code: test, name: 测试镇, level: town}
villages: [测试镇/一村, 测试镇/二村]
year: {start: 2024-08-01, end: 2025-07-31}
enrolment: {opens: 2024-05-20, closes: 2024-07-20}
contribution:
  per_person: "80.00"
  shares: {personal: "30.00", collective: "50.00"}
  subsidized: [低保, 特困]
  excluded: []
claims:
  thresholds: {resident: "3500.00", employee: "2500.00", uninsured: "7000.00"}
  exclusions: [non_disease, work_injury, crime, third_party_liable, non_designated_hospital, abroad]
  review_working_days: 5
benefit:
  quotas: test-quotas.csv
  min_per_claim: "300.00"
  max_per_claim: "50000.00"
  annual_cap: "100000.00"
  continuous_bonus: "0.10"
payout: {day: 5}
service_fee: {rate: "0.025", every: quarter}
disclosure: {day: 1, objection_days: 0}
"""
QUOTAS = "# illustrative\ndrg_code,quota\nFM19,8000.00\nAA19,40000\nES31,2000.50\n"


def write_scheme(folder: Path, text: str = GOOD, quotas: str = QUOTAS) -> Path:
    (folder / "test-quotas.csv").write_text(quotas, encoding="utf-8")
    path = folder / "test.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_scheme_reads_every_section_in_fen(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path))
    assert (scheme.pool.code, scheme.pool.name, scheme.pool.level) == ("test", "测试镇", "town")
    assert scheme.villages == ("测试镇/一村", "测试镇/二村")
    assert (scheme.year.start, scheme.year.end) == (date(2024, 8, 1), date(2025, 7, 31))
    assert scheme.enrolment.is_open(date(2024, 7, 20)) and not scheme.enrolment.is_open(
        date(2024, 7, 21))
    assert scheme.contribution.per_person_fen == 8000
    assert dict(scheme.contribution.shares_fen) == {"personal": 3000, "collective": 5000}
    assert dict(scheme.claims.thresholds_fen) == {"resident": 350000, "employee": 250000,
                                                  "uninsured": 700000}
    assert dict(scheme.benefit.quotas_fen) == {"FM19": 800000, "AA19": 4000000, "ES31": 200050}
    assert (scheme.benefit.min_per_claim_fen, scheme.benefit.max_per_claim_fen,
            scheme.benefit.annual_cap_fen) == (30000, 5000000, 10000000)
    assert scheme.benefit.continuous_bonus == Decimal("0.10")
    assert scheme.service_fee.rate == Decimal("0.025") and scheme.service_fee.every == "quarter"
    assert scheme.payout.day == 5 and scheme.disclosure.day == 1
    assert scheme.claims.review_working_days == 5


def test_rules_json_round_trip(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path))
    rules = json.loads(json.dumps(scheme.to_rules()))
    assert rules["contribution"]["per_person_fen"] == 8000
    assert rules["benefit"]["quotas_fen"]["ES31"] == 200050
    assert rules["year"] == {"start": "2024-08-01", "end": "2025-07-31"}
    assert scheme_from_rules(rules) == scheme


def test_show_illness_defaults_to_true_and_survives_the_stored_rules(tmp_path):
    assert load_scheme(write_scheme(tmp_path)).disclosure.show_illness is True
    hidden = load_scheme(write_scheme(tmp_path, GOOD.replace(
        "objection_days: 0}", "objection_days: 0, show_illness: false}")))
    assert hidden.disclosure.show_illness is False
    rules = json.loads(json.dumps(hidden.to_rules()))
    assert rules["disclosure"]["show_illness"] is False
    assert scheme_from_rules(rules) == hidden
    del rules["disclosure"]["show_illness"]  # rules stored before the key existed
    assert scheme_from_rules(rules).disclosure.show_illness is True
    for name in PRESET_NAMES:  # the seeds publish the illness: every preset keeps the default
        assert load_scheme(SCHEMES_DIR / f"{name}.yaml").disclosure.show_illness is True


def test_member_shares_subsidized_and_excluded_categories(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path))
    assert scheme.contribution.member_shares(None) == {"personal": 3000, "collective": 5000}
    assert scheme.contribution.member_shares("低保") == {"collective": 8000}
    haimen = load_scheme(SCHEMES_DIR / "haimen-2023.yaml")
    assert not haimen.contribution.may_join("特困")
    with pytest.raises(ValueError):
        haimen.contribution.member_shares("低保")
    assert haimen.contribution.member_shares(None) == {"personal": 4000, "collective": 2000,
                                                       "charity": 2000}


# (what to replace in GOOD, by what, the line and key the error must name, a word it must say).
# GOOD's lines: 1 pool, 2 villages, 3 year, 4 enrolment, 6 per_person, 7 shares, 8 subsidized,
# 9 excluded, 11 thresholds, 12 exclusions, 13 review_working_days, 15 quotas, 16 min_per_claim,
# 17 max_per_claim, 18 annual_cap, 19 continuous_bonus, 20 payout, 21 service_fee, 22 disclosure
BREAKS = [
    ('per_person: "80.00"', "per_person: 80.00", 6, "contribution.per_person", "引号"),
    ('per_person: "80.00"', "per_person: 80", 6, "contribution.per_person", "引号"),
    ('per_person: "80.00"', 'per_person: "eighty"', 6, "contribution.per_person", "80.00"),
    ('per_person: "80.00"', 'per_person: "80.005"', 6, "contribution.per_person", "两位小数"),
    ('per_person: "80.00"', 'per_person: "0.00"', 6, "contribution.per_person", "大于 0"),
    ('collective: "50.00"', 'collective: "40.00"', 7, "contribution.shares", "per_person"),
    ('{personal: "30.00", collective: "50.00"}', '{collective: "80.00"}', 7,
     "contribution.shares", "缺少 personal"),
    ('collective: "50.00"', 'collective: "40.00", friends: "10.00"', 7,
     "contribution.shares.friends", "未知"),
    ("subsidized: [低保, 特困]", "subsidized: [低保, 低保]", 8, "contribution.subsidized[1]",
     "重复"),
    ("excluded: []", "excluded: [特困]", 9, "contribution.excluded", "特困"),
    ('uninsured: "7000.00"}', 'other: "7000.00"}', 11, "claims.thresholds.other", "未知"),
    (', employee: "2500.00"', "", 11, "claims.thresholds", "缺少 employee"),
    ("crime, third_party", "weather, third_party", 12, "claims.exclusions[2]", "weather"),
    ("review_working_days: 5", "review_working_days: five", 13, "claims.review_working_days",
     "整数"),
    ("end: 2025-07-31", "end: 2024-08-01", 3, "year.end", "晚于"),
    ("end: 2025-07-31", "end: 2026-07-31", 3, "year.end", "一年"),
    ("end: 2025-07-31", "end: 2025-02-30", 3, "year.end", "不存在"),
    ("closes: 2024-07-20", "closes: 2025-08-01", 4, "enrolment.closes", "年度结束"),
    ("closes: 2024-07-20", "closes: 2024-05-01", 4, "enrolment.closes", "早于"),
    ("opens: 2024-05-20", 'opens: "today+3w"', 4, "enrolment.opens", "today+30d"),
    ("quotas: test-quotas.csv", "quotas: missing.csv", 15, "benefit.quotas", "找不到"),
    ('min_per_claim: "300.00"', 'min_per_claim: "60000.00"', 17, "benefit.max_per_claim",
     "最低"),
    ('annual_cap: "100000.00"', 'annual_cap: "40000.00"', 18, "benefit.annual_cap", "单次最高"),
    ('continuous_bonus: "0.10"', "continuous_bonus: 0.1", 19, "benefit.continuous_bonus",
     "引号"),
    ('continuous_bonus: "0.10"', 'continuous_bonus: "ten"', 19, "benefit.continuous_bonus",
     "小数"),
    ('continuous_bonus: "0.10"', 'continuous_bonus: "1.5"', 19, "benefit.continuous_bonus",
     "之间"),
    ('rate: "0.025"', "rate: 0.025", 21, "service_fee.rate", "引号"),
    ("every: quarter", "every: weekly", 21, "service_fee.every", "quarter"),
    ("payout: {day: 5}", "payout: {day: 31}", 20, "payout.day", "1–28"),
    ("payout: {day: 5}", "payout: {day: 0}", 20, "payout.day", "1–28"),
    ("objection_days: 0", "objection_days: -1", 22, "disclosure.objection_days", "不小于 0"),
    ("{day: 1, objection", '{day: "first", objection', 22, "disclosure.day", "整数"),
    ("objection_days: 0}", "objection_days: 0, show_illness: maybe}", 22,
     "disclosure.show_illness", "true 或 false"),
    ("objection_days: 0}", 'objection_days: 0, show_illness: "false"}', 22,
     "disclosure.show_illness", "true 或 false"),
    ("level: town", "level: province", 1, "pool.level", "county"),
    ("code: test", "code: Test Pool", 1, "pool.code", "小写"),
    ("测试镇/二村]", "二村]", 2, "villages[1]", "镇/村"),
    ("测试镇/二村]", "测试镇/一村]", 2, "villages[1]", "重复"),
    ("level: town", "level: village", 2, "villages", "一个村"),
    ("payout: {day: 5}", "payout: {day: 5}\nlottery: yes", 21, "lottery", "未知"),
    ("service_fee: {rate", "service_fees: {rate", 21, "service_fees", "未知"),
    ("year: {start: 2024-08-01, end: 2025-07-31}", "year: 2024", 3, "year", "键值表"),
]


@pytest.mark.parametrize("old,new,line,key,word", BREAKS,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(BREAKS)])
def test_each_wrong_value_names_file_line_and_key(tmp_path, old, new, line, key, word):
    assert old in GOOD
    with pytest.raises(SchemeError) as err:
        load_scheme(write_scheme(tmp_path, GOOD.replace(old, new, 1)))
    message = str(err.value)
    assert message.startswith(f"test.yaml 第{line}行 {key}: "), message
    assert word in message, message


def test_line_numbers_point_at_the_value(tmp_path):
    text = GOOD.replace('per_person: "80.00"', "per_person: 80.0")
    with pytest.raises(SchemeError) as err:
        load_scheme(write_scheme(tmp_path, text))
    assert str(err.value).startswith('test.yaml 第6行 contribution.per_person: 应为带引号的金额')


def test_missing_section_is_named(tmp_path):
    text = GOOD.replace("payout: {day: 5}\n", "")
    with pytest.raises(SchemeError, match=r"test.yaml 第1行: 缺少 payout"):
        load_scheme(write_scheme(tmp_path, text))


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = GOOD.replace("  excluded: []", "  excluded: [低保")
    with pytest.raises(SchemeError, match=r"test.yaml 第1\d行: YAML"):
        load_scheme(write_scheme(tmp_path, text))


@pytest.mark.parametrize("quotas,line,word", [
    ("drg_code,amount\nFM19,8000.00\n", 1, "drg_code,quota"),
    ("# c\ndrg_code,quota\nFM19,8000.00\nAA19,lots\n", 4, "金额"),
    ("drg_code,quota\nFM19,8000.00\nFM19,9000.00\n", 3, "重复"),
    ("drg_code,quota\nFM19,8000.00,extra\n", 2, "两列"),
    ("drg_code,quota\nfm 19,8000.00\n", 2, "病种代码"),
    ("drg_code,quota\nFM19,0\n", 2, "大于 0"),
    ("# only a comment\n", 1, "空"),
])
def test_quota_table_errors_name_the_csv_line_and_the_scheme_key(tmp_path, quotas, line, word):
    path = write_scheme(tmp_path, quotas=quotas)
    with pytest.raises(SchemeError) as err:
        load_scheme(path)
    message = str(err.value)
    assert message.startswith(f"test-quotas.csv 第{line}行"), message
    assert "test.yaml 第15行 benefit.quotas" in message
    assert word in message


def test_quota_table_tolerates_bom_crlf_and_comments(tmp_path):
    quotas = ("\ufeff# note\r\ndrg_code,quota\r\n\r\nFM19,8000.00\r\n# more\r\n"
              'AA19,"40,000.00"\r\n')
    scheme = load_scheme(write_scheme(tmp_path, quotas=quotas))
    assert dict(scheme.benefit.quotas_fen) == {"FM19": 800000, "AA19": 4000000}


def test_relative_dates(tmp_path):
    text = GOOD.replace("year: {start: 2024-08-01, end: 2025-07-31}",
                        'year: {start: "today-30d", end: "today+334d"}').replace(
        "enrolment: {opens: 2024-05-20, closes: 2024-07-20}",
        'enrolment: {opens: "today", closes: "today+10d"}')
    scheme = load_scheme(write_scheme(tmp_path, text), today=date(2025, 3, 1))
    assert scheme.year.start == date(2025, 1, 30)
    assert scheme.year.end == date(2026, 1, 29)
    assert scheme.enrolment.opens == date(2025, 3, 1)
    assert scheme.enrolment.closes == date(2025, 3, 11)
    assert scheme.to_rules()["year"]["start"] == "2025-01-30"  # stored resolved


# ---------------------------------------------------------------------------------------------
# The presets

@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_loads_and_uses_catalogue_groups(name):
    scheme = load_scheme(SCHEMES_DIR / f"{name}.yaml")
    assert scheme.benefit.quotas_file == f"{name}-quotas.csv"
    # every group of the national catalogue has a quota (全病种覆盖), or is excluded with a reason
    national = dict(parse_catalog(CHS_DRG_11))
    assert len(national) == 628
    assert set(scheme.benefit.quotas_fen) | set(scheme.benefit.quota_excluded) == set(national)
    assert all(scheme.benefit.quota_excluded.values())
    # major-disease groups get more than common ones (大病大补，小病小补)
    quotas = scheme.benefit.quotas_fen
    assert quotas["AA19"] > quotas["FM19"] > quotas["ES35"]
    assert max(quotas.values()) <= scheme.benefit.max_per_claim_fen
    assert sum(scheme.contribution.shares_fen.values()) == scheme.contribution.per_person_fen


def test_preset_quota_csvs_say_the_amounts_are_illustrative():
    for name in PRESET_NAMES:
        head = (SCHEMES_DIR / f"{name}-quotas.csv").read_text(encoding="utf-8").splitlines()[:4]
        assert any("ILLUSTRATIVE" in line for line in head if line.startswith("#")), name


def test_sample_catalogue_is_the_national_catalogue_s_lines():
    national = dict(parse_catalog(CHS_DRG_11))
    sample = dict(parse_catalog(SAMPLE_CATALOG))
    assert 20 <= len(sample) < len(national)
    assert all(national[code] == name for code, name in sample.items())


def test_anji_preset_year_and_seed_numbers():
    anji = load_scheme(SCHEMES_DIR / "anji-2024.yaml")
    assert (anji.year.start, anji.year.end) == (date(2024, 8, 1), date(2025, 7, 31))
    assert (anji.enrolment.opens, anji.enrolment.closes) == (date(2024, 5, 20), date(2024, 7, 20))
    assert anji.contribution.per_person_fen == 8000
    assert anji.contribution.shares_fen["personal"] == 3000
    assert anji.pool.level == "county"
    tangqiao = load_scheme(SCHEMES_DIR / "tangqiao-2020.yaml")
    assert tangqiao.service_fee.rate == Decimal("0.025")
    assert tangqiao.service_fee.every == "quarter"
    assert tangqiao.contribution.shares_fen["personal"] == 5000
    haimen = load_scheme(SCHEMES_DIR / "haimen-2023.yaml")
    assert len(haimen.contribution.excluded) == 6  # 六类困难对象


@pytest.mark.parametrize("today", [date(2025, 1, 1), date(2026, 2, 28), date(2031, 12, 31)])
def test_demo_enrolment_is_open_and_year_running_whatever_the_date(today):
    demo = load_scheme(SCHEMES_DIR / "demo.yaml", today=today)
    assert demo.pool.code == "demo" and demo.pool.name == "示范镇"
    assert demo.enrolment.is_open(today)
    assert today in demo.year
    assert demo.contribution.per_person_fen == 10000
    assert dict(demo.contribution.shares_fen) == {"personal": 5000, "collective": 5000}


# ---------------------------------------------------------------------------------------------
# Storing schemes

def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_store_scheme_writes_pool_villages_year_and_quotas(rules_db):
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        scheme = load_scheme(SCHEMES_DIR / "anji-2024.yaml")
        year = store_scheme(s, scheme)
    with rules_db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "anji"))
        assert (pool.name, pool.level.value) == ("安吉县", "county")
        assert sorted(v.full_name for v in pool.villages) == ["天荒坪镇/五鹤村", "天荒坪镇/大溪村"]
        stored = s.get(SchemeYear, year.id)
        assert (stored.start, stored.end) == (date(2024, 8, 1), date(2025, 7, 31))
        assert stored.enrolment_closes == date(2024, 7, 20)
        assert scheme_of(stored) == scheme
        quotas = dict(s.execute(select(Quota.drg_code, Quota.quota_fen)
                                .where(Quota.scheme_year_id == year.id)).all())
        assert quotas == dict(scheme.benefit.quotas_fen)
        assert s.scalar(select(AuditLog).where(AuditLog.action == "scheme.load")).entity_id == \
            str(year.id)


def test_loading_the_same_file_twice_updates(rules_db, tmp_path):
    path = write_scheme(tmp_path)
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        first = store_scheme(s, load_scheme(path))
    write_scheme(tmp_path, GOOD.replace("测试镇/二村", "测试镇/三村"),
                 quotas="drg_code,quota\nFM19,9000.00\nAA19,40000\n")
    with rules_db.session() as s:
        second = store_scheme(s, load_scheme(path))
        assert second.id == first.id
    with rules_db.session() as s:
        assert count(s, SchemeYear) == 1 and count(s, Pool) == 1
        assert dict(s.execute(select(Quota.drg_code, Quota.quota_fen)).all()) == {
            "FM19": 900000, "AA19": 4000000}
        # villages are added, never removed (households may live there)
        assert {v.full_name for v in s.scalars(select(Village))} == {
            "测试镇/一村", "测试镇/二村", "测试镇/三村"}


def test_a_year_s_scheme_is_built_once_and_follows_a_reloaded_file(rules_db, tmp_path):
    """`SchemeYear.scheme` is the same object while the rules stay, and the new quota table
    as soon as the file is loaded again, in the same session too."""
    path = write_scheme(tmp_path)
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        year = store_scheme(s, load_scheme(path))
        scheme = year.scheme
        assert year.scheme is scheme and scheme.benefit.quotas_fen["FM19"] == 800000
        write_scheme(tmp_path, quotas="drg_code,quota\nFM19,9000.00\nAA19,40000\n")
        assert store_scheme(s, load_scheme(path)) is year
        assert year.scheme.benefit.quotas_fen["FM19"] == 900000
    with rules_db.session() as s:
        assert s.get(SchemeYear, year.id).scheme.benefit.quotas_fen == {
            "FM19": 900000, "AA19": 4000000}


def test_relative_demo_reloaded_another_day_moves_the_same_year(rules_db):
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        store_scheme(s, load_scheme(SCHEMES_DIR / "demo.yaml", today=date(2030, 6, 1)))
        store_scheme(s, load_scheme(SCHEMES_DIR / "demo.yaml", today=date(2030, 6, 20)))
    with rules_db.session() as s:
        years = s.scalars(select(SchemeYear)).all()
        assert len(years) == 1
        assert years[0].start == date(2030, 6, 20) - timedelta(days=90)
        assert current_scheme_year(s, "demo", date(2030, 6, 20)).id == years[0].id


def test_quota_codes_missing_from_the_catalogue_are_listed(rules_db, tmp_path):
    path = write_scheme(tmp_path, quotas="drg_code,quota\nFM19,8000\nQQ98,1000\nQQ99,1000\n")
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
    with pytest.raises(SchemeError, match=r"病种目录中没有这些病种：QQ98, QQ99"):
        with rules_db.session() as s:
            store_scheme(s, load_scheme(path))
    with rules_db.session() as s:
        assert count(s, Pool) == 0 and count(s, SchemeYear) == 0
        # an explicit catalogue replaces the table as the reference
        with pytest.raises(SchemeError, match="FM19"):
            store_scheme(s, load_scheme(path), catalog_codes={"QQ98", "QQ99"})


def test_a_village_belongs_to_one_pool(rules_db, tmp_path):
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        store_scheme(s, load_scheme(write_scheme(tmp_path)))
    other = GOOD.replace("code: test", "code: other")
    with pytest.raises(SchemeError, match="测试镇/一村 已属于资金池 test"):
        with rules_db.session() as s:
            store_scheme(s, load_scheme(write_scheme(tmp_path, other)))


def test_year_lookups_current_previous_and_enrolment(rules_db, tmp_path):
    folder = tmp_path / "schemes"
    folder.mkdir()
    shutil.copy(SCHEMES_DIR / "anji-2024-quotas.csv", folder)
    text = (SCHEMES_DIR / "anji-2024.yaml").read_text(encoding="utf-8")
    (folder / "anji-2024.yaml").write_text(text, encoding="utf-8")
    (folder / "anji-2025.yaml").write_text(
        text.replace("2025-07-31", "2026-07-31").replace("2024-08-01", "2025-08-01")
        .replace("2024-05-20", "2025-05-20").replace("2024-07-20", "2025-07-20"), encoding="utf-8")
    with rules_db.session() as s:
        import_catalog(s, SAMPLE_CATALOG)
        y2024 = store_scheme(s, load_scheme(folder / "anji-2024.yaml"))
        y2025 = store_scheme(s, load_scheme(folder / "anji-2025.yaml"))
    with rules_db.session() as s:
        assert current_scheme_year(s, "anji", date(2025, 7, 31)).id == y2024.id
        assert current_scheme_year(s, "anji", date(2025, 8, 1)).id == y2025.id
        assert current_scheme_year(s, "anji", date(2024, 7, 31)) is None
        assert current_scheme_year(s, "nowhere", date(2025, 1, 1)) is None
        assert scheme_year_on(s, y2024.pool_id, date(2024, 8, 1)).id == y2024.id
        assert previous_scheme_year(s, s.get(SchemeYear, y2025.id)).id == y2024.id
        assert previous_scheme_year(s, s.get(SchemeYear, y2024.id)) is None
        # Anji enrols in May–July for the year starting August 1
        assert enrolment_scheme_year(s, "anji", date(2025, 6, 1)).id == y2025.id
        assert enrolment_scheme_year(s, "anji", date(2025, 7, 21)) is None

    (folder / "bridge.yaml").write_text(
        text.replace("2024-08-01", "2025-02-01").replace("2025-07-31", "2026-01-31"),
        encoding="utf-8")
    with pytest.raises(SchemeError, match="多个年度重叠"):
        with rules_db.session() as s:
            store_scheme(s, load_scheme(folder / "bridge.yaml"))


# ---------------------------------------------------------------------------------------------
# The keys every seed programme needs: cover, newborns, the uninsured, exclusion lists,
# documents, the filing deadline, payers, the continuity bonus, funding rules.

SEED_KEYS = GOOD.replace(
    "enrolment: {opens: 2024-05-20, closes: 2024-07-20}\n",
    "enrolment: {opens: 2024-05-20, closes: 2024-07-20, newborn_days: 60,"
    ' newborn_share: "20.00", uninsured: refused}\n'
    "cover: {from: payment, waiting_days: 30}\n").replace(
    "  subsidized: [低保, 特困]\n",
    "  subsidized: {低保: {payer: town}, 特困: {payer: charity}}\n"
    '  rules: {min_per_person: "80.00", personal_min: "30.00", personal_max: "50.00",'
    ' personal_min_ratio: "0.30"}\n').replace(
    '  thresholds: {resident: "3500.00", employee: "2500.00", uninsured: "7000.00"}\n'
    "  exclusions: [non_disease, work_injury, crime, third_party_liable, non_designated_hospital,"
    " abroad]\n",
    '  thresholds: {resident: "3500.00", employee: "2500.00"}\n'
    "  exclusions:\n"
    "    - abroad\n"
    "    - {code: public_health, label: 应当由公共卫生负担的住院}\n"
    "  documents: {uninsured: [discharge_record, itemized_bill, invoice]}\n"
    "  file_within_days: 90\n").replace(
    '  continuous_bonus: "0.10"\n', "").replace(
    "payout: {day: 5}\n", 'bonus: {continuity: {rate: "0.10", applies_to: subsidy}}\n'
    "payout: {day: 5}\n")


def test_seed_keys_are_read_and_survive_the_stored_rules(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path, SEED_KEYS))
    assert (scheme.cover.start_from, scheme.cover.waiting_days) == ("payment", 30)
    assert scheme.cover.starts(date(2024, 8, 1), date(2024, 9, 5)) == date(2024, 10, 5)
    assert scheme.cover.starts(date(2024, 8, 1), date(2024, 6, 1)) == date(2024, 8, 1)
    assert scheme.cover.starts(date(2024, 8, 1), None) is None
    e = scheme.enrolment
    assert (e.newborn_days, e.newborn_share_fen, e.uninsured) == (60, 2000, "refused")
    c = scheme.contribution
    assert c.subsidized == ("低保", "特困") and dict(c.payers) == {"低保": "town", "特困": "charity"}
    assert c.member_shares("低保") == {"collective": 5000, "town": 3000}
    assert c.member_shares(None, 2000) == {"personal": 2000, "collective": 5000}
    assert c.rules.personal_max_fen == 5000
    cl = scheme.claims
    assert dict(cl.thresholds_fen) == {"resident": 350000, "employee": 250000}
    assert cl.exclusions == ("abroad", "public_health")
    assert cl.label_of("public_health") == "应当由公共卫生负担的住院"
    assert cl.label_of("abroad") == "在国外或港澳台地区医院住院"
    assert cl.documents_for("uninsured") == ("discharge_record", "itemized_bill", "invoice")
    assert cl.documents_for("resident") == ("discharge_record", "itemized_bill",
                                            "settlement_sheet")
    assert cl.file_within_days == 90
    assert (scheme.benefit.continuous_bonus, scheme.benefit.bonus_applies_to) == (
        Decimal("0.10"), "subsidy")
    assert scheme_from_rules(json.loads(json.dumps(scheme.to_rules()))) == scheme


def test_an_older_file_keeps_its_meaning(tmp_path):
    scheme = load_scheme(write_scheme(tmp_path))
    assert scheme.cover.start_from == "year_start" and scheme.enrolment.newborn_days == 0
    assert scheme.enrolment.uninsured == "allowed" and scheme.claims.file_within_days is None
    assert scheme.contribution.member_shares("低保") == {"collective": 8000}
    assert scheme.benefit.bonus_applies_to == "quota"
    old_rules = scheme.to_rules()
    for section, key in [("enrolment", "newborn_days"), ("contribution", "payers"),
                         ("claims", "documents"), ("benefit", "bonus_applies_to")]:
        del old_rules[section][key]
    del old_rules["cover"]
    assert scheme_from_rules(old_rules) == scheme  # rules stored before these keys


SEED_BREAKS = [
    ("from: payment", "from: signup", "cover.from", "year_start | payment"),
    ("from: payment, waiting_days: 30", "from: year_start, waiting_days: 30",
     "cover.waiting_days", "from: payment"),
    ("newborn_days: 60", "newborn_days: 400", "enrolment.newborn_days", "0–366"),
    ("uninsured: refused", "uninsured: maybe", "enrolment.uninsured", "allowed | refused"),
    ("{payer: town}", "{payer: village}", "contribution.subsidized.低保.payer", "collective"),
    ("{code: public_health, label", "{code: Public-Health, label",
     "claims.exclusions[1].code", "小写字母"),
    ("    - abroad\n", "    - abroad\n    - overseas\n", "claims.exclusions[1]",
     "non_disease"),
    ("    - abroad\n", "    - abroad\n    - abroad\n", "claims.exclusions[1]", "重复"),
    ("invoice]", "receipt]", "claims.documents.uninsured[2]", "invoice"),
    ("file_within_days: 90", "file_within_days: 0", "claims.file_within_days", "1–3660"),
    ("applies_to: subsidy", "applies_to: both", "bonus.continuity.applies_to", "quota | subsidy"),
    ('personal_max: "50.00"', 'personal_max: "20.00"', "contribution.rules.personal_max",
     "personal_min"),
    ('shares: {personal: "30.00", collective: "50.00"}',
     'shares: {personal: "60.00", collective: "20.00"}', "contribution.shares.personal",
     "超过规定的最高 50.00 元"),
    ('min_per_person: "80.00"', 'min_per_person: "100.00"', "contribution.per_person",
     "低于本方案规定的最低 100.00 元"),
    ('personal_min_ratio: "0.30"', 'personal_min_ratio: "0.50"',
     "contribution.shares.personal", "的 50%"),
]


@pytest.mark.parametrize("old,new,key,word", SEED_BREAKS,
                         ids=[f"{b[2]}-{i}" for i, b in enumerate(SEED_BREAKS)])
def test_each_wrong_seed_key_names_file_line_and_key(tmp_path, old, new, key, word):
    assert old in SEED_KEYS
    with pytest.raises(SchemeError) as err:
        load_scheme(write_scheme(tmp_path, SEED_KEYS.replace(old, new, 1)))
    message = str(err.value)
    assert message.startswith("test.yaml 第") and f"行 {key}: " in message, message
    assert word in message, message


def test_both_bonus_keys_are_refused(tmp_path):
    text = SEED_KEYS.replace('  annual_cap: "100000.00"\n',
                             '  annual_cap: "100000.00"\n  continuous_bonus: "0.10"\n')
    with pytest.raises(SchemeError, match="benefit.continuous_bonus: 与 bonus.continuity"):
        load_scheme(write_scheme(tmp_path, text))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_keeps_its_seed_s_funding_rules(name):
    scheme = load_scheme(SCHEMES_DIR / f"{name}.yaml", today=date(2030, 6, 1))
    rules = scheme.contribution.rules
    if name == "demo":
        assert rules is None
        return
    assert rules is not None
    assert rules.broken(scheme.contribution.per_person_fen,
                        scheme.contribution.shares_fen["personal"]) == []

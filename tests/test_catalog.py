"""The DRG catalogue: parsing both formats, importing (all or nothing), ICD-10 search."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from core.catalog import (CHS_DRG_11, SAMPLE_CATALOG, CatalogError, ensure_catalog, group_names,
                          import_catalog, parse_catalog, search_icd)
from core.config import SCHEMES_DIR
from core.db import Database
from core.models import DrgGroup

SHARED_DRG = Path(__file__).resolve().parents[2] / "shared" / "data" / "chs-drg-1.1"
needs_shared = pytest.mark.skipif(not SHARED_DRG.is_dir(),
                                  reason=f"CHS-DRG 1.1 data not found at {SHARED_DRG}")




def groups_in(db: Database) -> dict[str, str]:
    with db.session() as s:
        return dict(s.execute(select(DrgGroup.code, DrgGroup.name)).all())


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------

def test_national_catalogue_has_628_groups(rules_db):
    path = CHS_DRG_11  # installed with the package
    with rules_db.session() as s:
        assert import_catalog(s, path) == (628, 0)
    groups = groups_in(rules_db)
    assert len(groups) == 628
    assert groups["AA19"] == "心脏移植"
    assert groups["ZZ15"] == "多发性重要创伤无手术，不伴并发症或合并症"
    with rules_db.session() as s:  # importing again changes nothing
        assert import_catalog(s, path) == (0, 0)
    assert len(groups_in(rules_db)) == 628


def test_sample_then_national_adds_the_rest(rules_db):
    with rules_db.session() as s:
        sample_added, _ = import_catalog(s, SAMPLE_CATALOG)
        assert sample_added == len(parse_catalog(SAMPLE_CATALOG))
        assert import_catalog(s, CHS_DRG_11) == (628 - sample_added, 0)


def test_text_format_tolerates_bom_crlf_blank_lines_and_comments(tmp_path):
    path = write(tmp_path, "c.dat", "\ufeffAA19 心脏移植\r\n\r\n# a comment\r\n"
                                    "FM19 经皮冠状动脉支架植入\r\n  \r\nBB11 脑创伤开颅术，伴严重并发症或合并症")
    assert parse_catalog(path) == [("AA19", "心脏移植"), ("FM19", "经皮冠状动脉支架植入"),
                                   ("BB11", "脑创伤开颅术，伴严重并发症或合并症")]


def test_csv_format_with_header(tmp_path):
    path = write(tmp_path, "c.csv", "\ufeffcode,name\r\nAA19,心脏移植\r\n"
                                    'BB11,"脑创伤开颅术，伴严重并发症或合并症"\r\n')
    assert parse_catalog(path) == [("AA19", "心脏移植"), ("BB11", "脑创伤开颅术，伴严重并发症或合并症")]


def test_import_updates_changed_names(rules_db, tmp_path):
    with rules_db.session() as s:
        assert import_catalog(s, write(tmp_path, "a.dat", "AA19 旧名\nAB19 肝移植\n")) == (2, 0)
    with rules_db.session() as s:
        assert import_catalog(s, write(tmp_path, "b.csv",
                                       "code,name\nAA19,心脏移植\nAB19,肝移植\nAC19,胰/肾联合移植\n")) \
            == (1, 1)
        assert group_names(s, ["AA19", "AC19", "QQ99"]) == {"AA19": "心脏移植", "AC19": "胰/肾联合移植"}
    assert groups_in(rules_db) == {"AA19": "心脏移植", "AB19": "肝移植", "AC19": "胰/肾联合移植"}


@pytest.mark.parametrize("name,content,line,word", [
    ("bad.dat", "AA19 心脏移植\nAB19 肝移植\nAC19\nAD19 胰腺移植\n", 3, "病种名称"),
    ("bad.dat", "AA19 心脏移植\n\n# note\naa-19 小写\n", 4, "大写"),
    ("bad.dat", "AA19 心脏移植\nAB19 肝移植\nAA19 又一个\n", 3, "第1行重复"),
    ("bad.dat", "AA19 " + "长" * 129 + "\n", 1, "1–128"),
    ("bad.csv", "code;name\nAA19;心脏移植\n", 1, "code,name"),
    ("bad.csv", "code,name\nAA19,心脏移植\nAB19,肝移植,多余\n", 3, "两列"),
])
def test_a_bad_line_is_named_and_nothing_is_imported(rules_db, tmp_path, name, content, line,
                                                     word):
    path = write(tmp_path, name, content)
    with pytest.raises(CatalogError) as err:
        with rules_db.session() as s:
            import_catalog(s, path)
    assert str(err.value).startswith(f"{name} 第{line}行: "), str(err.value)
    assert word in str(err.value)
    assert groups_in(rules_db) == {}


def test_not_utf8_or_empty_is_refused(tmp_path):
    with pytest.raises(CatalogError, match="UTF-8"):
        parse_catalog(write(tmp_path, "gbk.dat", "AA19 心脏移植\n".encode("gbk")))
    with pytest.raises(CatalogError, match="没有任何病种"):
        parse_catalog(write(tmp_path, "empty.dat", "\n# nothing\n"))
    with pytest.raises(CatalogError, match="找不到"):
        parse_catalog(tmp_path / "missing.dat")


@needs_shared
def test_search_icd_by_code_prefix_and_by_name():
    path = SHARED_DRG / "ZD_INFO.dat"
    by_code = search_icd(path, "i21", limit=5)
    assert len(by_code) == 5 and all(code.startswith("I21") for code, _ in by_code)
    by_name = search_icd(path, "急性心肌梗死", limit=50)
    assert by_name and all("急性心肌梗死" in name for _, name in by_name)
    assert len(search_icd(path, "霍乱", limit=3)) == 3
    assert search_icd(path, "A00.000", limit=1) == [("A00.000", "霍乱，由于O1群霍乱弧菌，霍乱生物型所致")]
    assert search_icd(path, "没有这种病xyz") == []
    assert search_icd(path, "  ") == []


def test_search_icd_small_file(tmp_path):
    path = write(tmp_path, "icd.dat", "A00.000 霍乱\nI21.000 急性前壁心肌梗死\nI21.100 急性下壁心肌梗死\n")
    assert search_icd(path, "心肌梗死") == [("I21.000", "急性前壁心肌梗死"), ("I21.100", "急性下壁心肌梗死")]
    assert search_icd(path, "I21.1") == [("I21.100", "急性下壁心肌梗死")]
    assert search_icd(path, "I", limit=1) == [("I21.000", "急性前壁心肌梗死")]


# ---------------------------------------------------------------------------------------------
# The CHS-DRG 1.1 list installed with the package, loaded into an empty catalogue

def cli(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update(HUZHU_DATABASE_URL=db_url, HUZHU_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)


def test_the_packaged_list_has_its_licence_and_notice_beside_it():
    folder = CHS_DRG_11.parent
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    notice = (folder / "NOTICE").read_text(encoding="utf-8")
    assert "OpenDRG/DRG_Python" in notice and "5d523a26b110082fee8d6e324e2e527ad0b87ee5" in notice
    assert "unchanged" in notice
    assert len(parse_catalog(CHS_DRG_11)) == 628


@pytest.mark.parametrize("preset", sorted(p.name for p in SCHEMES_DIR.glob("*.yaml")))
def test_every_preset_loads_with_scheme_load_on_a_fresh_database(db, db_url, tmp_path, preset):
    assert groups_in(db) == {}
    out = cli(db_url, tmp_path, "scheme", "load", str(SCHEMES_DIR / preset), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["quota_groups"] == 628  # ADRG/MDC/default rows expanded
    groups = groups_in(db)
    assert len(groups) == 628 and groups["AA19"] == "心脏移植"


def test_db_upgrade_loads_an_empty_catalogue_once_and_leaves_a_county_list_alone(
        db, db_url, tmp_path):
    out = cli(db_url, tmp_path, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    assert "CHS-DRG 1.1 group list (628 groups)" in out.stdout
    assert len(groups_in(db)) == 628
    again = cli(db_url, tmp_path, "db", "upgrade")
    assert again.returncode == 0 and "CHS-DRG" not in again.stdout
    # a county's own list, imported on top: renamed groups stay renamed, new ones stay
    county = write(tmp_path, "county.csv", "code,name\nAA19,心脏移植术（本县）\nXX11,本县自定病种\n")
    out = cli(db_url, tmp_path, "catalog", "import", str(county))
    assert out.returncode == 0 and "1 DRG group(s) added, 1 renamed" in out.stdout, out
    assert cli(db_url, tmp_path, "db", "upgrade").returncode == 0
    groups = groups_in(db)
    assert len(groups) == 629 and groups["AA19"] == "心脏移植术（本县）" and groups["XX11"]


def test_ensure_catalog_fills_only_an_empty_catalogue(rules_db, tmp_path):
    own = write(tmp_path, "own.dat", "ZZ11 自定病种\n")
    with rules_db.session() as s:
        import_catalog(s, own)
        assert ensure_catalog(s) == 0
    assert groups_in(rules_db) == {"ZZ11": "自定病种"}


def test_a_scheme_refused_on_a_fresh_database_stores_nothing(db, db_url, tmp_path):
    """A preset whose quota table names a group the list lacks: refused, and the catalogue it
    would have loaded is rolled back with it."""
    text = (SCHEMES_DIR / "anji-2024.yaml").read_text(encoding="utf-8")
    quotas = (SCHEMES_DIR / "anji-2024-quotas.csv").read_text(encoding="utf-8")
    write(tmp_path, "anji-2024-quotas.csv", quotas + "QQ99,1000\n")
    scheme = write(tmp_path, "anji-2024.yaml", text)
    out = cli(db_url, tmp_path, "scheme", "load", str(scheme))
    assert out.returncode == 2 and "QQ99" in out.stderr, out
    assert groups_in(db) == {}

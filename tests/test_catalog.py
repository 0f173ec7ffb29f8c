"""The DRG catalogue: parsing both formats, importing (all or nothing), ICD-10 search."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.catalog import (SAMPLE_CATALOG, CatalogError, group_names, import_catalog,
                          parse_catalog, search_icd)
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

@needs_shared
def test_national_catalogue_has_628_groups(rules_db):
    path = SHARED_DRG / "DRG.dat"
    with rules_db.session() as s:
        assert import_catalog(s, path) == (628, 0)
    groups = groups_in(rules_db)
    assert len(groups) == 628
    assert groups["AA19"] == "心脏移植"
    assert groups["ZZ15"] == "多发性重要创伤无手术，不伴并发症或合并症"
    with rules_db.session() as s:  # importing again changes nothing
        assert import_catalog(s, path) == (0, 0)
    assert len(groups_in(rules_db)) == 628


@needs_shared
def test_sample_then_national_adds_the_rest(rules_db):
    with rules_db.session() as s:
        sample_added, _ = import_catalog(s, SAMPLE_CATALOG)
        assert sample_added == len(parse_catalog(SAMPLE_CATALOG))
        assert import_catalog(s, SHARED_DRG / "DRG.dat") == (628 - sample_added, 0)


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

"""The command line of households: xlsx template and bulk import (all or nothing, row-numbered
errors, idempotent), `households list --json` (masked), `villages qrcodes` (WeChat permanent
scene QR codes through the emulator + posters), `scheme load`."""
from __future__ import annotations

import csv
import json
import logging
import re
from datetime import date
from pathlib import Path

import pytest
import requests
from openpyxl import Workbook, load_workbook
from PIL import Image
from sqlalchemy import func, select

from bot.cli import main
from core.importer import COLUMNS
from core.importer.reader import _FastSheet, _openpyxl_rows
from core.models import (AuditLog, Enrolment, EnrolmentStatus, Household, Member, Pool,
                         SchemeYear, Village, WechatUser)
from tests.factories import M, make_household, make_id


@pytest.fixture
def cli(app_ctx, monkeypatch, capsys):
    """Run `huzhu …` in-process against the test's database and data directory."""
    for key, value in app_ctx.cfg.values.items():
        monkeypatch.setenv(f"HUZHU_{key}", str(value))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def people(n: int, born=date(1960, 1, 1)) -> list[str]:
    return [make_id(date(born.year + i % 40, 1 + i % 12, 1 + i % 28)) for i in range(n)]


def write_list(path: Path, rows: list[list]) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "名单"
    ws.append(list(COLUMNS))
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def good_rows(ids: list[str]) -> list[list]:
    return [
        ["示范镇/东村", "", "王大山", "王大山", ids[0], "户主", "居民医保", "", "13800138000"],
        ["示范镇/东村", "", "王大山", "李小花", ids[1], "配偶", "职工医保", "低保", ""],
        ["东村", None, "王大山", "王小军", ids[2], "子女", "未参保", None, None],
        ["示范镇/西村", "", "赵四", "赵四", ids[3], "户主", "城乡居民医保", "", "0512-58881234"],
        ["示范镇/西村", "", "赵四", "钱五", ids[4], "妻子", "居民", "特困户", ""],
    ]


def counts(db) -> tuple[int, int, int]:
    with db.session() as s:
        return (s.scalar(select(func.count(Household.id))),
                s.scalar(select(func.count(Member.id))),
                s.scalar(select(func.count(Enrolment.id))))


def test_template_has_the_columns_and_the_villages(cli, tmp_path):
    path = tmp_path / "t.xlsx"
    code, out, _ = cli("households", "template", str(path))
    assert code == 0 and "模板已生成" in out
    wb = load_workbook(path)
    assert [c.value for c in wb["名单"][1]] == list(COLUMNS)
    assert [r[0].value for r in wb["村名"].iter_rows()] == ["示范镇/东村", "示范镇/西村",
                                                          "示范镇/南村"]
    assert wb["名单"]["E2"].number_format == "@"  # the ID column keeps 18 digits
    assert "说明" in wb.sheetnames


@pytest.fixture(params=["here", "helper"])
def reader(request, monkeypatch):
    """Large files are read by a helper process (which also encrypts the ID numbers): both
    ways, whatever the size of the test's file and the number of cores."""
    import core.importer.helper

    monkeypatch.setattr(core.importer.helper, "_use_helper",
                        lambda path: request.param == "helper")
    return request.param


def test_import_then_reimport_changes_nothing(cli, db, app_ctx, tmp_path, caplog, reader):
    caplog.set_level(logging.DEBUG)
    ids = people(5)
    path = write_list(tmp_path / "list.xlsx", good_rows(ids))
    code, out, err = cli("households", "import", str(path))
    assert code == 0, err
    assert "新户 2 户" in out and "新成员 5 人" in out
    assert counts(db) == (2, 5, 5)
    with db.session() as s:
        hh = s.scalars(select(Household).order_by(Household.id)).all()
        assert [h.village.full_name for h in hh] == ["示范镇/东村", "示范镇/西村"]
        assert [h.phone_masked for h in hh] == ["138****8000", "0512-****1234"]
        assert [app_ctx.vault.decrypt(h.phone_enc) for h in hh] == ["13800138000", "0512-58881234"]
        assert [m.id_number_masked for m in hh[0].members] == [i[:3] + "*" * 13 + i[-2:]
                                                               for i in ids[:3]]
        assert [m.birth_year for m in hh[0].members] == [int(i[6:10]) for i in ids[:3]]
        assert [m.name for m in hh[0].members] == ["王大山", "李小花", "王小军"]
        assert [m.category for m in hh[0].members] == [None, "低保", None]
        assert [m.category for m in hh[1].members] == [None, "特困"]
        assert [m.relation.value for m in hh[1].members] == ["head", "spouse"]
        assert [m.insurance.value for m in hh[0].members] == ["resident", "employee", "uninsured"]
        for m, idn in zip(hh[0].members + hh[1].members, ids):
            assert app_ctx.vault.decrypt(m.id_number_enc) == idn
            assert m.id_number_hash == app_ctx.vault.lookup_hash(idn)
        assert {e.status for e in s.scalars(select(Enrolment))} == {EnrolmentStatus.pending}
        assert s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "household.import")) == 2
        before_audit = s.scalar(select(func.count(AuditLog.id)))

    code, out2, err2 = cli("households", "import", str(path))
    assert code == 0 and "没有任何改动" in out2 and "5 人" in out2
    assert counts(db) == (2, 5, 5)
    with db.session() as s:
        assert s.scalar(select(func.count(AuditLog.id))) == before_audit

    code, listed, _ = cli("households", "list", "--json")
    doc = json.loads(listed)
    assert [h["village"] for h in doc] == ["示范镇/东村", "示范镇/西村"]
    first = doc[0]
    assert set(first) >= {"number", "village", "status", "members"}
    assert first["members"][1] == {"name": "李*花", "id_number": ids[1][:3] + "*" * 13 + ids[1][-2:],
                                   "relation": "spouse", "insurance": "employee",
                                   "category": "低保", "enrolment": "pending",
                                   "cover_from": None}
    code, one, _ = cli("households", "list", "--village", "西村", "--json")
    assert [h["village"] for h in json.loads(one)] == ["示范镇/西村"]
    code, text, _ = cli("households", "list")
    everything = "\n".join([out, err, out2, err2, listed, one, text, caplog.text])
    for idn in ids:
        assert idn not in everything


def test_a_later_list_adds_to_known_households(cli, db, tmp_path):
    ids = people(6)
    cli("households", "import", str(write_list(tmp_path / "a.xlsx", good_rows(ids[:5]))))
    with db.session() as s:
        number = s.scalar(select(Household.number).order_by(Household.id))
    rows = good_rows(ids[:5]) + [["示范镇/东村", "", "王大山", "王小宝", ids[5], "子女", "居民医保",
                                  "", ""]]
    code, out, _ = cli("households", "import", str(write_list(tmp_path / "b.xlsx", rows)))
    assert code == 0 and "新成员 1 人" in out and "新户 0 户" in out
    assert counts(db) == (2, 6, 6)
    # by our household number too
    rows = [["示范镇/东村", number, "王大山", "王小妹", make_id(date(2001, 2, 2)), "子女",
             "居民医保", "", ""]]
    code, out, err = cli("households", "import", str(write_list(tmp_path / "c.xlsx", rows)))
    assert code == 0, err
    with db.session() as s:
        hh = s.scalar(select(Household).where(Household.number == number))
        assert [m.name for m in hh.members][-1] == "王小妹"


def test_next_year_s_list_renews_known_members_and_names_differences(cli, db, tmp_path, reader):
    """Last year's households imported again into a new scheme year: their members get the new
    year's enrolment (no new member rows), a newcomer is added, and what differs from the file
    on record is reported, not changed."""
    from datetime import timedelta

    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        length = year.end - year.start
        start = year.end + timedelta(days=1)
        s.add(SchemeYear(pool_id=year.pool_id, start=start, end=start + length,
                         enrolment_opens=start - timedelta(days=30),
                         enrolment_closes=start + timedelta(days=30), rules=year.rules))
        first_day = year.start
    ids = people(6)
    code, out, err = cli("households", "import", str(write_list(tmp_path / "a.xlsx",
                                                               good_rows(ids[:5]))),
                         "--year", first_day.isoformat())
    assert code == 0, err
    assert counts(db) == (2, 5, 5)
    rows = good_rows(ids[:5]) + [["示范镇/西村", "", "赵四", "赵小五", ids[5], "子女", "居民医保",
                                  "", ""]]
    rows[1][3] = "李小华"  # a name written differently
    rows[2][6] = "职工医保"  # insurance changed
    code, out, err = cli("households", "import", str(write_list(tmp_path / "b.xlsx", rows)),
                         "--year", start.isoformat(), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["households_new"], doc["households_renewed"], doc["members_new"],
            doc["enrolments_new"], doc["unchanged"], doc["changed"]) == (0, 2, 1, 6, 0, True)
    assert [(d["row"], d["column"]) for d in doc["differences"]] == [(3, "姓名"), (4, "医保类型")]
    assert counts(db) == (2, 6, 11)
    with db.session() as s:
        names = [m.name for m in s.scalars(select(Member).order_by(Member.id))]
        assert names == ["王大山", "李小花", "王小军", "赵四", "钱五", "赵小五"]  # not changed
        assert s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "household.import_update")) == 2
    code, out, err = cli("households", "import", str(write_list(tmp_path / "b.xlsx", rows)),
                         "--year", start.isoformat(), "--json")
    doc = json.loads(out)
    assert code == 0 and not doc["changed"] and doc["unchanged"] == 6
    assert counts(db) == (2, 6, 11)


def test_bad_rows_are_reported_by_number_and_nothing_is_written(cli, db, app_ctx, tmp_path,
                                                               reader):
    ids = people(8)
    with db.session() as s:
        other = make_household(s, app_ctx.vault, [M("孙老七", id_number=ids[7])],
                               enrolment="pending")
        other_number = other.number
    bad_checksum = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    rows = [
        ["示范镇/东村", "", "王大山", "王大山", ids[0], "户主", "居民医保", "", "13800138000"],  # 2
        ["示范镇/东村", "", "王大山", "王二山", ids[1], "户主", "居民医保", "", ""],  # 3: two heads
        ["示范镇/北村", "", "周一", "周一", ids[2], "户主", "居民医保", "", ""],  # 4: no such village
        ["示范镇/西村", "", "吴二", "吴二", bad_checksum, "户主", "居民医保", "", ""],  # 5: bad ID
        ["示范镇/西村", "", "郑三", "郑三", ids[1], "户主", "居民医保", "", ""],  # 6: same ID as 3
        ["示范镇/南村", "", "冯四", "冯四", ids[3], "户主", "新农合医保", "", "123"],  # 7: ins, phone
        ["示范镇/南村", "", "陈五", "陈五", ids[4], "户主", "居民医保", "五保户2", ""],  # 8: category
        ["示范镇/南村", "", "褚六", "褚六", ids[7], "户主", "居民医保", "", ""],  # 9: registered
        [None] * 9,  # an empty row is skipped
        ["示范镇/南村", "", "卫七", "卫七", int(ids[5][:15]), "户主", "居民医保", "", ""],  # 11
        ["示范镇/南村", "H99999999", "蒋八", "蒋八", ids[6], "户主", "居民医保", "", ""],  # 12
    ]
    path = write_list(tmp_path / "bad.xlsx", rows)
    code, out, err = cli("households", "import", str(path))
    assert code == 1 and "没有导入任何数据" in err
    assert counts(db) == (1, 1, 1)  # only the household made above
    report = path.with_name("bad.errors.csv")
    with open(report, encoding="utf-8-sig") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["行号", "列", "问题"]
    found = {(int(r[0]), r[1]) for r in lines[1:]}
    # the row checks run first; a file with row errors stops before the household checks
    assert {(4, "村"), (5, "身份证号"), (6, "身份证号"), (7, "医保类型"), (7, "手机号"),
            (8, "类别"), (11, "身份证号")} <= found
    by_row = {int(r[0]): r[2] for r in lines[1:]}
    assert "第3行" in by_row[6] or "相同" in by_row[6]
    text = report.read_text(encoding="utf-8-sig") + out + err
    for idn in ids:
        assert idn not in text

    # fix the row errors: the household checks find the rest
    rows = [r for i, r in enumerate(rows, start=2) if i in (2, 3, 9, 12)]
    path = write_list(tmp_path / "bad2.xlsx", rows)
    code, out, err = cli("households", "import", str(path), "--json")
    assert code == 1
    doc = json.loads(out)
    messages = {e["row"]: e["message"] for e in doc["errors"]}
    assert "两个户主" in messages[3]
    assert other_number in messages[4]  # row 9 became row 4: registered in another household
    assert "没有户号 H99999999" in messages[5]
    assert counts(db) == (1, 1, 1)
    for idn in ids:
        assert idn not in out


def test_same_name_heads_are_told_apart_by_the_village_s_own_number(cli, db, tmp_path):
    ids = people(4)
    rows = [["示范镇/东村", "", "王建国", "王建国", ids[0], "户主", "居民医保", "", ""],
            ["示范镇/东村", "", "王建国", "王建国", ids[1], "户主", "居民医保", "", ""]]
    code, out, err = cli("households", "import", str(write_list(tmp_path / "a.xlsx", rows)))
    assert code == 1 and "两个户主" in err
    rows[0][1], rows[1][1] = "12", "13"
    code, out, err = cli("households", "import", str(write_list(tmp_path / "b.xlsx", rows)))
    assert code == 0 and "新户 2 户" in out
    code, out, err = cli("households", "import", str(write_list(tmp_path / "b.xlsx", rows)))
    assert "没有任何改动" in out


def test_outside_the_window_needs_a_year(cli, db, tmp_path):
    from sqlalchemy import update

    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        s.execute(update(SchemeYear).values(enrolment_opens=date(2000, 1, 1),
                                            enrolment_closes=date(2000, 2, 1)))
        inside = year.start
    path = write_list(tmp_path / "a.xlsx", good_rows(people(5))[:1])
    code, out, err = cli("households", "import", str(path))
    assert code == 1 and "--year" in err
    code, out, err = cli("households", "import", str(path), "--year", inside.isoformat())
    assert code == 0 and "新户 1 户" in out


def test_not_an_xlsx_and_a_wrong_header(cli, tmp_path):
    junk = tmp_path / "junk.xlsx"
    junk.write_text("村,姓名\n")
    code, _, err = cli("households", "import", str(junk))
    assert code == 2 and "不是 xlsx" in err
    wb = Workbook()
    wb.active.append(["村", "姓名"])
    wb.save(tmp_path / "h.xlsx")
    code, _, err = cli("households", "import", str(tmp_path / "h.xlsx"))
    assert code == 2 and "缺少“户主姓名”列" in err


@pytest.mark.parametrize("write_only", [False, True], ids=["shared strings", "inline strings"])
def test_the_fast_reader_agrees_with_openpyxl(tmp_path, write_only):
    rows = good_rows(people(5)) + [
        ["示范镇/东村", 12, "王大山", "王 大山", "x", "户主", True, 1.5, 13800138000],
        [None, None, "A&B <c> \"d\" 'e'", "  空格  ", "第一行\n第二行", -7, 0, "=1+1", "𠀋"],
        [],
        ["只有一格"],
        [None, None, None, None, None, None, None, None, "I"],
    ]
    path = tmp_path / "a.xlsx"
    wb = Workbook(write_only=write_only)
    ws = wb.create_sheet("名单") if write_only else wb.active
    ws.title = "名单"
    ws.append(list(COLUMNS))
    for r in rows:
        ws.append(r)
    wb.save(path)
    fast = [(n, r) for n, r in _FastSheet(path).rows() if r]  # openpyxl skips empty rows
    slow = list(_openpyxl_rows(path))
    assert fast == slow
    assert len(fast) == 10


def test_a_broken_sheet_fails_the_same_with_the_helper(db, app_ctx, tmp_path, monkeypatch):
    """A sheet whose XML breaks off midway: the parser's error reaches the caller from the
    helper process as it does without one, nothing is written, and the helper is gone."""
    import zipfile
    from xml.parsers import expat

    import core.importer.helper
    from core.importer import import_households

    good = write_list(tmp_path / "good.xlsx", good_rows(people(5)))
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = data[:data.index(b"<row r=\"4\"")] + b"<row r=\"4\"><c r=\"A4\" t=\"s\">"
            dst.writestr(item, data)
    started = []
    real = core.importer.helper._Helper

    class Helper(real):
        def __init__(self, *args):
            super().__init__(*args)
            started.append(self.process)
    monkeypatch.setattr(core.importer.helper, "_Helper", Helper)
    for helper in (False, True):
        monkeypatch.setattr(core.importer.helper, "_use_helper", lambda path: helper)
        with pytest.raises(expat.ExpatError):
            with db.session() as s:
                import_households(s, app_ctx.vault, broken, actor="test", today=date.today())
    assert len(started) == 1 and started[0].poll() is not None
    assert counts(db) == (0, 0, 0)


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false"])
def test_without_a_helper_process_the_import_runs_alone(db, app_ctx, tmp_path, monkeypatch,
                                                        caplog, executable):
    """No helper process to be had (it cannot start, or ends at once): the file is read and
    encrypted in the importing process, with the same result."""
    import sys

    import core.importer.helper
    from core.importer import import_households

    monkeypatch.setattr(core.importer.helper, "_use_helper", lambda path: True)
    monkeypatch.setattr(sys, "executable", executable)
    ids = people(5)
    path = write_list(tmp_path / "list.xlsx", good_rows(ids))
    with db.session() as s:
        result = import_households(s, app_ctx.vault, path, actor="test", today=date.today())
    assert result.ok and result.members_new == 5
    assert "helper process" in caplog.text
    with db.session() as s:
        assert sorted(app_ctx.vault.decrypt(m.id_number_enc)
                      for m in s.scalars(select(Member))) == sorted(ids)


def test_a_remark_column_beside_a_list_without_optional_columns_is_ignored(db, app_ctx, tmp_path):
    """户号, 类别 and 手机号 left out, a 备注 column added on the right: 备注 is nobody's category,
    phone or household number."""
    from core.importer import import_households

    ids = [make_id(date(1960, 3, 1)), make_id(date(1962, 4, 2))]
    wb = Workbook()
    ws = wb.active
    ws.title = "名单"
    ws.append(["村", "户主姓名", "姓名", "身份证号", "与户主关系", "医保类型", "备注"])
    ws.append(["示范镇/东村", "王大山", "王大山", ids[0], "户主", "居民医保", "低保"])
    ws.append(["示范镇/东村", "王大山", "李小花", ids[1], "配偶", "居民医保", "13800138000"])
    wb.save(tmp_path / "remarks.xlsx")
    with db.session() as s:
        result = import_households(s, app_ctx.vault, tmp_path / "remarks.xlsx", actor="test",
                                   today=date.today())
    assert result.ok and result.members_new == 2
    with db.session() as s:
        members = list(s.scalars(select(Member)))
        assert [m.category for m in members] == [None, None]
        (household,) = s.scalars(select(Household))
        assert household.phone_enc is None and household.phone_masked is None


def test_a_helper_gone_half_way_through_a_message_is_taken_over():
    """Killed while writing a batch (it waits on a full pipe most of the time): the half
    message left in the pipe means "gone", as an empty pipe does — not a crash of the import."""
    import subprocess
    import sys

    import core.importer.helper

    half = ("import pickle, sys; d = pickle.dumps(('rows', [(2, ('x',) * 9)] * 5000)); "
            "sys.stdout.buffer.write(d[:len(d) // 2])")
    helper = object.__new__(core.importer.helper._Helper)
    helper.process = subprocess.Popen([sys.executable, "-c", half], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE)
    with pytest.raises(core.importer.helper._HelperGone):
        helper._recv("rows")
    assert helper.process.poll() is not None


@pytest.mark.parametrize("when", ["reading", "encrypting"])
def test_a_helper_that_dies_is_taken_over(db, app_ctx, tmp_path, monkeypatch, caplog, when):
    """The helper killed on the way (out of memory, say): the importing process reads the rest
    of the file (no row twice) or encrypts the rest itself, with the same result."""
    import core.importer.helper
    from core.importer import import_households

    real = core.importer.helper._Helper

    class Helper(real):
        killed = False

        def _recv(self, expected):
            if self.killed:  # what it sent before it died is lost with it
                raise core.importer.helper._HelperGone(
                    "the import's helper process stopped (killed)")
            out = super()._recv(expected)
            if when == "reading" and out[0] == "rows":  # the first 2,000 rows
                self.process.kill()
                self.process.wait()
                self.killed = True
            return out

        def encrypt(self, numbers):
            super().encrypt(numbers)
            if when == "encrypting":
                self.process.kill()
                self.process.wait()
    monkeypatch.setattr(core.importer.helper, "_Helper", Helper)
    monkeypatch.setattr(core.importer.helper, "_use_helper", lambda path: True)
    ids = [make_id(date(1940 + i % 60, 1 + i % 12, 1 + i % 28)) for i in range(2500)]
    rows = [["示范镇/东村", str(i), f"王{'一二三四五六七八九十'[i % 10]}", f"王{'一二三四五六七八九十'[i % 10]}",
             idn, "户主", "居民医保", "", ""] for i, idn in enumerate(ids)]
    path = write_list(tmp_path / "list.xlsx", rows)
    with db.session() as s:
        result = import_households(s, app_ctx.vault, path, actor="test", today=date.today())
    assert result.ok, result.errors[:3]
    assert (result.rows, result.members_new) == (2500, 2500)
    assert "helper process stopped" in caplog.text
    with db.session() as s:
        assert sorted(app_ctx.vault.decrypt(m.id_number_enc)
                      for m in s.scalars(select(Member))) == sorted(ids)


# -- huzhu villages qrcodes ---------------------------------------------------------------------

def test_village_qr_codes_and_posters(cli, db, app_ctx, emulator, tmp_path, villager):
    out_dir = tmp_path / "posters"
    code, out, err = cli("villages", "qrcodes", "--pool", "demo", "--out", str(out_dir), "--json")
    assert code == 0, err
    doc = json.loads(out)
    with db.session() as s:
        villages = {v.full_name: v.id for v in s.scalars(select(Village))}
    assert [q["village"] for q in doc["qrcodes"]] == list(villages)
    made = requests.get(f"{emulator}/_emulator/qrcodes", timeout=5).json()
    assert {q["scene"] for q in made} == {f"village:{i}" for i in villages.values()}
    assert {q["action_name"] for q in made} == {"QR_LIMIT_STR_SCENE"}  # permanent
    for q in doc["qrcodes"]:
        img = Image.open(q["poster"])
        assert img.size == (1240, 1754) and img.format == "PNG"
    # the same without --json: a line per poster and the count
    code, out, err = cli("villages", "qrcodes", "--pool", "demo", "--out", str(out_dir))
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(villages) + 1
    assert lines[0].startswith("示范镇/东村: ") and lines[0].endswith(".png  (scene village:"
                                                                   f"{villages['示范镇/东村']})")
    no_font = "" if doc["font"] else "（无村名，缺中文字体）"
    assert lines[-1] == f"共 {len(villages)} 张海报{no_font}，在 {out_dir}"
    if doc["font"]:  # the caption drawn in a CJK font: the top of the poster is not blank
        top = Image.open(doc["qrcodes"][0]["poster"]).convert("L").crop((0, 80, 1240, 380))
        assert top.getextrema()[0] < 128
    # following through the West village's code tags the user with that village
    west = villages["示范镇/西村"]
    r = villager.subscribe("o_qr_follow", f"village:{west}")
    assert "示范镇/西村" in r.reply
    with db.session() as s:
        assert s.scalar(select(WechatUser.village_id).where(
            WechatUser.openid == "o_qr_follow")) == west


def test_posters_without_a_cjk_font_still_have_the_code(tmp_path, monkeypatch):
    import io

    import qrcode

    from bot.cli import households as cli_households

    monkeypatch.setenv("HUZHU_FONT_FILE", str(tmp_path / "nonexistent.ttc"))
    assert cli_households.find_cjk_font() is None
    buf = io.BytesIO()
    qrcode.make("http://weixin.qq.com/q/x").save(buf, format="PNG")
    path = cli_households.poster(buf.getvalue(), "示范镇/东村", "示范镇", tmp_path / "p.png", None)
    img = Image.open(path).convert("L")
    assert img.crop((0, 0, 1240, 400)).getextrema() == (255, 255)  # no caption
    assert img.crop((170, 420, 1070, 1320)).getextrema()[0] == 0  # the code is there


def test_unknown_pool(cli):
    code, _, err = cli("villages", "qrcodes", "--pool", "nope")
    assert code == 2 and "nope" in err


# -- huzhu scheme load ---------------------------------------------------------------------------

def test_scheme_load_stores_pool_villages_and_year(cli, db):
    from core.config import SCHEMES_DIR

    code, out, err = cli("scheme", "load", str(SCHEMES_DIR / "anji-2024.yaml"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["pool"] == "anji" and doc["year"] == {"start": "2024-08-01", "end": "2025-07-31"}
    with db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "anji"))
        assert [v.full_name for v in pool.villages] == doc["villages"]
        assert s.scalar(select(func.count(SchemeYear.id)).where(SchemeYear.pool_id == pool.id)) == 1
    code, out, _ = cli("scheme", "load", str(SCHEMES_DIR / "anji-2024.yaml"))
    assert code == 0 and out == (
        f"已保存：资金池 anji（{doc['pool_name']}，county），{len(doc['villages'])} 个村；"
        f"互助年度 2024-08-01 至 2025-07-31，登记 {doc['enrolment']['opens']} 至 "
        f"{doc['enrolment']['closes']}；病种定额 {doc['quota_groups']} 个。\n")


def test_scheme_load_refuses_a_wrong_file_with_key_and_line(cli, db, tmp_path):
    from core.config import SCHEMES_DIR

    text = (SCHEMES_DIR / "anji-2024.yaml").read_text(encoding="utf-8")
    assert 'per_person: "80.00"' in text
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "per_person" in l)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace('per_person: "80.00"', "per_person: 80.0"), encoding="utf-8")
    shutil_copy_quotas(SCHEMES_DIR, tmp_path)
    code, out, err = cli("scheme", "load", str(wrong))
    said = [l for l in err.splitlines() if l.startswith("huzhu: ")]  # (a test's threads may log)
    assert code == 2 and said[0].startswith(f"huzhu: 方案文件有错，未保存：wrong.yaml 第{line}行 ")
    assert "contribution.per_person" in said[0]
    with db.session() as s:
        assert s.scalar(select(Pool).where(Pool.code == "anji")) is None


def shutil_copy_quotas(src: Path, dst: Path) -> None:
    import shutil

    for f in src.glob("*-quotas.csv"):
        shutil.copy(f, dst / f.name)


def test_the_import_and_list_commands_say_what_they_did_line_by_line(cli, tmp_path):
    ids = people(5)
    listed = write_list(tmp_path / "list.xlsx", good_rows(ids))
    code, out, _ = cli("households", "import", str(listed))
    assert code == 0
    assert out.splitlines()[0] == ("list.xlsx: 导入完成。新户 2 户，已有的户 0 户续保或加人；新成员 5 人，"
                                   "新登记（待缴费）5 人；已登记未改动 0 人。")
    code, out, _ = cli("households", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 8 and lines[-1] == "共 2 户，5 人"
    assert lines[0] == "H00000001  示范镇/东村  active  3 人  本年度: pending, pending, pending"
    assert lines[2] == f"    李*花    {ids[1][:3]}{'*' * 13}{ids[1][-2:]}  spouse  employee  低保"
    assert lines[3].startswith("    王*军    ") and lines[3].endswith("  child   uninsured ")

    bad = write_list(tmp_path / "bad.xlsx", [["示范镇/东村", "", "王大山", "王大山", "12345", "户主",
                                              "居民医保", "", ""]])
    code, _, err = cli("households", "import", str(bad))
    said = [l for l in err.splitlines() if not re.match(r"\d{4}-\d\d-\d\d \d\d:", l)]  # no log lines
    assert code == 1 and said[-3:] == [
        "bad.xlsx: 1 处错误，没有导入任何数据（整份文件要么全部导入，要么都不导入）。",
        "  第2行 身份证号: 身份证号应为18位",
        f"错误报告：{tmp_path / 'bad.errors.csv'}（改正后重新导入）"]
    # (each refusal is a line of its own; a test's background threads may log beside it)
    code, _, err = cli("households", "import", str(tmp_path / "none.xlsx"))
    assert code == 2 and f"huzhu: 找不到文件 {tmp_path / 'none.xlsx'}" in err.splitlines()
    code, _, err = cli("households", "import", str(listed), "--year", "2026/1/1")
    assert code == 2 and "huzhu: --year 应为日期 YYYY-MM-DD，得到 '2026/1/1'" in err.splitlines()
    code, _, err = cli("households", "list", "--village", "北村")
    assert code == 2 and "huzhu: 没有这个村：北村" in err.splitlines()
    code, _, err = cli("households", "list", "--pool", "NOPE")
    assert code == 2 and "huzhu: 没有这个资金池：NOPE" in err.splitlines()

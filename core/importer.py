"""Bulk import of households from a village's xlsx list (how villages actually collect them).

The template (`write_template`) has one row per person, columns
村, 户号, 户主姓名, 姓名, 身份证号, 与户主关系, 医保类型, 类别, 手机号 — 户号, 类别 and 手机号 optional.
Rows are grouped into households by 村 + 户号 when 户号 is given, else by 村 + 户主姓名. 户号 is
either one of our household numbers (H + 8 digits: that household's members are renewed or added)
or the village's own label for a new household (needed when two heads of one village share a
name). A household whose head is already the head of a household of the village is that
household (last year's list imported again).

`import_households` is all-or-nothing per file: every row is checked first (ID number, names,
relation, insurance type, category, phone, village, one head per household, duplicate IDs, IDs
already in another household this year, unknown 户号); any bad row and nothing is written, and the
errors come back row-numbered (`ImportResult.errors`, written as a CSV report by the CLI). A good
file is written in one transaction with bulk inserts. Importing the same file again changes
nothing: people already enrolled in the same household are counted as unchanged, and a file with
nothing new says so.

Built for scale (600,000 members in about half a minute): the sheet's XML streamed through expat
(openpyxl for what that reader does not understand), compact tuples per row, the people looked
up once in chunks, bulk inserts of tuples with ids reserved up front (no per-row round trips;
COPY on PostgreSQL). On a machine with two or more cores a large file is read, and its new ID
numbers encrypted, by a helper process while this one checks and writes (`_Helper`).
"""
from __future__ import annotations

import contextlib
import csv
import enum
import gc
import hashlib
import itertools
import json
import logging
import operator
import os
import pickle
import re
import subprocess
import sys
import zipfile
from xml.parsers import expat
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import JSON, insert, select, text
from sqlalchemy.orm import Session

from core.crypto import PersonalDataVault, mask_name, mask_phone
from core.households import (INSURANCE_WORDS, RELATION_WORDS, check_name, household_number,
                             known_categories, normalise_category, reserve_ids)
from core.ids import IdError, check_id, check_phone
from core.models import (AuditLog, Enrolment, EnrolmentStatus, Household, Member, Relation,
                         SchemeYear, Village, utcnow)
from core.scheme import enrolment_scheme_year, scheme_of, scheme_year_on

log = logging.getLogger("huzhu.importer")
_OUR_NUMBER = re.compile(r"^H\d{8,}$")
COLUMNS = ("村", "户号", "户主姓名", "姓名", "身份证号", "与户主关系", "医保类型", "类别", "手机号")
REQUIRED = ("村", "户主姓名", "姓名", "身份证号", "与户主关系", "医保类型")
SHEET = "名单"
CHUNK = 5000  # rows per bulk insert and per look-up query
MAX_ERRORS = 10000  # errors kept (the report says how many more)
SQLITE_CACHE_KIB = 64 * 1024  # SQLite page cache while importing (the default is 2 MiB)
ANALYZE_MIN_ROWS = 10_000  # rows written from which PostgreSQL's statistics are renewed
GC_THRESHOLD = (50_000, 20, 100)  # while importing: fewer collections of a heap of row tuples

ID_ERROR_TEXT = {
    "length": "身份证号应为18位", "format": "身份证号只能是数字，最后一位可以是X",
    "checksum": "身份证号校验位不对（有一位写错了）", "birth_date": "身份证号中的出生日期不存在",
    "future": "身份证号中的出生日期在今天之后", "too_old": "身份证号中的出生年份太早",
    "province": "身份证号前两位不是省份代码",
}


@dataclass
class RowError:
    row: int  # the spreadsheet's row number (the header is row 1)
    column: str
    message: str


@dataclass
class ImportResult:
    file: str
    sha256: str
    rows: int = 0
    households_new: int = 0
    households_renewed: int = 0
    members_new: int = 0
    enrolments_new: int = 0
    unchanged: int = 0  # people already enrolled in that household this year
    differences: list[RowError] = field(default_factory=list)  # not applied, for information
    errors: list[RowError] = field(default_factory=list)
    more_errors: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> bool:
        return bool(self.households_new or self.members_new or self.enrolments_new)

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "rows": self.rows,
                "households_new": self.households_new,
                "households_renewed": self.households_renewed,
                "members_new": self.members_new, "enrolments_new": self.enrolments_new,
                "unchanged": self.unchanged, "changed": self.changed,
                "errors": [e.__dict__ for e in self.errors], "more_errors": self.more_errors,
                "differences": [d.__dict__ for d in self.differences]}


class ImportError_(Exception):
    """The file cannot be read at all (not an xlsx, no header…)."""


# ---------------------------------------------------------------------------------------------
# The template.

def write_template(path: str | Path, villages: list[str] | None = None) -> Path:
    """An xlsx template: the 名单 sheet with the header, text-formatted number columns and
    drop-downs, and a 说明 sheet with the rules and an example."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    path = Path(path)
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET
    ws.append(list(COLUMNS))
    widths = (16, 12, 10, 10, 22, 12, 12, 10, 14)
    for i, (title, width) in enumerate(zip(COLUMNS, widths), start=1):
        cell = ws.cell(row=1, column=i)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7" if title in REQUIRED else "F2F2F2")
        cell.alignment = Alignment(horizontal="center")
        letter = cell.column_letter
        ws.column_dimensions[letter].width = width
        if title in ("户号", "身份证号", "手机号"):
            ws.column_dimensions[letter].number_format = "@"
            for row in range(2, 2002):  # text format, so Excel keeps all 18 digits
                ws.cell(row=row, column=i).number_format = "@"
    ws.freeze_panes = "A2"

    def choice(column: str, values: list[str], allow_blank: bool) -> None:
        dv = DataValidation(type="list", formula1='"' + ",".join(values) + '"',
                            allow_blank=allow_blank, showErrorMessage=True,
                            errorTitle="请从下拉列表中选择", error="只能填写：" + "、".join(values))
        letter = ws.cell(row=1, column=COLUMNS.index(column) + 1).column_letter
        dv.add(f"{letter}2:{letter}1048576")
        ws.add_data_validation(dv)

    choice("与户主关系", ["户主", "配偶", "子女", "父母", "其他"], False)
    choice("医保类型", ["居民医保", "职工医保", "未参保"], False)
    if villages:
        lists = wb.create_sheet("村名")
        for v in villages:
            lists.append([v])
        dv = DataValidation(type="list", formula1=f"村名!$A$1:$A${len(villages)}",
                            allow_blank=False)
        dv.add("A2:A1048576")
        ws.add_data_validation(dv)
        lists.sheet_state = "hidden"

    notes = wb.create_sheet("说明")
    for line in (
        ["填写说明"],
        ["每人一行，同一户的人写同一个户主姓名；户主本人那一行“与户主关系”填“户主”。"],
        ["村：写“镇/村”或村名，例如 示范镇/东村。"],
        ["户号：新户留空，或填村里自己的户号（同一村有同名的户主时必须填，用来区分）；已登记的户填 H 开头的户号。"],
        ["身份证号：18位，请保持文本格式（不要让 Excel 变成科学计数法）。"],
        ["与户主关系：户主、配偶、子女、父母、其他。医保类型：居民医保、职工医保、未参保。"],
        ["类别：一般人员留空；低保、特困等困难人员填类别，可用：" + "、".join(known_categories())],
        ["手机号：户主那一行填写即可。导入时整份文件要么全部导入，要么（有错误时）一条也不导入。"],
        [],
        ["示例（不要写在“名单”里）："],
        list(COLUMNS),
        ["示范镇/东村", "", "王大山", "王大山", "320582196005171014", "户主", "居民医保", "",
         "13800138000"],
        ["示范镇/东村", "", "王大山", "李小花", "32058219620301102X", "配偶", "职工医保", "低保",
         ""],
    ):
        notes.append(line)
    notes.column_dimensions["A"].width = 100
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# Reading and checking.

def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sheet_rows(path: Path) -> Iterator[tuple[int, tuple]]:
    """(row number, cell values) of the list sheet (名单, else the first): the fast reader,
    falling back to openpyxl's read-only mode for a workbook it does not understand."""
    try:
        reader = _FastSheet(path)
    except (KeyError, ValueError, IndexError, zipfile.BadZipFile, expat.ExpatError, OSError):
        reader = None
    if reader is None:
        yield from _openpyxl_rows(path)
        return
    yield from reader.rows()


def _openpyxl_rows(path: Path) -> Iterator[tuple[int, tuple]]:
    """openpyxl read-only streaming (the reference reader; 4–5 times slower than _FastSheet)."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ImportError_(f"{path.name}: 不是能读取的 xlsx 文件（{type(exc).__name__}）")
    try:
        ws = wb[SHEET] if SHEET in wb.sheetnames else wb.worksheets[0]
        for row in ws.iter_rows():
            cells = [c for c in row if getattr(c, "row", None) is not None]
            if not cells:
                continue
            values: list = []
            for c in cells:
                while len(values) < c.column - 1:
                    values.append(None)
                values.append(c.value)
            yield cells[0].row, tuple(values)
    finally:
        wb.close()


_NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_INT = re.compile(r"^-?\d{1,15}$")


class _FastSheet:
    """The list sheet's XML read with expat, a row at a time: what openpyxl's read-only mode
    does, without building an element per cell (600,000 rows in seconds, not a minute).
    Values: shared and inline strings as str, numbers as int or float, booleans as bool."""

    def __init__(self, path: Path):
        import xml.etree.ElementTree as ET

        self.zip = zipfile.ZipFile(path)
        names = set(self.zip.namelist())
        book = ET.fromstring(self.zip.read("xl/workbook.xml"))
        sheets = [(el.get("name"), el.get(f"{{{_NS_REL}}}id"))
                  for el in book.iter(f"{{{_NS_MAIN}}}sheet")]
        if not sheets:
            raise ValueError("no sheets")
        rels = ET.fromstring(self.zip.read("xl/_rels/workbook.xml.rels"))
        targets = {el.get("Id"): el.get("Target") for el in rels.iter(f"{{{_NS_PKG_REL}}}Relationship")}
        rid = next((r for n, r in sheets if n == SHEET), sheets[0][1])
        target = targets[rid].lstrip("/")
        self.sheet = target if target.startswith("xl/") else "xl/" + target
        if self.sheet not in names:
            raise KeyError(self.sheet)
        self.shared = self._shared_strings() if "xl/sharedStrings.xml" in names else []

    def _shared_strings(self) -> list[str]:
        out: list[str] = []
        parts: list[str] = []
        depth = {"t": 0, "rPh": 0}

        def start(name, _attrs):
            local = name.rpartition(" ")[2]
            if local == "si":
                parts.clear()
            elif local in depth:
                depth[local] += 1

        def end(name):
            local = name.rpartition(" ")[2]
            if local == "si":
                out.append("".join(parts))
            elif local in depth:
                depth[local] -= 1

        def chars(data):
            if depth["t"] and not depth["rPh"]:
                parts.append(data)

        p = expat.ParserCreate(namespace_separator=" ")
        p.buffer_text = True
        p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
        with self.zip.open("xl/sharedStrings.xml") as fh:
            p.ParseFile(fh)
        return out

    def rows(self) -> Iterator[tuple[int, tuple]]:
        # the handlers run some 40 times a row: state in closure variables, element names
        # mapped to their local part once, column letters to numbers once
        shared, int_match, digits = self.shared, _INT.match, "0123456789"
        done: list[tuple[int, tuple]] = []
        cur: list = []
        buf: list[str] = []
        append, clear = cur.append, cur.clear
        local_of: dict[str, str] = {}
        column_of: dict[str, int] = {}
        row, col, kind, collecting, in_is = 0, -1, "n", False, 0

        def local(name):
            local_of[name] = part = name.rpartition(" ")[2]
            return part

        def start(name, attrs):
            nonlocal row, col, kind, collecting, in_is
            tag = local_of.get(name) or local(name)
            if tag == "c":
                ref = attrs.get("r")
                if ref:
                    letters = ref.rstrip(digits)
                    c = column_of.get(letters)
                    if c is None:
                        c = column_of[letters] = _column_index(letters)
                    col = c
                else:
                    col += 1
                kind = attrs.get("t", "n")
                buf.clear()
            elif tag == "v" or (tag == "t" and in_is):
                collecting = True
            elif tag == "is":
                in_is += 1
            elif tag == "row":
                clear()
                col = -1
                r = attrs.get("r")
                row = int(r) if r else row + 1

        def end(name):
            nonlocal collecting, in_is
            tag = local_of.get(name) or local(name)
            if tag == "c":
                while len(cur) < col:
                    append(None)
                value = "".join(buf)
                if kind == "s":
                    value = (shared[int(value)] or None) if value else None
                elif kind == "inlineStr" or kind == "str":
                    value = value or None
                elif kind == "b":
                    value = value == "1"
                elif kind == "e" or value == "":
                    value = None
                elif int_match(value):
                    value = int(value)
                else:
                    value = float(value)
                append(value)
            elif tag == "v" or tag == "t":
                collecting = False
            elif tag == "is":
                in_is -= 1
            elif tag == "row":
                done.append((row, tuple(cur)))

        def chars(data):
            if collecting:
                buf.append(data)

        p = expat.ParserCreate(namespace_separator=" ")
        p.buffer_text = True
        p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, chars
        with self.zip.open(self.sheet) as fh:
            while True:
                block = fh.read(1 << 16)
                p.Parse(block, not block)
                if done:
                    yield from done
                    done.clear()
                if not block:
                    break
        self.zip.close()


def _column_index(letters: str) -> int:
    """A1-style column letters to a 0-based index (A → 0, AA → 26)."""
    col = 0
    for ch in letters:
        if "A" <= ch <= "Z":
            col = col * 26 + ord(ch) - 64
        else:
            break
    return col - 1


def _check_zip(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise ImportError_(f"{path.name}: 不是 xlsx 文件（请在 Excel 里“另存为” .xlsx）")


def _rows(path: Path, source: Iterator[tuple[int, tuple]] | None = None
          ) -> Iterator[tuple[int, tuple]]:
    """(row number, cells in COLUMNS order) for each non-empty row of the list sheet (read
    here, or by the helper process: `source`)."""
    it = iter(source if source is not None else _sheet_rows(path))
    first = next(it, None)
    header = first[1] if first else None
    if header is None:
        raise ImportError_(f"{path.name}: 表格是空的；请用 huzhu households template 生成的模板")
    names = [_text(h) for h in header]
    index: dict[str, int] = {}
    for col in COLUMNS:
        if col in names:
            index[col] = names.index(col)
        elif col in REQUIRED:
            raise ImportError_(f"{path.name} 第1行: 缺少“{col}”列；表头应为："
                               + "、".join(COLUMNS))
    # A missing optional column reads the cell `absent`, which every row is cut or padded to
    # have as None (never a cell of another column, such as a 备注 column to the right).
    missing = any(col not in index for col in COLUMNS)
    absent = max(index.values()) + 1
    pick = operator.itemgetter(*[index.get(col, absent) for col in COLUMNS])
    padding = (None,) * (absent + 1)
    for number, row in it:
        if missing or len(row) <= absent:
            row = tuple(row[:absent]) + padding[min(len(row), absent):]
        cells = pick(row)
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        yield number, cells


# ---------------------------------------------------------------------------------------------
# A second process: on a machine with two or more cores, a large file's sheet is read (unzipped
# and parsed) in a helper process while this one checks the rows, and the helper encrypts the
# new members' ID numbers while this one inserts the previous chunk. Every check, the
# encryption and every write are the same as without it; only who does the work differs.

PARALLEL_MIN_BYTES = 1 << 20  # smaller files are read here (starting the helper takes ~0.5 s)
_BATCH = 2000  # rows a message


def _use_helper(path: Path) -> bool:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores > 1 and path.stat().st_size >= PARALLEL_MIN_BYTES


def _helper_main() -> None:
    """The helper process (`python -c`, see _Helper): read the path and the vault from stdin,
    send the sheet's rows in batches, then encrypt what is asked, until told to stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the importing process
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the messages
    inp = os.fdopen(0, "rb")
    gc.set_threshold(*GC_THRESHOLD)
    try:
        _helper_work(inp, out)
    except (OSError, EOFError):  # the importing process is gone (EINVAL on Windows pipes)
        pass


def _helper_work(inp, out) -> None:
    def send(message) -> None:
        pickle.dump(message, out, pickle.HIGHEST_PROTOCOL)
        out.flush()

    path, vault = pickle.load(inp)
    try:
        batch: list = []
        for item in _sheet_rows(Path(path)):
            batch.append(item)
            if len(batch) == _BATCH:
                send(("rows", batch))
                batch = []
        send(("rows", batch))
        send(("end", None))
    except Exception as exc:  # raised again in the importing process
        try:
            send(("error", exc))
        except Exception:
            send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return
    encrypt = vault.encrypt
    while True:
        kind, payload = pickle.load(inp)
        if kind != "encrypt":
            return
        send(("encrypted", [encrypt(n) for n in payload]))


class _HelperGone(RuntimeError):
    pass


class _Helper:
    """The importing process's end of the helper: a fresh interpreter running _helper_main of
    this very file (nothing of this process, its database connections included, is
    inherited), pickled messages over its stdin and stdout."""

    def __init__(self, path: Path, vault: PersonalDataVault):
        import subprocess

        root = str(Path(__file__).resolve().parents[1])
        code = (f"import sys; sys.path.insert(0, {root!r}); "
                "from core.importer import _helper_main; _helper_main()")
        self.path = path
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        with contextlib.suppress(ImportError, AttributeError, OSError):  # Linux: more room
            import fcntl

            fcntl.fcntl(self.process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        self.reading, self.asked, self.gone = True, 0, False
        try:
            self._send((str(path), vault))
        except OSError:
            self.close()
            raise

    def _send(self, message) -> None:
        pickle.dump(message, self.process.stdin, pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def _recv(self, expected: str):
        try:
            kind, payload = pickle.load(self.process.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):
            # gone, possibly half-way through a message (a truncated pickle): the caller takes
            # over from the last whole message
            self.process.kill()
            try:
                code = self.process.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            raise _HelperGone(f"the import's helper process stopped (exit code {code})") from None
        if kind == "error":
            raise payload
        assert kind == expected or (expected == "rows" and kind == "end"), kind
        return kind, payload

    def rows(self) -> Iterator[tuple[int, tuple]]:
        """The sheet's rows. Should the helper end on the way (it could not start, was killed
        for memory…), the rest is read here: the same reader gives the same rows, so those
        already received are skipped."""
        received = 0
        while True:
            try:
                kind, batch = self._recv("rows")
            except _HelperGone as exc:
                log.warning("%s after %d rows; the rest of the file is read without it",
                            exc, received)
                self.reading, self.gone = False, True
                yield from itertools.islice(_sheet_rows(self.path), received, None)
                return
            if kind == "end":
                self.reading = False
                return
            received += len(batch)
            yield from batch

    def encrypt(self, numbers: list[str]) -> None:
        """Ask for these numbers encrypted, once the answer to the last ask is taken (each
        side writes only while the other reads: no pipe fills up on both ends)."""
        assert not self.reading and not self.asked
        self.asked = 1
        try:
            self._send(("encrypt", numbers))
        except OSError:  # gone: encrypted() says so
            pass

    def encrypted(self) -> list[str] | None:
        """The numbers last asked for, encrypted; None if the helper is gone (`gone` then
        says so): encrypt them here."""
        try:
            tokens = self._recv("encrypted")[1]
        except _HelperGone as exc:
            log.warning("%s; the ID numbers are encrypted without it", exc)
            tokens, self.gone = None, True
        self.asked = 0
        return tokens

    def close(self) -> None:
        import subprocess

        if self.reading or self.asked:  # busy with what this import no longer needs
            self.process.kill()
        elif not self.gone:
            with contextlib.suppress(OSError):
                self._send(("stop", None))
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


@contextlib.contextmanager
def _helper_for(path: Path, vault: PersonalDataVault) -> Iterator[_Helper | None]:
    helper = None
    if _use_helper(path):
        try:
            helper = _Helper(path, vault)
        except (OSError, ValueError) as exc:  # no processes to be had: do it all here
            log.warning("no helper process for the import (%s); it runs in this one alone", exc)
            helper = None
    try:
        yield helper
    finally:
        if helper is not None:
            helper.close()


# one checked row: (row, village_id, key, name, id_number, birth_date, relation, insurance,
# category, phone, head_name, id_hash)
_R_ROW, _R_VILLAGE, _R_KEY, _R_NAME, _R_ID, _R_BIRTH, _R_REL, _R_INS, _R_CAT, _R_PHONE, \
    _R_HEAD, _R_HASH = range(12)


class _Checker:
    def __init__(self, session: Session, vault: PersonalDataVault, today: date,
                 year_on: date | None, result: ImportResult):
        self.s, self.vault, self.today, self.year_on = session, vault, today, year_on
        self.result = result
        self.villages: dict[str, Village | None] = {}
        self.years: dict[int, SchemeYear | None] = {}
        self.categories: dict[tuple[int, str], str | None | ValueError] = {}
        self.excluded_of: dict[int, frozenset[str]] = {}
        self.all_villages = list(session.scalars(select(Village)))
        self.pool_of = {v.id: v.pool_id for v in self.all_villages}
        self.village_names = {v.id: v.full_name for v in self.all_villages}

    def error(self, row: int, column: str, message: str) -> None:
        if len(self.result.errors) < MAX_ERRORS:
            self.result.errors.append(RowError(row, column, message))
        else:
            self.result.more_errors += 1

    def village(self, text: str) -> Village | None:
        if text not in self.villages:
            t = text.replace("／", "/")
            found = [v for v in self.all_villages if v.full_name == t] or \
                [v for v in self.all_villages if v.name == t]
            self.villages[text] = found[0] if len(found) == 1 else None
        return self.villages[text]

    def year(self, pool_id: int) -> SchemeYear | None:
        if pool_id not in self.years:
            self.years[pool_id] = (scheme_year_on(self.s, pool_id, self.year_on) if self.year_on
                                   else enrolment_scheme_year(self.s, pool_id, self.today))
        return self.years[pool_id]

    def excluded(self, pool_id: int) -> frozenset[str]:
        """The categories the pool's scheme year does not take in."""
        if pool_id not in self.excluded_of:
            self.excluded_of[pool_id] = frozenset(
                scheme_of(self.year(pool_id)).contribution.excluded)
        return self.excluded_of[pool_id]

    def category(self, pool_id: int, text: str):
        key = (pool_id, text)
        if key not in self.categories:
            year = self.year(pool_id)
            scheme = scheme_of(year) if year else None
            try:
                self.categories[key] = normalise_category(text, scheme)
            except ValueError as exc:
                self.categories[key] = exc
        return self.categories[key]


def _check_rows(path: Path, ck: _Checker, helper: _Helper | None = None) -> list[tuple]:
    rows: list[tuple] = []
    seen_ids: dict[str, int] = {}
    error = ck.error
    relation_words, insurance_words = RELATION_WORDS, INSURANCE_WORDS
    today, lookup_hash = ck.today, ck.vault.lookup_hash
    closed_pools: set[int] = set()
    last_head: tuple = (None, None)  # a household's rows repeat the head's name: checked once
    for number, (v_raw, hh_raw, head_raw, name_raw, id_raw, rel_raw, ins_raw, cat_raw,
                 phone_raw) in _rows(path, helper.rows() if helper else None):
        ck.result.rows += 1
        bad = False
        v_text = _text(v_raw)
        village = ck.village(v_text) if v_text else None
        if village is None:
            error(number, "村", f"没有这个村：“{v_text}”" if v_text else "村不能为空")
            bad = True
        elif ck.year(village.pool_id) is None:
            if village.pool_id not in closed_pools:
                closed_pools.add(village.pool_id)
                when = (f"{ck.year_on} 所在的互助年度" if ck.year_on else "现在开放登记的互助年度")
                error(number, "村", f"{village.full_name} 所属资金池没有{when}；"
                                   "请用 --year YYYY-MM-DD 指定年度内的一天")
            bad = True
        hh_no = _text(hh_raw).upper()
        if len(hh_no) > 32:
            error(number, "户号", "户号太长（最多32个字符）")
            bad = True
        if head_raw == last_head[0] and head_raw.__class__ is str:
            head = last_head[1]
        else:
            head = check_name(_text(head_raw))
            last_head = (head_raw, head)
        if head is None:
            error(number, "户主姓名", "户主姓名不能为空，只写汉字或字母")
            bad = True
        name = check_name(_text(name_raw))
        if name is None:
            error(number, "姓名", "姓名不能为空，只写汉字或字母")
            bad = True
        idn = None
        if isinstance(id_raw, float):
            error(number, "身份证号", "身份证号被 Excel 存成了数字（丢了位数）；请把这一列设为文本格式后重新填写")
            bad = True
        else:
            try:
                idn = check_id(_text(id_raw), today)
            except IdError as e:
                error(number, "身份证号", ID_ERROR_TEXT[e.code])
                bad = True
        if idn is not None:
            first = seen_ids.get(idn.number)
            if first is not None:
                error(number, "身份证号", f"与第{first}行的身份证号相同，一个人只能登记一次")
                bad = True
            else:
                seen_ids[idn.number] = number
        relation = relation_words.get(_text(rel_raw))
        if relation is None:
            error(number, "与户主关系", "应填 户主、配偶、子女、父母 或 其他")
            bad = True
        insurance = insurance_words.get(_text(ins_raw))
        if insurance is None:
            error(number, "医保类型", "应填 居民医保、职工医保 或 未参保")
            bad = True
        category = None
        cat_text = _text(cat_raw)
        if cat_text and village is not None and ck.year(village.pool_id) is not None:
            category = ck.category(village.pool_id, cat_text)
            if isinstance(category, ValueError):
                error(number, "类别", f"不认识的类别“{cat_text[:16]}”；可用："
                      + "、".join(known_categories(scheme_of(ck.year(village.pool_id)))))
                bad = True
                category = None
            elif category is not None and category in ck.excluded(village.pool_id):
                error(number, "类别", f"“{category}”人员按本地方案不能参加互助")
                bad = True
        phone = None
        phone_text = _text(phone_raw)
        if phone_text:
            phone = check_phone(phone_text)
            if phone is None:
                error(number, "手机号", "手机号应为1开头的11位数字，座机请带区号")
                bad = True
        if bad:
            continue
        key = ("N", village.id, hh_no) if hh_no else ("V", village.id, head)
        rows.append((number, village.id, key, name, idn.number, idn.birth_date, relation,
                     insurance, category, phone, head, lookup_hash(idn.number)))
    return rows


@dataclass
class _Group:
    key: tuple
    rows: list[tuple]
    household_id: int | None = None  # an existing household
    number: str | None = None
    states: list | None = None  # per row: _NEW, _UNCHANGED or a known member's id


def _chunks(items: list, n: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _check_groups(ck: _Checker, rows: list[tuple]) -> list[_Group]:
    s, error = ck.s, ck.error
    groups: dict[tuple, _Group] = {}
    for r in rows:
        g = groups.get(r[_R_KEY])
        if g is None:
            groups[r[_R_KEY]] = g = _Group(r[_R_KEY], [])
        g.rows.append(r)
    # existing households named by 户号
    numbers = [k[2] for k in groups if k[0] == "N"]
    by_number: dict[str, tuple[int, int]] = {}
    for chunk in _chunks(numbers):
        for hid, num, vid in s.execute(select(Household.id, Household.number,
                                              Household.village_id)
                                       .where(Household.number.in_(chunk))):
            by_number[num] = (hid, vid)
    # last year's households, by their head's ID
    head_hashes = [next((r[_R_HASH] for r in g.rows if r[_R_REL] is Relation.head), None)
                   for g in groups.values() if g.key[0] == "V" or g.key[2] not in by_number]
    by_head: dict[tuple[str, int], tuple[int, str]] = {}
    for chunk in _chunks([h for h in head_hashes if h]):
        # the newest wins: sorted here, as ORDER BY member.id makes SQLite walk the whole
        # member table in id order instead of using the index on the hash
        for h, hid, vid, num, _mid in sorted(s.execute(
                select(Member.id_number_hash, Member.household_id, Household.village_id,
                       Household.number, Member.id)
                .join(Household, Household.id == Member.household_id)
                .where(Member.id_number_hash.in_(chunk), Member.relation == Relation.head)),
                key=operator.itemgetter(4)):
            by_head[(h, vid)] = (hid, num)
    for g in groups.values():
        heads = [r for r in g.rows if r[_R_REL] is Relation.head]
        first = g.rows[0][_R_ROW]
        if len(heads) > 1:
            rows_text = "、".join(str(r[_R_ROW]) for r in heads)
            error(heads[1][_R_ROW], "与户主关系",
                  f"同一户有两个户主（第{rows_text}行）；同名户主请分别填户号，或改正关系")
        heads_named = {r[_R_HEAD] for r in g.rows}
        if g.key[0] == "N" and len(heads_named) > 1:
            error(first, "户主姓名", f"户号 {g.key[2]} 的成员写了不同的户主姓名")
        if g.key[0] == "N" and g.key[2] in by_number:
            found = by_number[g.key[2]]
            g.household_id, g.number = found[0], g.key[2]
            if found[1] != g.key[1]:
                error(first, "户号", f"户号 {g.key[2]} 不属于这个村")
        elif g.key[0] == "N" and _OUR_NUMBER.match(g.key[2]):
            error(first, "户号", f"没有户号 {g.key[2]}；新户请把户号留空（或填村里自己的户号）")
        else:
            if not heads:
                error(first, "与户主关系",
                      f"户主 {mask_name(g.rows[0][_R_HEAD])} 这一户没有“户主”那一行（与户主关系填“户主”）")
                continue
            if heads[0][_R_NAME] != heads[0][_R_HEAD]:
                error(heads[0][_R_ROW], "姓名", "户主那一行的姓名应与户主姓名相同")
            found = by_head.get((heads[0][_R_HASH], g.key[1]))
            if found is not None:
                g.household_id, g.number = found
        if g.household_id is None and not heads:
            error(first, "与户主关系", "新户应有一行“户主”")
    return list(groups.values())


GROUP_CHUNK = 2000  # households per look-up / write round

# what writing a checked row means (_Group.states): a new member, or nothing (already enrolled
# in that household this year); a positive number is the id of a known member of the household
# who gets this year's enrolment
_NEW, _UNCHANGED = None, 0

# the columns each bulk insert fills, in the order of its row tuples
_HOUSEHOLD_COLUMNS = ("id", "number", "pool_id", "village_id", "phone_enc", "phone_masked",
                      "status", "created_at")
_MEMBER_COLUMNS = ("id", "household_id", "name", "id_number_enc", "id_number_hash",
                   "id_number_masked", "birth_year", "relation", "insurance", "category",
                   "created_at")
_ENROLMENT_COLUMNS = ("member_id", "scheme_year_id", "id_number_hash", "status", "created_at")
_AUDIT_COLUMNS = ("at", "actor", "action", "entity", "entity_id", "before", "after")


def _memo(process: Callable) -> Callable:
    """A column's bind processor, remembering its results (dates, enums, the import's time)."""
    done: dict = {}

    def run(value):
        try:
            return done[value]
        except KeyError:
            done[value] = out = process(value)
            return out
    return run


def _bulk_insert(session: Session, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert tuples of `columns` values, in the session's transaction: on PostgreSQL with COPY
    (several times faster than INSERT), on SQLite with one executemany of the DB-API driver,
    the values converted by the columns' own SQLAlchemy types first (what Core would do per
    row and per parameter, done here per column and per distinct value)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(f'COPY "{table.name}" ({", ".join(columns)}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([v.value if isinstance(v, enum.Enum) else
                                    (json.dumps(v, ensure_ascii=False, default=str)
                                     if isinstance(v, dict) else v) for v in row])
        return
    if dialect.paramstyle != "qmark":  # not SQLite: Core's executemany
        session.execute(insert(table), [dict(zip(columns, row)) for row in rows])
        return
    processors = []
    for name in columns:
        type_ = table.c[name].type
        process = type_.dialect_impl(dialect).bind_processor(dialect)
        if process is not None and not isinstance(type_, JSON):
            process = _memo(process)
        processors.append(process)
    if any(processors):
        values = zip(*rows)
        rows = list(zip(*[map(p, v) if p else v for p, v in zip(processors, values)]))
    q = dialect.identifier_preparer
    sql = (f"INSERT INTO {q.format_table(table)} ({', '.join(q.quote(c) for c in columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    session.connection().exec_driver_sql(sql, rows)


def _existing_for(ck: _Checker, groups: list[_Group]) -> tuple[dict, dict]:
    """For a chunk of households: who is already enrolled this year ({hash: (household_id,
    member_id, number)}) and the members of the existing households ({(household_id, hash):
    (household_id, hash, id, name, relation, insurance, category)})."""
    s = ck.s
    enrolled: dict[str, tuple[int, int, str]] = {}
    per_year: dict[int, list[str]] = {}
    for g in groups:
        year = ck.year(ck.pool_of[g.rows[0][_R_VILLAGE]])
        per_year.setdefault(year.id, []).extend(r[_R_HASH] for r in g.rows)
    for year_id, hashes in per_year.items():
        for chunk in _chunks(hashes):
            for h, mid, hid, num in s.execute(
                    select(Enrolment.id_number_hash, Member.id, Member.household_id,
                           Household.number)
                    .join(Member, Member.id == Enrolment.member_id)
                    .join(Household, Household.id == Member.household_id)
                    .where(Enrolment.scheme_year_id == year_id,
                           Enrolment.id_number_hash.in_(chunk))):
                enrolled[h] = (hid, mid, num)
    members: dict[tuple[int, str], tuple] = {}
    existing = [g.household_id for g in groups if g.household_id is not None]
    for chunk in _chunks(existing):
        for row in s.execute(select(Member.household_id, Member.id_number_hash, Member.id,
                                    Member.name, Member.relation, Member.insurance,
                                    Member.category).where(Member.household_id.in_(chunk))):
            members[(row[0], row[1])] = tuple(row)
    return enrolled, members


def _check_existing(ck: _Checker, groups: list[_Group]) -> None:
    """Refuse people enrolled this year in another household, and note what writing each row
    means (`_Group.states`) and where it differs from what is on file (a chunk at a time; the
    only look-ups of the import's people, so writing needs none)."""
    result, error = ck.result, ck.error
    for chunk in _chunks(groups, GROUP_CHUNK):
        enrolled, members = _existing_for(ck, chunk)
        for g in chunk:
            hid, states = g.household_id, []
            for r in g.rows:
                h = r[_R_HASH]
                e = enrolled.get(h)
                m = members.get((hid, h)) if hid is not None else None
                if e is not None:
                    if e[0] != hid:
                        error(r[_R_ROW], "身份证号",
                              f"这个人本年度已经登记在户号 {e[2]}，一个人一年只能在一户参加")
                    states.append(_UNCHANGED)
                elif m is not None:
                    states.append(m[2])
                else:
                    states.append(_NEW)
                if m is not None:
                    _differences(result, r, m)
            g.states = states
    if result.errors:
        result.differences.clear()  # only a file that is imported says what it left alone


# ---------------------------------------------------------------------------------------------
# Writing.

def _write(ck: _Checker, groups: list[_Group], actor: str, file_name: str,
           progress: Callable[[str], None] | None, helper: _Helper | None = None) -> None:
    """Insert, a chunk of households at a time: new households (ids reserved up front),
    new members (ID encrypted), pending enrolments, one audit row per household changed.
    With a helper process, a chunk's ID numbers are encrypted there while the chunk before
    is inserted here."""
    s = ck.s
    now = utcnow()
    new_groups = [g for g in groups if g.household_id is None]
    new_ids = set()
    for hid, g in zip(reserve_ids(s, Household.__table__, len(new_groups)), new_groups):
        g.household_id, g.number = hid, household_number(hid)
        new_ids.add(hid)
    encrypt = ck.vault.encrypt

    def numbers(prepared: list) -> list[str]:
        return [r[_R_ID] for r, _hid, _year in prepared[1]]

    def take_encrypted(prepared: list, helper: _Helper) -> None:
        tokens = helper.encrypted()  # None: the helper is gone
        prepared.append(tokens if tokens is not None else
                        [encrypt(n) for n in numbers(prepared)])

    if helper is not None and helper.gone:
        helper = None
    waiting = None  # the chunk prepared before, its ID numbers being encrypted
    done_rows = 0
    for chunk in _chunks(groups, GROUP_CHUNK):
        prepared = _prepare(ck, chunk, new_ids, actor, file_name, now)
        if waiting is not None and helper is not None:
            take_encrypted(waiting, helper)
            if helper.gone:
                helper = None
        if helper is None:
            prepared.append([encrypt(n) for n in numbers(prepared)])
        else:
            helper.encrypt(numbers(prepared))
        if waiting is not None:
            done_rows = _insert(ck, waiting, now, done_rows, progress)
        waiting = prepared
    if waiting is not None:
        if helper is not None:
            take_encrypted(waiting, helper)
        _insert(ck, waiting, now, done_rows, progress)


def _prepare(ck: _Checker, chunk: list[_Group], new_ids: set[int], actor: str,
             file_name: str, now) -> list:
    """What a chunk of households writes: [household rows, (row, household id, year id) of
    new members, enrolment rows of known members, audit rows, number of file rows]."""
    result, pool_of = ck.result, ck.pool_of
    households, new_members, enrolments, audits = [], [], [], []
    pending = EnrolmentStatus.pending
    rows = 0
    for g in chunk:
        head = next((r for r in g.rows if r[_R_REL] is Relation.head), g.rows[0])
        year_id = ck.year(pool_of[head[_R_VILLAGE]]).id
        if g.household_id in new_ids:
            phone = head[_R_PHONE] or next((r[_R_PHONE] for r in g.rows if r[_R_PHONE]), None)
            households.append((g.household_id, g.number, pool_of[head[_R_VILLAGE]],
                               head[_R_VILLAGE], ck.vault.encrypt(phone) if phone else None,
                               mask_phone(phone), "active", now))
        added = renewed = 0
        for r, state in zip(g.rows, g.states):
            if state is _NEW:
                new_members.append((r, g.household_id, year_id))
                added += 1
            elif state:
                enrolments.append((state, year_id, r[_R_HASH], pending, now))
                renewed += 1
            else:
                result.unchanged += 1
        rows += len(g.rows)
        if added or renewed:
            if g.household_id not in new_ids:
                result.households_renewed += 1
            audits.append((
                now, actor,
                "household.import" if g.household_id in new_ids else "household.import_update",
                "household", g.number, None,
                {"file": file_name, "scheme_year_id": year_id,
                 "village": ck.village_names[head[_R_VILLAGE]],
                 "members_new": added, "enrolments_renewed": renewed,
                 "enrolment": "pending"}))
    return [households, new_members, enrolments, audits, rows]


def _insert(ck: _Checker, prepared: list, now, done_rows: int,
            progress: Callable[[str], None] | None) -> int:
    """Write a prepared chunk (its encrypted ID numbers appended); the rows written so far."""
    s, result = ck.s, ck.result
    households, new_members, enrolments, audits, rows, tokens = prepared
    if households:
        _bulk_insert(s, Household.__table__, _HOUSEHOLD_COLUMNS, households)
        result.households_new += len(households)
    member_ids = reserve_ids(s, Member.__table__, len(new_members))
    members = []
    pending = EnrolmentStatus.pending
    for mid, (r, hid, year_id), token in zip(member_ids, new_members, tokens):
        n = r[_R_ID]
        members.append((mid, hid, r[_R_NAME], token, r[_R_HASH], n[:3] + "*" * 13 + n[-2:],
                        r[_R_BIRTH].year, r[_R_REL], r[_R_INS], r[_R_CAT], now))
        enrolments.append((mid, year_id, r[_R_HASH], pending, now))
    if members:
        _bulk_insert(s, Member.__table__, _MEMBER_COLUMNS, members)
        result.members_new += len(members)
    if enrolments:
        _bulk_insert(s, Enrolment.__table__, _ENROLMENT_COLUMNS, enrolments)
        result.enrolments_new += len(enrolments)
    if audits:
        _bulk_insert(s, AuditLog.__table__, _AUDIT_COLUMNS, audits)
    before, done_rows = done_rows, done_rows + rows
    if progress and (done_rows // 150_000 != before // 150_000 or done_rows == result.rows):
        progress(f"written {done_rows} of {result.rows} rows")
    return done_rows


def _differences(result: ImportResult, r: tuple, m: tuple) -> None:
    changed = []
    if m[3] != r[_R_NAME]:
        changed.append("姓名")
    if m[4] != r[_R_REL]:
        changed.append("与户主关系")
    if m[5] != r[_R_INS]:
        changed.append("医保类型")
    if (m[6] or None) != r[_R_CAT]:
        changed.append("类别")
    if changed and len(result.differences) < MAX_ERRORS:
        result.differences.append(RowError(r[_R_ROW], "、".join(changed),
                                           "与已登记的信息不同，未修改；如需修改请联系管理员"))


def import_households(session: Session, vault: PersonalDataVault, path: str | Path, *,
                      actor: str, today: date, year_on: date | None = None,
                      progress: Callable[[str], None] | None = None) -> ImportResult:
    """Check the whole file; if every row is good, write it (in the caller's transaction).
    Returns the result; `result.errors` non-empty means nothing was written."""
    path = Path(path)
    result = ImportResult(file=path.name, sha256=_file_sha256(path))
    with _importing(session):
        _import(session, vault, path, result, actor, today, year_on, progress)
    return result


@contextlib.contextmanager
def _importing(session: Session) -> Iterator[None]:
    """For the import's duration: the cyclic garbage collector runs less often (the import
    holds a million small tuples and makes few cycles; each full collection walks them all),
    and on SQLite the connection's page cache is 64 MiB instead of 2 (the indexes on ID hashes
    are written in random order). Both set back afterwards; durability is not touched."""
    threshold = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    raw = cache = None
    try:
        if session.get_bind().dialect.name == "sqlite":
            raw = session.connection().connection.driver_connection
            cache = raw.execute("PRAGMA cache_size").fetchone()[0]
            raw.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        yield
    finally:
        gc.set_threshold(*threshold)
        if raw is not None:
            raw.execute(f"PRAGMA cache_size={int(cache)}")


def _import(session: Session, vault: PersonalDataVault, path: Path, result: ImportResult,
            actor: str, today: date, year_on: date | None,
            progress: Callable[[str], None] | None) -> None:
    _check_zip(path)
    with _helper_for(path, vault) as helper:
        ck = _Checker(session, vault, today, year_on, result)
        _check_and_write(ck, path, actor, progress, helper)


def _check_and_write(ck: _Checker, path: Path, actor: str,
                     progress: Callable[[str], None] | None, helper: _Helper | None) -> None:
    from core.audit import audit

    session, result = ck.s, ck.result
    rows = _check_rows(path, ck, helper)
    if progress:
        progress(f"read {result.rows} rows")
    if result.errors:
        return
    groups = _check_groups(ck, rows)
    del rows
    _check_existing(ck, groups)
    if result.errors:
        result.errors.sort(key=lambda e: e.row)
        return
    if progress:
        progress(f"checked {len(groups)} households")
    _write(ck, groups, actor, path.name, progress, helper)
    if session.get_bind().dialect.name == "postgresql" and \
            result.members_new + result.enrolments_new >= ANALYZE_MIN_ROWS:
        # statistics for what was just loaded, as PostgreSQL advises after a bulk load; without
        # them (autovacuum off, or not yet run) the next import's look-ups by ID hash scan the
        # tables, and plans cached while the tables were small (psycopg prepares a statement
        # run five times) are planned again
        session.execute(text("ANALYZE " + ", ".join(
            t.name for t in (Household.__table__, Member.__table__, Enrolment.__table__,
                             AuditLog.__table__))))
    if result.changed:
        audit(session, actor, "households.import", "file", result.sha256[:16], None,
              {k: v for k, v in result.to_json().items() if k not in ("errors", "differences")})


def write_report(result: ImportResult, path: str | Path) -> Path:
    """The row-numbered error report (CSV with BOM, opens in Excel); no personal numbers."""
    path = Path(path)
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["行号", "列", "问题"])
        for e in result.errors:
            w.writerow([e.row, e.column, e.message])
        if result.more_errors:
            w.writerow(["", "", f"另有 {result.more_errors} 处错误未列出"])
    return path

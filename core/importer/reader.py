"""Reading the list sheet of an xlsx file: a fast expat reader of the sheet's XML, openpyxl for
what it does not understand, and the rows in COLUMNS order."""
from __future__ import annotations

import hashlib
import operator
import re
import zipfile
from xml.parsers import expat
from pathlib import Path
from typing import Iterator

from core.importer.common import COLUMNS, REQUIRED, SHEET, ImportError_, _text


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

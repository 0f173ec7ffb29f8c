"""What the import's parts share: the list's columns, the result with its row-numbered errors,
the error for a file that cannot be read at all, and small helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


COLUMNS = ("村", "户号", "户主姓名", "姓名", "身份证号", "与户主关系", "医保类型", "类别", "手机号",
           "上年参加")
# 上年参加 (是/否): earlier participation the database does not hold (the continuity bonus)
CONTINUED_WORDS = {"是": True, "参加": True, "已参加": True, "Y": True, "y": True, "1": True,
                   "否": False, "未参加": False, "N": False, "n": False, "0": False}
REQUIRED = ("村", "户主姓名", "姓名", "身份证号", "与户主关系", "医保类型")
SHEET = "名单"
CHUNK = 5000  # rows per bulk insert and per look-up query
MAX_ERRORS = 10000  # errors kept (the report says how many more)
SQLITE_CACHE_KIB = 64 * 1024  # SQLite page cache while importing (the default is 2 MiB)
ANALYZE_MIN_ROWS = 10_000  # rows written from which PostgreSQL's statistics are renewed
GC_THRESHOLD = (50_000, 20, 100)  # while importing: fewer collections of a heap of row tuples


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


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _chunks(items: list, n: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]

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
numbers encrypted, by a helper process while this one checks and writes (core/importer/helper.py).

The package, one module per job: `template` (the xlsx template), `reader` (the sheet's rows),
`helper` (the helper process and its pipe protocol), `checks` (rows, households, what is on
file), `writer` (the bulk inserts), `common` (columns, the result, errors); this module runs
them in order (`import_households`) and writes the error report.
"""
from __future__ import annotations

import contextlib
import csv
import gc
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.crypto import PersonalDataVault
from core.importer.checks import _check_existing, _check_groups, _check_rows, _Checker
from core.importer.common import (ANALYZE_MIN_ROWS, COLUMNS, GC_THRESHOLD, REQUIRED, SHEET,
                                  SQLITE_CACHE_KIB, ImportError_, ImportResult, RowError)
from core.importer.helper import _Helper, _helper_for
from core.importer.reader import _check_zip, _file_sha256
from core.importer.template import write_template
from core.importer.writer import _write
from core.models import AuditLog, Enrolment, Household, Member

__all__ = ["COLUMNS", "REQUIRED", "SHEET", "ImportError_", "ImportResult", "RowError",
           "import_households", "write_report", "write_template"]


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

"""The DRG catalogue (CHS-DRG / CN-DRG groups) and ICD-10 name look-up.

Two file formats, UTF-8 (a BOM, blank lines, CRLF and `#` comment lines are tolerated):
- the CHS-DRG text format: `code name` per line (DRG.dat), the name after the first space;
- CSV: `code,name` with that header (chosen by the .csv suffix).
`import_catalog` checks the whole file before writing anything: one bad line and nothing is
imported, the error names the line.

The national CHS-DRG 1.1 group list (628 groups, the codes the preset schemes' quota tables use)
is installed with the package (core/data/chs-drg-1.1: DRG.dat from the OpenDRG project, unchanged,
its Apache-2.0 LICENSE and a NOTICE). `ensure_catalog` loads it into an empty catalogue; `huzhu db
upgrade`, `huzhu serve` and `huzhu scheme load` call it, so a fresh database knows the groups.
A county's own list is imported on top with `huzhu catalog import FILE`.
"""
from __future__ import annotations

import csv
import io
import re
from functools import lru_cache
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core.config import ROOT
from core.models import DrgGroup

SAMPLE_CATALOG = ROOT / "config" / "drg" / "sample.dat"
CHS_DRG_11 = Path(__file__).resolve().parent / "data" / "chs-drg-1.1" / "DRG.dat"

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")
NAME_MAX = 128


class CatalogError(Exception):
    """A catalogue file is wrong; the message names the file and the line."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogError(f"{path}: 找不到文件")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path.name}: 不是 UTF-8 编码（第 {exc.start} 字节）")


def parse_catalog(path: str | Path) -> list[tuple[str, str]]:
    """[(code, name)] from a catalogue file, in file order. Raises CatalogError naming the line."""
    path = Path(path)
    text = _read_text(path)
    is_csv = path.suffix.lower() == ".csv"
    groups: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    header_seen = not is_csv

    for number, raw in enumerate(io.StringIO(text, newline=""), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(message: str) -> CatalogError:
            return CatalogError(f"{path.name} 第{number}行: {message}: {line[:60]!r}")

        if is_csv:
            row = [cell.strip() for cell in next(csv.reader([line]))]
            if not header_seen:
                if [cell.lower() for cell in row] != ["code", "name"]:
                    raise fail("CSV 第一行应为表头 code,name")
                header_seen = True
                continue
            if len(row) != 2:
                raise fail("应为 code,name 两列")
        else:
            row = line.split(None, 1)
            if len(row) != 2:
                raise fail("应为 病种代码 空格 病种名称")
        code, name = row[0], row[1].strip()
        if not _CODE.match(code):
            raise fail(f"病种代码应为大写字母和数字（最长 16 位），得到 {code!r}")
        if not name or len(name) > NAME_MAX:
            raise fail(f"病种名称应为 1–{NAME_MAX} 个字符")
        if code in seen:
            raise fail(f"病种代码 {code} 与第{seen[code]}行重复")
        seen[code] = number
        groups.append((code, name))
    if not groups:
        raise CatalogError(f"{path.name}: 没有任何病种")
    return groups


def import_catalog(session: Session, path: str | Path) -> tuple[int, int]:
    """Upsert the file's groups into drg_group: (added, updated) — updated counts groups whose
    name changed. Groups not in the file are kept (quota tables may refer to them)."""
    groups = parse_catalog(path)
    existing = {g.code: g for g in session.scalars(select(DrgGroup))}
    added = updated = 0
    for code, name in groups:
        row = existing.get(code)
        if row is None:
            session.add(DrgGroup(code=code, name=name))
            added += 1
        elif row.name != name:
            row.name = name
            updated += 1
    session.flush()
    return added, updated


def ensure_catalog(session: Session, path: str | Path = CHS_DRG_11) -> int:
    """Load the packaged CHS-DRG 1.1 group list if the catalogue is empty: the number of groups
    added (0 when it already had groups; those are left as they are)."""
    if session.scalar(select(DrgGroup.code).limit(1)) is not None:
        return 0
    groups = parse_catalog(path)
    session.execute(insert(DrgGroup), [{"code": c, "name": n} for c, n in groups])
    return len(groups)


def group_names(session: Session, codes) -> dict[str, str]:
    """code -> name for the given DRG codes that are in the catalogue."""
    codes = list(codes)
    if not codes:
        return {}
    return dict(session.execute(
        select(DrgGroup.code, DrgGroup.name).where(DrgGroup.code.in_(codes))).all())


@lru_cache(maxsize=4)
def _icd_entries(path: str, _mtime_ns: int) -> tuple[tuple[str, str, str], ...]:
    entries = []
    for line in _read_text(Path(path)).splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and not parts[0].startswith("#"):
            entries.append((parts[0], parts[1].strip(), parts[0].upper()))
    return tuple(entries)


def search_icd(path: str | Path, query: str, limit: int = 10) -> list[tuple[str, str]]:
    """ICD-10 diagnoses (`code name` file such as ZD_INFO.dat) whose code starts with the query
    or whose name contains it: codes matches first, then names, each in file order."""
    query = query.strip()
    if not query or limit <= 0:
        return []
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: 找不到文件")
    entries = _icd_entries(str(path.resolve()), path.stat().st_mtime_ns)
    upper = query.upper()
    by_code = [(c, n) for c, n, cu in entries if cu.startswith(upper)][:limit]
    if len(by_code) >= limit:
        return by_code
    found = set(c for c, _ in by_code)
    by_name = [(c, n) for c, n, _ in entries if query in n and c not in found]
    return by_code + by_name[:limit - len(by_code)]

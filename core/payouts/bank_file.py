"""The bank transfer file of a batch: its rows from the stored lines (card snapshots; the full
card number decrypted here and nowhere else), written whole or not at all (0600, synced,
renamed)."""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.crypto import PersonalDataVault
from core.models import Claim, Household, PayoutBatch, PayoutLine


def exports_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / "exports"
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


def batch_file(data_dir: Path, batch: PayoutBatch) -> Path:
    return exports_dir(data_dir) / f"{batch.number}.xlsx"



FILE_HEADER = ["序号", "收款人", "银行卡号", "开户银行", "金额（元）", "附言", "申请号", "户号"]


def bank_rows(session: Session, vault: PersonalDataVault, batch_id: int) -> list[list]:
    """The transfer rows of a batch, from its stored lines (card snapshots), in line order;
    the full card number is decrypted here and nowhere else."""
    q = (select(PayoutLine.card_holder, PayoutLine.card_number_enc, PayoutLine.card_bank,
                PayoutLine.amount_fen, Claim.number, Household.number)
         .join(Claim, Claim.id == PayoutLine.claim_id)
         .join(Household, Household.id == Claim.household_id)
         .where(PayoutLine.batch_id == batch_id).order_by(PayoutLine.id))
    cache: dict[str, str] = {}
    rows = []
    for i, (holder, enc, bank, fen, claim_no, hh_no) in enumerate(session.execute(q), 1):
        number = cache.get(enc)
        if number is None:
            number = cache[enc] = vault.decrypt(enc)
        rows.append([i, holder, number, bank, Decimal(fen) / 100, f"互助补助 {claim_no}",
                     claim_no, hh_no])
    return rows


def write_bank_file(path: Path, batch_no: str, rows: list[list]) -> None:
    """xlsx (openpyxl write-only), one row a transfer and a totals row; written to a temporary
    file created 0600, synced, then renamed over `path`: the file is whole or absent."""
    from openpyxl import Workbook

    _clean_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            wb = Workbook(write_only=True)
            ws = wb.create_sheet(batch_no[:31])
            ws.append(FILE_HEADER)
            total = 0
            for row in rows:
                ws.append(row)
                total += int(row[4] * 100)
            ws.append(["合计", f"{len(rows)} 笔", None, None, Decimal(total) / 100, None, None,
                       None])
            wb.save(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _clean_stale_temps(path: Path) -> None:
    """Temporary files left by killed runs (their pid is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue

"""Benchmark: the monthly payout run over 100,000 approved claims — the batch (lines, claim
statuses, audit rows, notifications: one transaction), the bank file (xlsx) and the export step —
against openpyxl writing the same rows alone, in the same invocation.

    python bench/payout_batch.py [N]          (default 100,000 claims)

Targets: run time ≤ 3 × openpyxl's, peak memory < 500 MB. Each measured part runs in a
fresh process so its peak resident memory (ru_maxrss) is its own. SQLite in a temporary
directory unless HUZHU_BENCH_DATABASE_URL names a PostgreSQL database (which is wiped).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select, text  # noqa: E402

MONTH = "2031-05"
AMOUNT_FEN = 123_456


def _db(url: str):
    from core.db import Database

    return Database(url)


def seed(url: str, data_dir: Path, n: int) -> None:
    """n households of one member, each with a card, a linked user and one approved claim."""
    from stdnum import luhn
    from stdnum.cn import ric

    from core import ledger
    from core.bootstrap import ensure_demo
    from core.config import load_config, secret_key
    from core.crypto import PersonalDataVault, mask_card, mask_id
    from core.models import (BankCard, Claim, ClaimStatus, Household, HouseholdLink, LinkRole,
                             Member, Pool, Relation, InsuranceType, Village, utcnow)

    db = _db(url)
    if db.is_postgres:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    ensure_demo(db)
    cfg = load_config({"HUZHU_DATA_DIR": str(data_dir), "HUZHU_DATABASE_URL": url})
    vault = PersonalDataVault(secret_key(cfg))
    now = utcnow()
    with db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "demo"))
        villages = list(s.scalars(select(Village).where(Village.pool_id == pool.id)))
        pool_id = pool.id
    chunk = 10_000
    surnames = "王李张刘陈杨赵黄周吴"
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        hh, mem, link, card, claim = [], [], [], [], []
        for i in range(start, stop):
            k = i + 1
            body = f"320582{1950 + k % 50:04d}{1 + k % 12:02d}{1 + k % 28:02d}{k % 1000:03d}"
            idn = body + ric.calc_check_digit(body)
            cbody = f"622848{k:012d}"
            cno = cbody + luhn.calc_check_digit(cbody)
            hh.append({"id": k, "number": f"H{k:08d}", "pool_id": pool_id,
                       "village_id": villages[k % len(villages)].id, "phone_enc": None,
                       "status": "active", "created_at": now})
            mem.append({"id": k, "household_id": k, "name": surnames[k % 10] + "大山",
                        "id_number_enc": vault.encrypt(idn),
                        "id_number_hash": vault.lookup_hash(idn),
                        "id_number_masked": mask_id(idn), "birth_year": 1960,
                        "relation": Relation.head, "insurance": InsuranceType.resident,
                        "created_at": now})
            link.append({"household_id": k, "openid": f"o_bench_{k}", "role": LinkRole.head,
                         "created_at": now})
            card.append({"household_id": k, "number_enc": vault.encrypt(cno),
                         "number_hash": vault.lookup_hash(cno), "number_masked": mask_card(cno),
                         "bank_name": "中国农业银行", "holder_member_id": k, "active": True,
                         "created_at": now})
            claim.append({"id": k, "number": f"C{k:08d}", "household_id": k, "member_id": k,
                          "status": ClaimStatus.approved, "amount_fen": AMOUNT_FEN,
                          "submitted_at": now, "created_at": now, "updated_at": now,
                          "stated": {}, "ocr": {}, "flags": {}, "reasons": [], "trace": []})
        with db.session() as s:
            s.execute(insert(Household), hh)
            s.execute(insert(Member), mem)
            s.execute(insert(HouseholdLink), link)
            s.execute(insert(BankCard), card)
            s.execute(insert(Claim), claim)
    with db.session() as s:
        ledger.post(s, pool_id, "funds", "bench-fund", {ledger.CASH: n * AMOUNT_FEN,
                                                        ledger.income("donor"): -n * AMOUNT_FEN},
                    date.today(), "bench")
    db.dispose()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_run(url: str, data_dir: Path) -> dict:
    """The payout run as `huzhu payout run` does it (imports done before the clock starts)."""
    from core.config import load_config, secret_key
    from core.crypto import PersonalDataVault
    from core.payouts import run_payout

    cfg = load_config({"HUZHU_DATA_DIR": str(data_dir), "HUZHU_DATABASE_URL": url})
    vault = PersonalDataVault(secret_key(cfg))
    db = _db(url)
    before = _peak_mb()
    t0 = time.perf_counter()
    r = run_payout(db, vault, data_dir, "demo", MONTH, "bench", date(2031, 5, 5))
    seconds = time.perf_counter() - t0
    db.dispose()
    return {"seconds": seconds, "peak_mb": _peak_mb(), "peak_before_mb": before,
            "lines": r.lines, "total_fen": r.total_fen, "file": r.file, "status": r.status}


def phase_openpyxl(url: str, data_dir: Path, out: Path) -> dict:
    """openpyxl alone writing the same rows (read from the stored lines before the clock)."""
    from decimal import Decimal

    from openpyxl import Workbook

    from core.config import load_config, secret_key
    from core.crypto import PersonalDataVault
    from core.models import PayoutBatch
    from core.payouts import FILE_HEADER, bank_rows

    cfg = load_config({"HUZHU_DATA_DIR": str(data_dir), "HUZHU_DATABASE_URL": url})
    vault = PersonalDataVault(secret_key(cfg))
    db = _db(url)
    with db.session() as s:
        batch = s.scalar(select(PayoutBatch).where(PayoutBatch.month == MONTH))
        rows = bank_rows(s, vault, batch.id)
        name = batch.number
    db.dispose()
    t0 = time.perf_counter()
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(name)
    ws.append(FILE_HEADER)
    total = 0
    for row in rows:
        ws.append(row)
        total += int(row[4] * 100)
    ws.append(["合计", f"{len(rows)} 笔", None, None, Decimal(total) / 100, None, None, None])
    wb.save(out)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": _peak_mb(), "rows": len(rows)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1].startswith("--phase="):
        phase, url, data_dir = sys.argv[1][8:], sys.argv[2], Path(sys.argv[3])
        doc = (phase_run(url, data_dir) if phase == "run"
               else phase_openpyxl(url, data_dir, Path(sys.argv[4])))
        print(json.dumps(doc))
        return 0
    n = int(sys.argv[1].replace("_", "").replace(",", "")) if len(sys.argv) > 1 else 100_000
    tmp = Path(tempfile.mkdtemp(prefix="huzhu-bench-payout-"))
    url = os.environ.get("HUZHU_BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
    try:
        t0 = time.perf_counter()
        seed(url, tmp, n)
        print(f"seeded {n:,} approved claims ({'PostgreSQL' if 'postgres' in url else 'SQLite'}) "
              f"in {time.perf_counter() - t0:.1f}s", flush=True)

        def child(*args) -> dict:
            out = subprocess.run([sys.executable, __file__, *args], capture_output=True,
                                 text=True, check=False)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(1)
            return json.loads(out.stdout.strip().splitlines()[-1])

        run = child("--phase=run", url, str(tmp))
        base = child("--phase=openpyxl", url, str(tmp), str(tmp / "openpyxl-alone.xlsx"))
    finally:
        if not os.environ.get("HUZHU_BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = run["seconds"] / base["seconds"]
    print(f"payout run (batch + {run['lines']:,} lines + bank file + export): "
          f"{run['seconds']:.2f}s, peak RSS {run['peak_mb']:.0f} MB")
    print(f"openpyxl alone, the same {base['rows']:,} rows: {base['seconds']:.2f}s, "
          f"peak RSS {base['peak_mb']:.0f} MB")
    ok_time, ok_mem = ratio <= 3.0, run["peak_mb"] < 500
    print(f"ratio {ratio:.2f}× (target ≤ 3×: {'ok' if ok_time else 'MISSED'}); "
          f"peak memory {run['peak_mb']:.0f} MB (target < 500 MB: {'ok' if ok_mem else 'MISSED'})")
    return 0 if ok_time and ok_mem else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: backup and restore of a 600,000-member database, each ≤ 60 s.

    python bench/backup.py [--members 600000] [--database-url URL --restore-url URL]
                           [--keep DIR] [--media-mb 200]

Builds the database as bench/import_households.py does (its generator and the real import;
not timed; the xlsx is reused from --keep DIR when it is there), adds a payout month's worth of
approved claims with bank cards, and --media-mb of photo files in DATA_DIR/media. Then times
`huzhu backup` and `huzhu restore` (the real command line, each in a process of its own, so
its wall time, CPU time and peak RSS are its own) into an empty data folder and an empty
database: a new SQLite file, or --restore-url (an empty PostgreSQL database) when
--database-url is PostgreSQL. Prints the machine's load average before each.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PASSPHRASE = "bench passphrase 2026"


def build(url: str, data: Path, members: int, xlsx: Path, media_mb: int) -> None:
    from core.crypto import PersonalDataVault
    from core.db import Database
    from core.importer import import_households
    from import_households import fresh_pool

    villages = [f"大镇/第{i + 1}村" for i in range(30)]
    if not xlsx.exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "import_households.py"),
                        "--members", str(members), "--keep", str(xlsx), "--generate-only"],
                       check=True)
    db = Database(url)
    today = date.today()
    fresh_pool(db, villages, today, source_file=str(ROOT / "config" / "schemes" / "demo.yaml"))
    data.mkdir(parents=True, exist_ok=True)
    key = os.urandom(24).hex().encode()
    (data / "secret.key").write_bytes(key)
    vault = PersonalDataVault(key)
    t = time.perf_counter()
    with db.session() as s:
        r = import_households(s, vault, xlsx, actor="bench", today=today)
    assert r.ok and r.members_new == members, (r.members_new, r.errors[:3])
    print(f"built: {r.members_new} members, {r.households_new} households "
          f"({time.perf_counter() - t:.0f} s import)", flush=True)
    from sqlalchemy import select

    from core import bankcards
    from core.models import Household
    from tests.factories import make_claim

    from stdnum import luhn

    from core.payouts import month_of, run_payout

    with db.session() as s:  # 2,000 households with a card and an approved claim
        for i, hh in enumerate(s.scalars(select(Household).order_by(Household.id).limit(2000))):
            body = f"62284800{i:010d}"
            bankcards.add_card(s, vault, hh, body + luhn.calc_check_digit(body), "农行",
                               hh.members[0], "bench")
            make_claim(s, hh, status="approved", documents=(), amount_fen=50_000)
    run_payout(db, vault, data, "bench", month_of(today), "bench", today)
    db.dispose()
    for i in range(media_mb * 4):  # 256 KB photos
        p = data / "media" / f"{i % 256:02x}" / f"{i:064x}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(256 * 1024))


def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def timed(cmd: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, output) of one command run in a child process. The peak is
    the child's VmHWM read from /proc every 50 ms (getrusage's ru_maxrss of a child counts the
    parent's size at fork on Linux, which here is the whole benchmark's)."""
    t = time.perf_counter()
    peak = 0.0
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _hwm_mb(proc.pid) or 0)
            time.sleep(0.05)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        said = log.read().strip()
    if proc.returncode != 0:
        print(said, file=sys.stderr)
        raise SystemExit(f"{cmd[3]} failed with exit {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, peak, said


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=600_000)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--restore-url", default="")
    ap.add_argument("--keep", help="keep the generated xlsx here (reused when it exists)")
    ap.add_argument("--media-mb", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="huzhu-bench-backup-"))
    xlsx = Path(args.keep) / f"households-{args.members}.xlsx" if args.keep else \
        work / "households.xlsx"
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{work}/live/huzhu.db"
    target = args.restore_url or f"sqlite:///{work}/restored/huzhu.db"
    if url.startswith("postgresql") and not args.restore_url:
        raise SystemExit("--restore-url (an empty PostgreSQL database) is needed with "
                         "a PostgreSQL --database-url")
    build(url, work / "live", args.members, xlsx, args.media_mb)

    base = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    live = {**base, "HUZHU_DATABASE_URL": url, "HUZHU_DATA_DIR": str(work / "live"),
            "HUZHU_BACKUP_PASSPHRASE": PASSPHRASE}
    restored = {**base, "HUZHU_DATABASE_URL": target, "HUZHU_DATA_DIR": str(work / "restored"),
                "HUZHU_BACKUP_PASSPHRASE": PASSPHRASE}
    out = work / "bench.huzhu-backup"
    huzhu = [sys.executable, "-m", "bot.cli"]
    ok = True
    print(f"load average before backup: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
          flush=True)
    wall, cpu, rss, said = timed([*huzhu, "backup", "--out", str(out), "--with-key"], live)
    print(said.splitlines()[0])
    print(f"backup: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MB, "
          f"{out.stat().st_size / 1e6:.0f} MB archive", flush=True)
    ok &= wall <= 60
    (work / "restored").mkdir()
    print(f"load average before restore: {os.getloadavg()[0]:.2f}", flush=True)
    wall, cpu, rss, said = timed([*huzhu, "restore", str(out)], restored)
    print(said.splitlines()[-2] if len(said.splitlines()) > 1 else said)
    print(f"restore: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MB", flush=True)
    ok &= wall <= 60 and said.endswith("done")
    print("PASS" if ok else "FAIL", f"(target: backup and restore each ≤ 60 s; "
          f"{args.members} members, {args.media_mb} MB of media)")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Backups and restore: one encrypted archive holding everything a fund needs to start again.

The archive (core/archive.py seals it with a passphrase) is a tar stream of

- `database/huzhu.sqlite` — a consistent copy made with SQLite's online backup API, which reads
  one snapshot while `serve` goes on writing (write-ahead log); or `database/huzhu.pgdump` —
  `pg_dump` in custom format, run on a snapshot exported from the transaction in which the
  manifest's rows are counted, so the counts and the dump are of the same moment;
- `media/…` and `exports/…` from DATA_DIR (claim photos, bank transfer files);
- `schemes/…` — the scheme files the scheme years were loaded from, where they still exist (the
  validated rules themselves are in the database, table scheme_year, column rules);
- `secret.key` — only when asked (`--with-key`);
- `manifest.json` last: huzhu's version, the schema head (Alembic revisions), every table's row
  count, the ledger's totals per pool and whether every entry balances, the key's fingerprint,
  and the size and SHA-256 of every other member.

The file is written under a temporary name in the same folder, synced, and renamed: a backup
cut short (a kill, a full disk) never has the final name, and its stream lacks the last chunk.

`restore` refuses unless the data folder and the database are empty, unpacks into a staging
folder beside the data folder, loads the database copy there (SQLite) or into the empty
database (PostgreSQL, pg_restore), checks every checksum, the row counts against the manifest,
migrates to the current schema, checks the ledger and that a sample of the encrypted fields
decrypts with the key; only then moves everything into place. Any failure removes what it made.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Callable

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.archive import ArchiveError, DecryptingReader, EncryptingWriter
from core.config import Config, _sync_folder
from core.keys import fingerprint, read_key

log = logging.getLogger("huzhu.backup")

FORMAT = "huzhu-backup"
FORMAT_VERSION = 1
SQLITE_MEMBER = "database/huzhu.sqlite"
PGDUMP_MEMBER = "database/huzhu.pgdump"
SUFFIX = ".huzhu-backup"
COPY = 1 << 20
SAMPLE = 20
PG_DUMP_HELP = ("pg_dump is not installed (it is in the PostgreSQL client package: "
                "`apt-get install postgresql-client`, of the server's major version or newer)")


class BackupError(Exception):
    """A backup could not be made; one line for the operator."""


class RestoreRefused(Exception):
    """The restore was refused before anything was changed (targets not empty, no key…)."""


class VerifyFailed(Exception):
    """The restored copy did not verify; nothing was left in place."""


def backup_dir(cfg: Config) -> Path:
    return Path(cfg.BACKUP_DIR) if cfg.BACKUP_DIR else cfg.data_dir / "backups"


def default_name(now: datetime) -> str:
    return f"huzhu-{now:%Y%m%d-%H%M%S}{SUFFIX}"


def huzhu_version() -> str:
    try:
        from importlib.metadata import version

        return version("huzhu")
    except Exception:
        return "unknown"


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database)


def _pg_env(url: str) -> dict:
    """libpq's environment for pg_dump / pg_restore (the password never on a command line)."""
    u = make_url(url)
    env = dict(os.environ)
    for var, value in (("PGHOST", u.host), ("PGPORT", u.port), ("PGUSER", u.username),
                       ("PGPASSWORD", u.password), ("PGDATABASE", u.database)):
        if value is not None:
            env[var] = str(value)
    return env


# ---------------------------------------------------------------------------------------------
# What the manifest says of a database

def tables_of(conn) -> list[str]:
    if conn.dialect.name == "sqlite":
        q = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    else:
        q = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    return sorted(r[0] for r in conn.exec_driver_sql(q))


def row_counts(conn) -> dict[str, int]:
    return {t: int(conn.exec_driver_sql(f'SELECT count(*) FROM "{t}"').scalar())
            for t in tables_of(conn)}


def schema_head(conn) -> list[str]:
    if "alembic_version" not in tables_of(conn):
        return []
    return sorted(r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version"))


def ledger_facts(conn) -> dict:
    """Per pool: each account's total and the balance; and the entries that do not balance."""
    from core import ledger
    from core.models import Pool

    s = Session(bind=conn)
    pools = {}
    for pid, code in s.execute(select(Pool.id, Pool.code).order_by(Pool.id)):
        pools[code] = {"accounts": dict(sorted(ledger.totals(s, pid).items())),
                       "balance_fen": ledger.balance(s, pid)}
    return {"pools": pools, "unbalanced": ledger.check(s)}


def describe(conn) -> dict:
    return {"tables": row_counts(conn), "schema_head": schema_head(conn),
            "ledger": ledger_facts(conn)}


# ---------------------------------------------------------------------------------------------
# Backup

@dataclass
class BackupResult:
    path: Path
    bytes: int
    seconds: float
    manifest: dict


def _hash_copy(src, dst, h) -> int:
    n = 0
    while True:
        block = src.read(COPY)
        if not block:
            return n
        h.update(block)
        if dst is not None:
            dst.write(block)
        n += len(block)


class _HashingReader:
    def __init__(self, fh):
        self.fh, self.h = fh, hashlib.sha256()

    def read(self, n=-1):
        data = self.fh.read(n)
        self.h.update(data)
        return data


def _add_file(tar: tarfile.TarFile, files: dict, arcname: str, path: Path) -> None:
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o600
        reader = _HashingReader(fh)
        tar.addfile(info, reader)
        files[arcname] = {"size": st.st_size, "sha256": reader.h.hexdigest()}


def _add_bytes(tar: tarfile.TarFile, files: dict | None, arcname: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(data))
    if files is not None:
        files[arcname] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _tree(root: Path):
    if not root.is_dir():
        return
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.startswith("."):  # files still being written under a temporary name
                continue
            yield Path(folder) / name


def _scheme_files(conn) -> list[Path]:
    from core.models import SchemeYear

    found: list[Path] = []
    for (source,) in Session(bind=conn).execute(select(SchemeYear.source_file).distinct()):
        if not source:
            continue
        p = Path(source)
        if not p.is_file():
            continue
        found.append(p)
        try:  # the quota table the scheme names, beside it
            import yaml

            doc = yaml.safe_load(p.read_text("utf-8")) or {}
            quotas = ((doc.get("benefit") or {}).get("quotas"))
            if isinstance(quotas, str) and (p.parent / quotas).is_file():
                found.append(p.parent / quotas)
        except Exception:
            pass
    return sorted(set(found))


def _snapshot_sqlite(url: str, work: Path) -> tuple[Path, dict, list[Path]]:
    src = _sqlite_path(url)
    if not src.exists():
        raise BackupError(f"the database {src} does not exist")
    copy = work / "huzhu.sqlite"
    source = sqlite3.connect(str(src), timeout=60)
    try:
        target = sqlite3.connect(str(copy))
        try:
            source.backup(target)  # one step: one read snapshot; writers go on (WAL)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()
    engine = create_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as conn:
            facts = describe(conn)
            schemes = _scheme_files(conn)
    finally:
        engine.dispose()
    return copy, facts, schemes


def _snapshot_postgres(url: str, work: Path) -> tuple[Path, dict, list[Path]]:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError(PG_DUMP_HELP)
    from core.db import make_engine

    dump = work / "huzhu.pgdump"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                facts = describe(conn)  # the same snapshot pg_dump is about to read
                schemes = _scheme_files(conn)
                r = subprocess.run([pg_dump, "--format=custom", "--compress=1", "--no-owner",
                                    "--no-privileges", f"--snapshot={snapshot}",
                                    f"--file={dump}"],
                                   env=_pg_env(url), capture_output=True, text=True)
                if r.returncode != 0:
                    msg = (r.stderr.strip().splitlines() or ["failed"])[-1]
                    raise BackupError(f"pg_dump: {msg}")
    finally:
        engine.dispose()
    return dump, facts, schemes


def make_backup(cfg: Config, out: Path, passphrase: bytes, with_key: bool = False,
                progress: Callable[[str], None] | None = None) -> BackupResult:
    """Write the archive to `out` (which must not exist); see the module's docstring."""
    say = progress or (lambda m: None)
    t0 = time.perf_counter()
    out = Path(out).absolute()
    if out.exists():
        raise BackupError(f"{out} already exists; choose another name (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = read_key(cfg)
    if with_key and key is None:
        raise BackupError("--with-key: there is no key yet (no DATA_DIR/secret.key, no "
                          "SECRET_KEY)")
    work = Path(tempfile.mkdtemp(prefix=".huzhu-backup-", dir=out.parent))
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        say("copying the database")
        url = cfg.DATABASE_URL
        if url.startswith("sqlite"):
            dbfile, facts, schemes = _snapshot_sqlite(url, work)
            member = SQLITE_MEMBER
        else:
            dbfile, facts, schemes = _snapshot_postgres(url, work)
            member = PGDUMP_MEMBER
        say("writing the archive")
        files: dict[str, dict] = {}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb", buffering=COPY) as raw:
            sealed = EncryptingWriter(raw, passphrase)
            with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT,
                              bufsize=COPY) as tar:
                _add_file(tar, files, member, dbfile)
                dbfile.unlink()
                data = cfg.data_dir
                for folder in ("media", "exports"):
                    for path in _tree(data / folder):
                        try:
                            _add_file(tar, files, path.relative_to(data).as_posix(), path)
                        except FileNotFoundError:  # removed since it was listed
                            continue
                scheme_names = []
                for path in schemes:
                    name = f"schemes/{path.name}"
                    if name not in files:
                        _add_file(tar, files, name, path)
                        scheme_names.append(str(path))
                if with_key:
                    _add_bytes(tar, files, "secret.key", key + b"\n")
                manifest = {
                    "format": FORMAT, "format_version": FORMAT_VERSION,
                    "huzhu_version": huzhu_version(),
                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "database": {"dialect": "sqlite" if member == SQLITE_MEMBER else "postgresql",
                                 "member": member},
                    "schema_head": facts["schema_head"],
                    "tables": facts["tables"],
                    "ledger": facts["ledger"],
                    "schemes": {"rules_in_database": True, "files": scheme_names},
                    "key": {"included": with_key,
                            "fingerprint": fingerprint(key) if key else None},
                    "files": files,
                }
                _add_bytes(tar, None, "manifest.json",
                           json.dumps(manifest, ensure_ascii=False, indent=1).encode())
            sealed.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
        _sync_folder(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupResult(out, out.stat().st_size, time.perf_counter() - t0, manifest)


# ---------------------------------------------------------------------------------------------
# Reading an archive

def _safe_name(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ArchiveError(f"the backup holds a file with a forbidden name: {name!r}")
    top = p.parts[0]
    if top not in ("database", "media", "exports", "schemes") and name not in (
            "secret.key", "manifest.json"):
        raise ArchiveError(f"the backup holds an unexpected file: {name!r}")
    return p.as_posix()


def unpack(archive: Path, passphrase: bytes, into: Path) -> tuple[dict, dict]:
    """Decrypt and unpack the archive into `into`; returns (manifest, {name: {size, sha256}}
    as found). Raises ArchiveError for a wrong passphrase or a damaged or incomplete file."""
    found: dict[str, dict] = {}
    manifest = None
    with open(archive, "rb", buffering=COPY) as raw:
        reader = DecryptingReader(raw, passphrase)
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=COPY) as tar:
                for info in tar:
                    if info.isdir():
                        continue
                    if not info.isfile():
                        raise ArchiveError(f"the backup holds a link or device: {info.name!r}")
                    name = _safe_name(info.name)
                    src = tar.extractfile(info)
                    if name == "manifest.json":
                        manifest = json.loads(src.read().decode())
                        continue
                    dest = into / name
                    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    h = hashlib.sha256()
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as dst:
                        n = _hash_copy(src, dst, h)
                    found[name] = {"size": n, "sha256": h.hexdigest()}
        except tarfile.TarError as exc:
            raise ArchiveError(f"the backup's contents are damaged ({exc})") from exc
        reader.read_to_end()
    if manifest is None or manifest.get("format") != FORMAT:
        raise ArchiveError("the backup has no manifest: it is incomplete or not a huzhu backup")
    return manifest, found


def read_manifest(archive: Path, passphrase: bytes) -> dict:
    """The manifest alone (the whole stream is read and checked, nothing is kept)."""
    with tempfile.TemporaryDirectory(prefix="huzhu-manifest-") as tmp:
        return unpack(archive, passphrase, Path(tmp))[0]


# ---------------------------------------------------------------------------------------------
# Restore

@dataclass
class RestoreResult:
    seconds: float
    tables: int
    rows: int
    files: int
    schema_before: list[str]
    schema_after: list[str]
    decrypted: int
    key_source: str
    notes: list[str] = field(default_factory=list)


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_empty(cfg: Config) -> None:
    """Refuse, naming what is there, unless the data folder and the database are empty. A
    `secret.key` in the data folder is allowed (the key the archive needs), and so is the
    backups folder (BACKUP_DIR, where the archive may have been copied to), and the outbox
    bell's folder with no worker listening in it."""
    data = cfg.data_dir
    db_file = _sqlite_path(cfg.DATABASE_URL).absolute() if cfg.is_sqlite else None
    if data.exists():
        if not data.is_dir():
            raise RestoreRefused(f"DATA_DIR {data} is not a folder")
        backups = backup_dir(cfg).absolute()
        there = [p.name for p in data.iterdir()
                 if p.name != "secret.key" and not p.name.startswith(".huzhu-")
                 and not (p.absolute() == backups and p.is_dir())  # archives brought along
                 and not (p.name == "bell" and p.is_dir() and not any(p.iterdir()))  # no worker
                 and not (db_file is not None and p.absolute() == db_file
                          and p.stat().st_size == 0)]
        if there:
            raise RestoreRefused(f"DATA_DIR {data} is not empty: it holds {_listing(there)}; "
                                 "restore into an empty folder (nothing was changed)")
    if db_file is not None:
        if db_file.exists() and db_file.stat().st_size > 0:
            raise RestoreRefused(f"the database {db_file} already exists; restore into a new "
                                 "database (nothing was changed)")
        return
    from core.db import make_engine

    engine = make_engine(cfg.DATABASE_URL)
    try:
        with engine.connect() as conn:
            tables = tables_of(conn)
    finally:
        engine.dispose()
    if tables:
        raise RestoreRefused(f"the database is not empty: it has {len(tables)} tables "
                             f"({_listing(tables)}); restore into an empty database "
                             "(nothing was changed)")


def _pg_clear(url: str) -> None:
    """Drop what a failed restore made in the (formerly empty) database."""
    from core.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for t in tables_of(conn):
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{t}" CASCADE')
            for (seq,) in conn.exec_driver_sql(
                    "SELECT sequence_name FROM information_schema.sequences "
                    "WHERE sequence_schema = current_schema()").all():
                conn.exec_driver_sql(f'DROP SEQUENCE IF EXISTS "{seq}" CASCADE')
    finally:
        engine.dispose()


def _compare(what: str, expected: dict, actual: dict) -> list[str]:
    bad = []
    for k in sorted(set(expected) | set(actual)):
        if expected.get(k) != actual.get(k):
            bad.append(f"{what} {k}: manifest {expected.get(k)!r}, restored {actual.get(k)!r}")
    return bad


def _sample_decrypts(conn, key: bytes) -> int:
    """Decrypt a sample of every kind of encrypted field, and check the keyed hashes beside
    them; raises VerifyFailed naming the first that does not."""
    from core.crypto import PersonalDataVault
    from core.models import BankCard, Member, PayoutLine

    vault = PersonalDataVault(key)
    order = func.random()
    s = Session(bind=conn)
    n = 0
    samples = [
        ("member", s.execute(select(Member.id, Member.id_number_enc, Member.id_number_hash)
                             .order_by(order).limit(SAMPLE)).all()),
        ("bank_card", s.execute(select(BankCard.id, BankCard.number_enc, BankCard.number_hash)
                                .order_by(order).limit(SAMPLE)).all()),
        ("payout_line", [(i, e, None) for i, e in s.execute(
            select(PayoutLine.id, PayoutLine.card_number_enc).order_by(order).limit(SAMPLE))]),
    ]
    for table, rows in samples:
        for row_id, enc, h in rows:
            try:
                plain = vault.decrypt(enc)
            except ValueError:
                raise VerifyFailed(f"{table} {row_id}: the encrypted number does not decrypt "
                                   "with the key (fingerprint "
                                   f"{fingerprint(key)}): wrong key for this archive")
            if h is not None and vault.lookup_hash(plain) != h:
                raise VerifyFailed(f"{table} {row_id}: the look-up hash does not match the key")
            n += 1
    return n


def restore(cfg: Config, archive: Path, passphrase: bytes,
            progress: Callable[[str], None] | None = None) -> RestoreResult:
    from core.db import Database

    say = progress or (lambda m: None)
    t0 = time.perf_counter()
    archive = Path(archive)
    if not archive.is_file():
        raise RestoreRefused(f"{archive}: no such file")
    check_empty(cfg)
    data = cfg.data_dir.absolute()
    data.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".huzhu-restore-{data.name}-", dir=data.parent))
    pg_loaded = False
    try:
        say("decrypting and unpacking")
        manifest, found = unpack(archive, passphrase, stage)
        bad = _compare("file", manifest.get("files", {}), found)
        if bad:
            raise VerifyFailed(f"{len(bad)} files differ from the manifest; first: {bad[0]}")
        # the key the restored data will be read with
        placed = data / "secret.key"
        if cfg.SECRET_KEY:
            key, key_source = cfg.SECRET_KEY.encode(), "SECRET_KEY (configuration)"
        elif placed.exists():
            key, key_source = placed.read_bytes().strip(), f"{placed}"
        elif (stage / "secret.key").exists():
            key, key_source = (stage / "secret.key").read_bytes().strip(), "the archive"
        elif not (manifest.get("key") or {}).get("fingerprint"):
            key, key_source = None, "nowhere (there was no key when the backup was made)"
        else:
            raise RestoreRefused("the archive holds no key and none is given: copy the key file "
                                 "(`huzhu key export`) to DATA_DIR/secret.key or set "
                                 "HUZHU_SECRET_KEY, then restore again (nothing was changed)")
        want = (manifest.get("key") or {}).get("fingerprint")
        if want and key is not None and fingerprint(key) != want:
            raise RestoreRefused(f"the key from {key_source} (fingerprint {fingerprint(key)}) is "
                                 f"not the one the archive's data was encrypted with ({want}); "
                                 "nothing was changed")
        dialect = manifest["database"]["dialect"]
        if (dialect == "sqlite") != cfg.is_sqlite:
            raise RestoreRefused(f"the archive holds a {dialect} database but DATABASE_URL is "
                                 f"{'SQLite' if cfg.is_sqlite else 'PostgreSQL'}; "
                                 "nothing was changed")
        say("loading the database")
        if cfg.is_sqlite:
            staged_db = stage / SQLITE_MEMBER
            url = f"sqlite:///{staged_db}"
        else:
            pg_restore = shutil.which("pg_restore")
            if pg_restore is None:
                raise RestoreRefused(PG_DUMP_HELP.replace("pg_dump is", "pg_restore is"))
            url = cfg.DATABASE_URL
            pg_loaded = True
            r = subprocess.run([pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
                                "--single-transaction", f"--dbname={make_url(url).database}",
                                str(stage / PGDUMP_MEMBER)],
                               env=_pg_env(url), capture_output=True, text=True)
            if r.returncode != 0:
                msg = (r.stderr.strip().splitlines() or ["failed"])[-1]
                raise VerifyFailed(f"pg_restore: {msg}")
            (stage / PGDUMP_MEMBER).unlink()
        db = Database(url)
        db.secret = (lambda: key) if key is not None else None
        try:
            with db.engine.connect() as conn:
                before = describe(conn)
            bad = _compare("table", manifest["tables"], before["tables"])
            if bad:
                raise VerifyFailed(f"row counts differ from the manifest: {bad[0]}"
                                   + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
            if before["schema_head"] != manifest["schema_head"]:
                raise VerifyFailed(f"schema head {before['schema_head']} is not the manifest's "
                                   f"{manifest['schema_head']}")
            say("migrating to the current schema")
            db.upgrade()
            say("verifying")
            with db.engine.connect() as conn:
                after = describe(conn)
                decrypted = _sample_decrypts(conn, key) if key is not None else 0
                if key is None and conn.exec_driver_sql("SELECT count(*) FROM member").scalar():
                    raise VerifyFailed("the archive has members' encrypted numbers but no key "
                                       "was recorded for it")
            if after["ledger"]["unbalanced"]:
                raise VerifyFailed("ledger check: " + after["ledger"]["unbalanced"][0])
            bad = _compare("ledger", manifest["ledger"]["pools"], after["ledger"]["pools"])
            if bad:
                raise VerifyFailed(f"ledger totals differ from the manifest: {bad[0]}")
        finally:
            db.dispose()
        say("moving into place")
        if cfg.is_sqlite:
            target = _sqlite_path(cfg.DATABASE_URL).absolute()
            target.parent.mkdir(parents=True, exist_ok=True)
            for side in ("-wal", "-shm", "-journal"):
                Path(f"{staged_db}{side}").unlink(missing_ok=True)
                Path(f"{target}{side}").unlink(missing_ok=True)
            shutil.move(str(staged_db), str(target))
            os.chmod(target, 0o600)
        shutil.rmtree(stage / "database", ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (stage / "secret.key").exists() and (cfg.SECRET_KEY or placed.exists()):
            (stage / "secret.key").unlink()  # the key in use is the same (fingerprint checked)
        for child in sorted(stage.iterdir()):
            os.replace(child, data / child.name)
        _sync_folder(data)
    except BaseException:
        if pg_loaded:
            try:
                _pg_clear(cfg.DATABASE_URL)
            except Exception:
                log.exception("could not clear the database after a failed restore")
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return RestoreResult(
        seconds=time.perf_counter() - t0, tables=len(manifest["tables"]),
        rows=sum(manifest["tables"].values()),
        files=len([f for f in found if not f.startswith("database/")]),
        schema_before=manifest["schema_head"], schema_after=after["schema_head"],
        decrypted=decrypted, key_source=key_source)


# ---------------------------------------------------------------------------------------------
# The nightly backup's outcome (audit rows), for /healthz, the watch and the alerts

DONE, FAILED, ALERT = "backup.done", "backup.failed", "backup.alert"
OVERDUE_HOURS = 48


def last_of(session: Session, action: str):
    from core.models import AuditLog

    return session.scalar(select(AuditLog).where(AuditLog.action == action)
                          .order_by(AuditLog.id.desc()).limit(1))


def health(session: Session, now: datetime | None = None) -> dict:
    """The backups' state for /healthz: last success and failure; `ok` False when the last
    attempt failed or the last success is more than 48 hours old (only once backups ran)."""
    from core.outbox import as_utc

    now = now or datetime.now(timezone.utc)
    done, failed = last_of(session, DONE), last_of(session, FAILED)
    body = {"last_success_at": as_utc(done.at).isoformat() if done else None,
            "last_failure_at": as_utc(failed.at).isoformat() if failed else None,
            "last_error": (failed.after or {}).get("error") if failed else None,
            "ok": True}
    if failed and (not done or failed.id > done.id):
        body["ok"] = False
    if done and now - as_utc(done.at) > timedelta(hours=OVERDUE_HOURS):
        body["ok"] = False
    if done:
        body["file"] = (done.after or {}).get("file")
        body["age_hours"] = round((now - as_utc(done.at)).total_seconds() / 3600, 1)
    return body


def prune(folder: Path, keep_days: int, now: datetime) -> list[Path]:
    """Remove archives older than `keep_days` (never the newest), and temporary files a killed
    backup left more than a day ago."""
    removed = []
    archives = sorted(folder.glob(f"huzhu-*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
    limit = now.timestamp() - keep_days * 86400
    for p in archives[:-1]:
        if p.stat().st_mtime < limit:
            p.unlink(missing_ok=True)
            removed.append(p)
    for p in list(folder.glob(f".huzhu-*{SUFFIX}.partial-*")) + list(
            folder.glob(".huzhu-backup-*")):
        if p.stat().st_mtime < now.timestamp() - 86400:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def configured_passphrase(cfg: Config) -> bytes | None:
    """HUZHU_BACKUP_PASSPHRASE, or the first line of BACKUP_PASSPHRASE_FILE."""
    if cfg.BACKUP_PASSPHRASE:
        return cfg.BACKUP_PASSPHRASE.encode()
    if cfg.BACKUP_PASSPHRASE_FILE:
        return read_passphrase_file(Path(cfg.BACKUP_PASSPHRASE_FILE))
    return None


def read_passphrase_file(path: Path) -> bytes:
    try:
        text_ = path.read_text("utf-8")
    except OSError as exc:
        raise BackupError(f"passphrase file {path}: {exc.strerror or exc}") from exc
    lines = text_.splitlines()
    phrase = lines[0] if lines else ""
    if not phrase:
        raise BackupError(f"passphrase file {path} is empty")
    return phrase.encode()

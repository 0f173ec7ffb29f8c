"""Backups and the key:

    huzhu backup [--out FILE] [--with-key] [--passphrase-file F] [--json]
    huzhu restore FILE [--passphrase-file F]
    huzhu key show-fingerprint | export --to FILE | rotate

The passphrase: --passphrase-file F (its first line), else HUZHU_BACKUP_PASSPHRASE, else the
file named by BACKUP_PASSPHRASE_FILE, else asked for on a terminal. Refusals and a wrong
passphrase or damaged file: one line on stderr, exit 2; a restore that does not verify: exit 1.
"""
from __future__ import annotations

import fcntl
import getpass
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from bot.cli import print_json, subcommands
from core.config import load_config


def register(sub) -> None:
    p = sub.add_parser("backup", help="an encrypted archive of the database, media and exports")
    p.add_argument("--out", metavar="FILE", help="the archive to write (default: BACKUP_DIR/"
                   "huzhu-<date>-<time>.huzhu-backup)")
    p.add_argument("--with-key", action="store_true",
                   help="include the key that decrypts ID and card numbers")
    p.add_argument("--passphrase-file", metavar="F")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore an archive into an empty data folder and "
                                       "database, migrate and verify it")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--passphrase-file", metavar="F")
    p.set_defaults(func=cmd_restore)

    g = subcommands(sub, "key", "the key that encrypts ID and bank-card numbers")
    g.add_parser("show-fingerprint", help="which key this is, without showing it") \
        .set_defaults(func=cmd_key_fingerprint)
    q = g.add_parser("export", help="a copy of the key for the safe (owner-only file)")
    q.add_argument("--to", metavar="FILE", required=True)
    q.set_defaults(func=cmd_key_export)
    g.add_parser("rotate", help="a new key: every encrypted field re-encrypted in one "
                                "transaction (stop serve and worker first)") \
        .set_defaults(func=cmd_key_rotate)


def fail(message: str, code: int = 2) -> int:
    print(f"huzhu: {message}", file=sys.stderr)
    return code


def _passphrase(cfg, args, confirm: bool) -> bytes | None:
    from core.backup import configured_passphrase, read_passphrase_file

    if args.passphrase_file:
        return read_passphrase_file(Path(args.passphrase_file))
    phrase = configured_passphrase(cfg)
    if phrase is not None:
        return phrase
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("backup passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise ValueError("the two passphrases differ")
    return first.encode() or None


def _setup():
    from bot import logs

    cfg = load_config()
    logs.setup(cfg.LOG_LEVEL)
    return cfg


def cmd_backup(args) -> int:
    from core.backup import BackupError, backup_dir, default_name, make_backup

    cfg = _setup()
    try:
        phrase = _passphrase(cfg, args, confirm=True)
    except (BackupError, ValueError) as exc:
        return fail(str(exc))
    if phrase is None:
        return fail("no passphrase: give --passphrase-file F, or set HUZHU_BACKUP_PASSPHRASE "
                    "or BACKUP_PASSPHRASE_FILE (backups are always encrypted)")
    if len(phrase) < 8:
        return fail("the passphrase is too short: at least 8 characters")
    out = Path(args.out) if args.out else backup_dir(cfg) / default_name(datetime.now())
    try:
        r = make_backup(cfg, out, phrase, with_key=args.with_key)
    except BackupError as exc:
        return fail(f"backup failed: {exc}")
    m = r.manifest
    if args.json:
        print_json({"file": str(r.path), "bytes": r.bytes, "seconds": round(r.seconds, 2),
                    "huzhu_version": m["huzhu_version"], "schema_head": m["schema_head"],
                    "tables": m["tables"], "ledger_balances": not m["ledger"]["unbalanced"],
                    "files": len(m["files"]), "key_included": m["key"]["included"],
                    "key_fingerprint": m["key"]["fingerprint"]})
        return 0
    members = m["tables"].get("member", 0)
    print(f"backup written: {r.path} ({r.bytes / 1e6:.1f} MB, {r.seconds:.1f} s; "
          f"{members} members, {sum(m['tables'].values())} rows in {len(m['tables'])} tables, "
          f"{len(m['files']) - 1} files)")
    if m["key"]["included"]:
        print("the key is inside: anyone with the archive and its passphrase can read the ID "
              "and card numbers")
    elif m["key"]["fingerprint"] is None:
        print("there is no key yet (nothing has been encrypted): once there is, keep a copy "
              "apart (`huzhu key export --to FILE`)")
    else:
        print(f"the key is not inside (fingerprint {m['key']['fingerprint']}): keep a copy "
              "apart (`huzhu key export --to FILE`); without it the ID and card numbers are lost")
    if m["ledger"]["unbalanced"]:
        print(f"warning: the ledger does not balance: {m['ledger']['unbalanced'][0]}")
    return 0


def cmd_restore(args) -> int:
    from core.archive import ArchiveError
    from core.backup import BackupError, RestoreRefused, VerifyFailed, restore

    cfg = _setup()
    try:
        phrase = _passphrase(cfg, args, confirm=False)
    except (BackupError, ValueError) as exc:
        return fail(str(exc))
    if phrase is None:
        return fail("no passphrase: give --passphrase-file F or set HUZHU_BACKUP_PASSPHRASE")
    try:
        r = restore(cfg, Path(args.file), phrase)
    except ArchiveError as exc:
        return fail(f"restore refused: {exc}; nothing was changed")
    except RestoreRefused as exc:
        return fail(f"restore refused: {exc}")
    except VerifyFailed as exc:
        return fail(f"restore failed verification, nothing was kept: {exc}", 1)
    migrated = ("" if r.schema_before == r.schema_after else
                f", migrated from {'+'.join(r.schema_before)} to {'+'.join(r.schema_after)}")
    print(f"restored and verified in {r.seconds:.1f} s: {r.rows} rows in {r.tables} tables "
          f"match the manifest, {r.files} files match their checksums, the ledger balances, "
          f"{r.decrypted} encrypted numbers decrypt with the key from {r.key_source}{migrated}")
    print("done")
    return 0


def cmd_key_fingerprint(args) -> int:
    from core.keys import fingerprint, key_path, read_key

    cfg = load_config()
    key = read_key(cfg)
    if key is None:
        return fail(f"no key yet ({key_path(cfg)} does not exist and SECRET_KEY is not set)")
    where = "SECRET_KEY (configuration)" if cfg.SECRET_KEY else str(key_path(cfg))
    print(f"{fingerprint(key)}  ({where})")
    return 0


def cmd_key_export(args) -> int:
    from core.keys import KeyError_, export

    cfg = load_config()
    try:
        fp = export(cfg, Path(args.to))
    except KeyError_ as exc:
        return fail(str(exc))
    print(f"key written to {args.to} (readable by its owner only), fingerprint {fp}; keep it "
          "apart from the backups, e.g. printed or on a USB stick in the county's safe")
    return 0


@contextmanager
def _nothing_running(x):
    """Hold the scheduler's lock for the rotation: a serve or worker process holds it while it
    runs (with the old key in memory), so getting it means none does."""
    from sqlalchemy import text

    from bot.jobs.scheduler import LOCK_KEY

    if x.db.is_postgres:
        conn = x.db.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            conn.commit()
            if not got:
                raise RuntimeError("huzhu serve or worker is running")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                conn.commit()
        finally:
            conn.close()
        return
    x.cfg.data_dir.mkdir(parents=True, exist_ok=True)
    with open(x.cfg.data_dir / "scheduler.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError("huzhu serve or worker is running") from None
        yield


def cmd_key_rotate(args) -> int:
    from bot.cli import app_context
    from core.keys import KeyError_, rotate

    x = app_context()
    try:
        with _nothing_running(x):
            r = rotate(x.cfg, x.db, f"cli:{getpass.getuser()}")
    except RuntimeError as exc:
        return fail(f"{exc}: stop every huzhu process (serve, worker, web) first — they hold "
                    "the old key — then rotate (nothing was changed)")
    except KeyError_ as exc:
        return fail(str(exc))
    c = r.counts
    print(f"key rotated: {r.old_fingerprint} → {r.new_fingerprint}; re-encrypted "
          f"{c['member']} ID numbers, {c['bank_card']} bank cards, {c['payout_line']} payout "
          f"lines, {c['dialogue_state']} dialogues; look-up hashes recomputed "
          f"({c['enrolment']} enrolments)")
    print(f"the old key is kept in {r.old_copy}; export the new one now "
          "(`huzhu key export --to FILE`) and make a new backup — older backups need the old key")
    return 0

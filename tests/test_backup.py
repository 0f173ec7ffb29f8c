"""Backups and restore: `huzhu backup`, `huzhu restore`, the nightly backup and the
key commands, through the real command line (bot.cli.main, or a subprocess where it is killed).

- a backup taken while 4 threads write (payments, claims, payout runs, donations) restores to a
  state whose ledger balances and whose every table has the manifest's row count;
- a SIGKILL during the backup leaves no archive that looks complete;
- an archive from the previous schema version is migrated on restore;
- a wrong passphrase or a flipped byte is refused with one clear line, and nothing is restored.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.cli import main
from bot.devtools.demo import demo_config
from core import ledger
from core.backup import read_manifest, row_counts
from core.crypto import PersonalDataVault
from core.db import Database, script_heads
from core.keys import fingerprint
from core.models import (AdminGrant, AdminRole, AuditLog, BankCard, DialogueState, Enrolment,
                         Household, Member, OutboxMessage, PayoutLine)
from tests.conftest import PG_URL
from tests.factories import M, make_claim, make_household
from tests.test_payouts import env_of, fund, household_with_card

PASSPHRASE = "村里的备份口令 2026"


def cli(cfg, monkeypatch, *args) -> int:
    """`huzhu ARGS` with the configuration `cfg` (as HUZHU_* variables)."""
    with monkeypatch.context() as m:
        for k in [k for k in os.environ if k.startswith("HUZHU_")]:
            m.delenv(k)
        for key, value in cfg.values.items():
            m.setenv(f"HUZHU_{key}", str(value))
        return main(list(args))


@pytest.fixture
def phrase_file(tmp_path) -> Path:
    p = tmp_path / "passphrase.txt"
    p.write_text(PASSPHRASE + "\n", "utf-8")
    return p


def _scratch_database(tmp_path, suffix: str):
    """An empty database: a new SQLite file, or a new PostgreSQL database beside the test
    database (dropped afterwards)."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / suffix / 'huzhu.db'}"
        return
    url = make_url(PG_URL)
    name = f"{url.database}_{suffix}"
    admin = Database(PG_URL)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def target_url(tmp_path):
    """The empty database to restore into."""
    yield from _scratch_database(tmp_path, "restored")


@pytest.fixture
def old_url(tmp_path):
    """An empty database for an older server."""
    yield from _scratch_database(tmp_path, "old")


def restored_cfg(tmp_path, url, emulator, **overrides):
    return demo_config(tmp_path / "restored", emulator, DATABASE_URL=url, **overrides)


def put_media(data_dir: Path, n: int, size: int) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        body = os.urandom(size)
        p = data_dir / "media" / f"{i % 7:02x}" / f"photo-{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
        files[p.relative_to(data_dir).as_posix()] = body
    return files


# ---------------------------------------------------------------------------------------------
# 1. a backup while 4 threads write

def test_backup_while_four_threads_write_restores_to_the_manifest(
        app_ctx, db, cfg, tmp_path, emulator, target_url, phrase_file, monkeypatch, capsys):
    from core.payments import due, record_offline
    from core.payouts import confirm_batch, month_of, run_payout

    media = put_media(cfg.data_dir, 12, 20_000)
    (cfg.data_dir / "exports").mkdir(exist_ok=True)
    (cfg.data_dir / "exports" / "B-old.xlsx").write_bytes(b"bank file")
    home = household_with_card(db, app_ctx.vault)
    fund(db, 10_000_000_00)
    stop = threading.Event()
    done = {"payments": 0, "claims": 0, "batches": 0, "funds": 0}
    errors: list[BaseException] = []
    tz = cfg.tz

    def loop(name, step):
        try:
            while not stop.is_set():
                step()
                done[name] += 1
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)

    def payment():
        with db.session() as s:
            hh = make_household(s, app_ctx.vault, [M("赵一"), M("钱二", "spouse")],
                                village="示范镇/西村", enrolment="pending")
            now = datetime.now(tz)
            _, q = due(s, hh, now.date())
            record_offline(s, hh, q.amount_fen, "cash", "test", now)

    def claim():
        with db.session() as s:
            make_claim(s, s.get(Household, home["id"]), status="approved", documents=(),
                       amount_fen=30_000)
            make_claim(s, s.get(Household, home["id"]), status="submitted")

    months = (month_of(date(2031, 1, 1) + timedelta(days=31 * i)) for i in itertools.count())

    def payout():
        month = next(months)
        r = run_payout(db, app_ctx.vault, cfg.data_dir, "demo", month, "test", date.today())
        if r.batch:
            with db.session() as s:
                confirm_batch(s, r.batch, "test", date.today())
        time.sleep(0.05)

    def donation():
        fund(db, 12_345)

    threads = [threading.Thread(target=loop, args=(name, fn)) for name, fn in
               (("payments", payment), ("claims", claim), ("batches", payout),
                ("funds", donation))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    out = tmp_path / "backups" / "night.huzhu-backup"
    try:
        assert cli(cfg, monkeypatch, "backup", "--out", str(out), "--passphrase-file",
                   str(phrase_file), "--json") == 0
        time.sleep(0.5)  # they go on writing after the backup
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert all(v > 0 for v in done.values()), done
    report = json.loads(capsys.readouterr().out)
    assert report["ledger_balances"] and stat.S_IMODE(out.stat().st_mode) == 0o600
    manifest = read_manifest(out, PASSPHRASE.encode())
    with db.session() as s:  # the live database has moved on since
        assert s.scalar(select(func.count(Member.id))) > manifest["tables"]["member"]

    # restore: the data folder holds only the key (the archive was made without it)
    rcfg = restored_cfg(tmp_path, target_url, emulator)
    rcfg.data_dir.mkdir()
    (rcfg.data_dir / "secret.key").write_bytes((cfg.data_dir / "secret.key").read_bytes())
    assert cli(rcfg, monkeypatch, "restore", str(out), "--passphrase-file",
               str(phrase_file)) == 0
    said = capsys.readouterr().out
    assert "verified" in said and said.strip().endswith("done")
    rdb = Database(target_url)
    try:
        with rdb.engine.connect() as conn:
            assert row_counts(conn) == manifest["tables"]
        with rdb.session() as s:
            assert ledger.check(s) == []
            assert s.scalar(select(func.count(PayoutLine.id))) == manifest["tables"]["payout_line"]
            vault = PersonalDataVault((rcfg.data_dir / "secret.key").read_bytes().strip())
            for m in s.scalars(select(Member).limit(50)):
                assert vault.lookup_hash(vault.decrypt(m.id_number_enc)) == m.id_number_hash
    finally:
        rdb.dispose()
    for name, body in media.items():
        assert (rcfg.data_dir / name).read_bytes() == body
    assert (rcfg.data_dir / "exports" / "B-old.xlsx").read_bytes() == b"bank file"
    assert cli(rcfg, monkeypatch, "ledger", "check") == 0
    # a second restore onto what is now there is refused, naming it
    capsys.readouterr()
    assert cli(rcfg, monkeypatch, "restore", str(out), "--passphrase-file",
               str(phrase_file)) == 2
    assert "not empty" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 2. SIGKILL during the backup

def test_sigkill_during_backup_leaves_no_archive_that_looks_complete(
        app_ctx, cfg, tmp_path, emulator, phrase_file, monkeypatch, capsys):
    put_media(cfg.data_dir, 80, 1_000_000)  # 80 MB: the backup takes a while
    folder = tmp_path / "backups"
    folder.mkdir()
    out = folder / "huzhu-20310101-033000.huzhu-backup"
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "backup", "--out", str(out),
                             "--passphrase-file", str(phrase_file)], env=env_of(cfg),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in folder.glob(".*.partial-*") if p.stat().st_size > 5_000_000]
        if partial:
            break
        time.sleep(0.005)
    assert partial, "the backup finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert not out.exists()
    assert not [p for p in folder.iterdir() if not p.name.startswith(".")]
    # what it left is refused as incomplete
    left = [p for p in folder.glob(".*.partial-*")]
    assert left
    rcfg = restored_cfg(tmp_path, f"sqlite:///{tmp_path / 'r' / 'h.db'}", emulator,
                        SECRET_KEY="x" * 40)
    assert cli(rcfg, monkeypatch, "restore", str(left[0]), "--passphrase-file",
               str(phrase_file)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incomplete" in err[0]
    assert not (tmp_path / "r" / "h.db").exists() and not rcfg.data_dir.exists()
    # the nightly clean-up removes the leftovers once they are a day old
    from core.backup import prune

    assert set(prune(folder, 7, datetime.now() + timedelta(days=2))) >= set(left)
    assert not list(folder.iterdir())


# ---------------------------------------------------------------------------------------------
# 3. an archive from the previous schema version

def test_restore_migrates_an_archive_from_the_previous_schema(
        tmp_path, emulator, old_url, target_url, phrase_file, monkeypatch, capsys):
    from alembic import command

    from core import bankcards
    from core.bootstrap import ensure_demo
    from core.db import alembic_config

    old = demo_config(tmp_path / "old-data", emulator, DATABASE_URL=old_url)
    db = Database(old_url)
    previous = sorted(script_heads() - {"backup_01"})
    for head in previous:  # every migration but the newest: the schema before this one
        command.upgrade(alembic_config(db.engine), head)
    ensure_demo(db)
    vault = PersonalDataVault(b"the old server's key")
    with db.session() as s:
        hh = make_household(s, vault, [M("王大山"), M("李小花", "spouse")])
        bankcards.add_card(s, vault, hh, "6228480000000000018", "农行", hh.members[0], "test")
    with db.engine.connect() as conn:
        assert sorted(r[0] for r in conn.exec_driver_sql(
            "SELECT version_num FROM alembic_version")) == previous
    db.dispose()
    old.data_dir.mkdir(parents=True, exist_ok=True)
    (old.data_dir / "secret.key").write_bytes(b"the old server's key\n")
    out = tmp_path / "old.huzhu-backup"
    assert cli(old, monkeypatch, "backup", "--out", str(out), "--with-key",
               "--passphrase-file", str(phrase_file)) == 0
    assert read_manifest(out, PASSPHRASE.encode())["schema_head"] == previous

    new = restored_cfg(tmp_path, target_url, emulator)
    capsys.readouterr()
    assert cli(new, monkeypatch, "restore", str(out), "--passphrase-file", str(phrase_file)) == 0
    said = capsys.readouterr().out
    assert "migrated from" in said and "from the archive" in said
    rdb = Database(target_url)
    with rdb.engine.connect() as conn:
        assert {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")} \
            == script_heads()
        indexes = ("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_audit_log_action_id'"
                   if rdb.is_postgres else "SELECT count(*) FROM sqlite_master WHERE name = "
                   "'ix_audit_log_action_id'")
        assert conn.exec_driver_sql(indexes).scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM member").scalar() == 2
    with rdb.session() as s:  # the bot finds the card by number, with the restored key
        card = s.scalar(select(BankCard))
        assert card.number_hash == vault.lookup_hash("6228480000000000018")
    rdb.dispose()
    assert (new.data_dir / "secret.key").read_bytes().strip() == b"the old server's key"
    assert stat.S_IMODE((new.data_dir / "secret.key").stat().st_mode) == 0o600


def test_a_backup_from_before_any_key_restores_without_one(
        tmp_path, emulator, target_url, phrase_file, monkeypatch, capsys):
    """A server that never stored a number has no key yet: its backup restores all the same."""
    from core.bootstrap import ensure_demo

    fresh = demo_config(tmp_path / "fresh", emulator,
                        DATABASE_URL=f"sqlite:///{tmp_path / 'fresh' / 'huzhu.db'}")
    db = Database(fresh.DATABASE_URL)
    db.upgrade()
    ensure_demo(db)
    db.dispose()
    out = tmp_path / "fresh.huzhu-backup"
    assert cli(fresh, monkeypatch, "backup", "--out", str(out), "--passphrase-file",
               str(phrase_file)) == 0
    assert not (fresh.data_dir / "secret.key").exists()  # a backup makes no key
    if PG_URL:
        return  # an SQLite archive goes into SQLite only
    new = restored_cfg(tmp_path, target_url, emulator)
    capsys.readouterr()
    assert cli(new, monkeypatch, "restore", str(out), "--passphrase-file", str(phrase_file)) == 0
    assert capsys.readouterr().out.strip().endswith("done")


# ---------------------------------------------------------------------------------------------
# 4. wrong passphrase, flipped byte: one clear line, exit 2, nothing restored

@pytest.fixture
def archive(app_ctx, cfg, tmp_path, phrase_file, monkeypatch, capsys) -> Path:
    with app_ctx.db.session() as s:
        make_household(s, app_ctx.vault, [M("王大山")])
    put_media(cfg.data_dir, 3, 2_500_000)  # several chunks
    out = tmp_path / "a.huzhu-backup"
    assert cli(cfg, monkeypatch, "backup", "--out", str(out), "--with-key",
               "--passphrase-file", str(phrase_file)) == 0
    capsys.readouterr()
    return out


def _refused(tmp_path, emulator, monkeypatch, capsys, archive: Path, phrase: Path) -> str:
    url = f"sqlite:///{tmp_path / 'r' / 'huzhu.db'}"
    rcfg = restored_cfg(tmp_path, url, emulator)
    assert cli(rcfg, monkeypatch, "restore", str(archive), "--passphrase-file", str(phrase)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert not rcfg.data_dir.exists() and not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".huzhu-restore")]
    return lines[0]


def test_wrong_passphrase_is_refused_with_one_line(archive, tmp_path, emulator, monkeypatch,
                                                   capsys):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("村里的备份口令 2025\n", "utf-8")
    line = _refused(tmp_path, emulator, monkeypatch, capsys, archive, wrong)
    assert "wrong passphrase" in line and "nothing was changed" in line


@pytest.mark.parametrize("where", [0.5, 0.99, 60])
def test_a_flipped_byte_is_refused_with_one_line(archive, tmp_path, emulator, phrase_file,
                                                 monkeypatch, capsys, where):
    data = bytearray(archive.read_bytes())
    at = int(len(data) * where) if where < 1 else int(where)  # body, near the end, header
    data[at] ^= 0x01
    bad = tmp_path / "flipped.huzhu-backup"
    bad.write_bytes(bytes(data))
    line = _refused(tmp_path, emulator, monkeypatch, capsys, bad, phrase_file)
    assert ("damaged" in line) or ("header is damaged" in line), line


def test_restore_refuses_a_data_folder_that_is_not_empty(archive, tmp_path, emulator,
                                                         phrase_file, monkeypatch, capsys):
    rcfg = restored_cfg(tmp_path, f"sqlite:///{tmp_path / 'elsewhere.db'}", emulator)
    (rcfg.data_dir / "media").mkdir(parents=True)
    (rcfg.data_dir / "notes.txt").write_text("x")
    assert cli(rcfg, monkeypatch, "restore", str(archive), "--passphrase-file",
               str(phrase_file)) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "media" in err and "notes.txt" in err
    assert not (tmp_path / "elsewhere.db").exists()


def test_restore_refuses_a_key_that_is_not_the_archives(archive, tmp_path, emulator,
                                                        phrase_file, monkeypatch, capsys):
    rcfg = restored_cfg(tmp_path, f"sqlite:///{tmp_path / 'r' / 'h.db'}", emulator,
                        SECRET_KEY="another key entirely")
    assert cli(rcfg, monkeypatch, "restore", str(archive), "--passphrase-file",
               str(phrase_file)) == 2
    assert "not the one the archive" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not rcfg.data_dir.exists()


def test_backup_needs_a_passphrase(app_ctx, cfg, tmp_path, monkeypatch, capsys):
    out = tmp_path / "x.huzhu-backup"
    assert cli(cfg, monkeypatch, "backup", "--out", str(out)) == 2
    assert "no passphrase" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------------------------
# The key

def test_key_fingerprint_and_export(app_ctx, cfg, tmp_path, monkeypatch, capsys):
    app_ctx.vault  # made on first use
    key = (cfg.data_dir / "secret.key").read_bytes().strip()
    assert cli(cfg, monkeypatch, "key", "show-fingerprint") == 0
    assert fingerprint(key) in capsys.readouterr().out
    to = tmp_path / "usb" / "huzhu.key"
    to.parent.mkdir()
    assert cli(cfg, monkeypatch, "key", "export", "--to", str(to)) == 0
    assert to.read_bytes().strip() == key and stat.S_IMODE(to.stat().st_mode) == 0o600
    to.write_bytes(b"something else")
    assert cli(cfg, monkeypatch, "key", "export", "--to", str(to)) == 2
    assert "already exists" in capsys.readouterr().err and to.read_bytes() == b"something else"


def test_key_rotate_reencrypts_every_field_and_keeps_lookups(app_ctx, db, cfg, monkeypatch,
                                                             capsys):
    from core.payouts import run_payout

    home = household_with_card(db, app_ctx.vault, openid="o_rot")
    with db.session() as s:
        s.get(Household, home["id"]).phone_enc = app_ctx.vault.encrypt("13800138000")
        make_claim(s, s.get(Household, home["id"]), status="approved", documents=(),
                   amount_fen=50_000)
        s.add(DialogueState(openid="o_signup", dialogue="signup", state="members",
                            data={"members": [{"name": "张三", "id_enc": app_ctx.vault.encrypt(
                                "110101199003077777"), "hash": app_ctx.vault.lookup_hash(
                                "110101199003077777")}]}))
    fund(db, 10_000_000)
    assert run_payout(db, app_ctx.vault, cfg.data_dir, "demo", "2031-01", "test",
                      date.today()).batch
    old_key = (cfg.data_dir / "secret.key").read_bytes().strip()
    with db.session() as s:
        ids = {m.id: app_ctx.vault.decrypt(m.id_number_enc) for m in s.scalars(select(Member))}

    # refused while a server holds the scheduler's lock (it has the old key in memory)
    if not db.is_postgres:
        with open(cfg.data_dir / "scheduler.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert cli(cfg, monkeypatch, "key", "rotate") == 2
            assert "running" in capsys.readouterr().err
        assert (cfg.data_dir / "secret.key").read_bytes().strip() == old_key

    assert cli(cfg, monkeypatch, "key", "rotate") == 0
    said = capsys.readouterr().out
    new_key = (cfg.data_dir / "secret.key").read_bytes().strip()
    assert new_key != old_key and fingerprint(new_key) in said
    copies = list(cfg.data_dir.glob("secret.key.*.old"))
    assert len(copies) == 1 and copies[0].read_bytes().strip() == old_key
    assert stat.S_IMODE(copies[0].stat().st_mode) == 0o600
    new, old = PersonalDataVault(new_key), PersonalDataVault(old_key)
    with db.session() as s:
        for m in s.scalars(select(Member)):
            assert new.decrypt(m.id_number_enc) == ids[m.id]
            assert m.id_number_hash == new.lookup_hash(ids[m.id])
            with pytest.raises(ValueError):
                old.decrypt(m.id_number_enc)
        for e in s.scalars(select(Enrolment)):
            assert e.id_number_hash == s.get(Member, e.member_id).id_number_hash
        assert new.decrypt(s.get(Household, home["id"]).phone_enc) == "13800138000"
        card = s.scalar(select(BankCard))
        assert new.decrypt(card.number_enc) == home["card"]
        assert card.number_hash == new.lookup_hash(home["card"])
        assert {new.decrypt(line.card_number_enc) for line in s.scalars(select(PayoutLine))} \
            == {home["card"]}
        state = s.get(DialogueState, "o_signup").data["members"][0]
        assert new.decrypt(state["id_enc"]) == "110101199003077777"
        assert state["hash"] == new.lookup_hash("110101199003077777")
        assert s.scalar(select(AuditLog).where(AuditLog.action == "key.rotate"))
    # found by number with the new key, as the bot finds them
    from core.households import enrolment_of

    with db.session() as s:
        some = next(iter(ids.values()))
        year_id = s.scalar(select(Enrolment.scheme_year_id).limit(1))
        assert enrolment_of(s, year_id, new.lookup_hash(some)) is not None


# ---------------------------------------------------------------------------------------------
# The nightly backup: outcome on /healthz, a message to the super administrators

def _super(db, openid="o_super"):
    with db.session() as s:
        s.add(AdminGrant(openid=openid, role=AdminRole.super))


def _messages(db, openid="o_super") -> list[str]:
    with db.session() as s:
        return [m.payload["message"]["content"] for m in s.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient == openid)
            .order_by(OutboxMessage.id))]


def test_nightly_without_a_passphrase_fails_and_tells_the_super_admins(app_ctx, db, cfg):
    from bot.web.app import create_app
    from bot.jobs.backup import run_nightly

    _super(db)
    client = create_app(app_ctx).test_client()
    assert client.get("/healthz").get_json()["backup"] == {
        "last_success_at": None, "last_failure_at": None, "last_error": None, "ok": True}
    outcome = run_nightly(app_ctx, datetime.now(cfg.tz))
    assert not outcome["ok"] and "passphrase" in outcome["error"]
    assert not (cfg.data_dir / "backups").exists() or not list(
        (cfg.data_dir / "backups").glob("*.huzhu-backup"))
    health = client.get("/healthz").get_json()
    assert health["status"] == "degraded" and health["backup"]["ok"] is False
    assert "passphrase" in health["backup"]["last_error"]
    texts = _messages(db)
    assert len(texts) == 1 and "备份失败" in texts[0] and "HUZHU_BACKUP_PASSPHRASE" in texts[0]


def test_nightly_backup_writes_keeps_and_prunes(app_ctx, db, cfg, tmp_path, monkeypatch):
    from bot.web.app import create_app
    from bot.jobs.backup import run_nightly

    folder = tmp_path / "nightly"
    cfg.values.update(BACKUP_DIR=str(folder), BACKUP_PASSPHRASE=PASSPHRASE, BACKUP_KEEP=3)
    folder.mkdir()
    stale = folder / "huzhu-20200101-033000.huzhu-backup"
    stale.write_bytes(b"old")
    os.utime(stale, (time.time() - 10 * 86400,) * 2)
    outcome = run_nightly(app_ctx, datetime.now(cfg.tz))
    assert outcome["ok"], outcome
    made = Path(outcome["file"])
    assert made.parent == folder and not stale.exists()
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert read_manifest(made, PASSPHRASE.encode())["tables"]["pool"] == 1
    health = create_app(app_ctx).test_client().get("/healthz").get_json()
    assert health["backup"]["ok"] and health["backup"]["file"] == str(made)


def test_no_success_for_two_days_tells_the_super_admins_once_a_day(app_ctx, db, cfg):
    from bot.web.app import create_app
    from bot.jobs.backup import watch
    from core.audit import audit

    _super(db)
    now = datetime.now(timezone.utc)
    assert not watch(app_ctx, now)  # never attempted: nothing to say
    with db.session() as s:
        audit(s, "scheduler", "backup.done", "backup", "x", None, {"ok": True, "file": "f"})
    assert not watch(app_ctx, now + timedelta(hours=47))
    assert watch(app_ctx, now + timedelta(hours=49))
    assert not watch(app_ctx, now + timedelta(hours=60))  # told already today
    assert watch(app_ctx, now + timedelta(hours=74))
    texts = _messages(db)
    assert len(texts) == 2 and all("48 小时没有成功的备份" in t for t in texts)
    with db.session() as s:  # /healthz says so too once the last success is that old
        s.execute(AuditLog.__table__.update().where(AuditLog.action == "backup.done")
                  .values(at=datetime.now(timezone.utc) - timedelta(hours=50)))
    health = create_app(app_ctx).test_client().get("/healthz").get_json()
    assert health["backup"]["ok"] is False and health["status"] == "degraded"


def test_a_restore_that_does_not_verify_leaves_nothing(app_ctx, cfg, tmp_path, emulator,
                                                       target_url, phrase_file, monkeypatch,
                                                       capsys):
    """An archive whose manifest promises one member more than its database holds (as a
    database copy that lost rows would look): the restore loads it, finds the difference, and
    removes everything it made — the database and the data folder are as empty as before."""
    import core.backup

    with app_ctx.db.session() as s:
        make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse")])
    put_media(cfg.data_dir, 2, 1000)
    real = core.backup.describe

    def lying(conn):
        facts = real(conn)
        facts["tables"]["member"] += 1
        return facts

    out = tmp_path / "lying.huzhu-backup"
    with monkeypatch.context() as m:
        m.setattr(core.backup, "describe", lying)
        assert cli(cfg, monkeypatch, "backup", "--out", str(out), "--with-key",
                   "--passphrase-file", str(phrase_file)) == 0
    rcfg = restored_cfg(tmp_path, target_url, emulator)
    capsys.readouterr()
    assert cli(rcfg, monkeypatch, "restore", str(out), "--passphrase-file",
               str(phrase_file)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "table member: manifest 3, restored 2" in err[0]
    assert not rcfg.data_dir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".huzhu-restore")]
    rdb = Database(target_url)
    try:
        if rdb.is_postgres:
            with rdb.engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE "
                                            "schemaname = 'public'").scalar() == 0
        else:
            assert not Path(make_url(target_url).database).exists()
    finally:
        rdb.dispose()


# ---------------------------------------------------------------------------------------------
# The sealed stream itself

def _sealed(data: bytes, phrase: bytes = b"pass phrase") -> bytes:
    import io

    from core.archive import EncryptingWriter

    raw = io.BytesIO()
    w = EncryptingWriter(raw, phrase, log2_n=10)
    for i in range(0, len(data), 300_000):
        w.write(data[i:i + 300_000])
    w.close()
    return raw.getvalue()


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    import struct

    from core.archive import _HEADER

    at = _HEADER.size + 32
    head, chunks = blob[:at], []
    while at < len(blob):
        (n,) = struct.unpack(">I", blob[at:at + 4])
        chunks.append(blob[at:at + 4 + n])
        at += 4 + n
    return head, chunks


def _open(blob: bytes, phrase: bytes = b"pass phrase") -> bytes:
    import io

    from core.archive import DecryptingReader

    return DecryptingReader(io.BytesIO(blob), phrase).read()


def test_sealed_stream_round_trip_and_every_kind_of_tampering():
    from core.archive import ArchiveError, WrongPassphrase

    data = os.urandom(3 * (1 << 20) + 12345)  # three whole chunks and a short last one
    blob = _sealed(data)
    assert _open(blob) == data and _open(_sealed(b"")) == b""
    head, chunks = _chunks(blob)
    assert len(chunks) == 4
    with pytest.raises(WrongPassphrase):
        _open(blob, b"pass phrasE")
    cases = {
        "the last chunk dropped (cut at a chunk boundary)": head + b"".join(chunks[:3]),
        "a middle chunk dropped": head + chunks[0] + chunks[2] + chunks[3],
        "two chunks swapped": head + chunks[1] + chunks[0] + chunks[2] + chunks[3],
        "a chunk from another file": head + _chunks(_sealed(data))[1][0] + b"".join(chunks[1:]),
        "bytes after the end": blob + b"\0",
        "cut inside a chunk": blob[:len(head) + 1000],
    }
    for name, bad in cases.items():
        with pytest.raises(ArchiveError):
            _open(bad)
            pytest.fail(name)

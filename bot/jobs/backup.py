"""The nightly backup (APScheduler, bot/scheduler.py):

- `backup.nightly` — every day at BACKUP_AT (03:30 by default, after the 03:00 payout run):
  an encrypted archive into BACKUP_DIR (core.backup.make_backup), archives older than
  BACKUP_KEEP days removed. The passphrase is HUZHU_BACKUP_PASSPHRASE or BACKUP_PASSPHRASE_FILE;
  with neither the backup fails and says so — it never writes an unencrypted one. The outcome is
  an audit row (`backup.done` / `backup.failed`), which /healthz shows; a failure is told to the
  super administrators at once.
- `backup.watch` — hourly: when no backup has succeeded for 48 hours (the server was off at
  night, the disk is full…), the super administrators are told, at most once a day.

Tests call `run_nightly(x, now)` and `watch(x, now)` with the clock moved.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from bot.jobs.scheduler import current, job
from core.audit import audit
from core.config import backup_time, load_config

log = logging.getLogger("huzhu.jobs.backup")

ACTOR = "scheduler"


def _at() -> tuple[int, int]:
    try:
        return backup_time(load_config(validate=False).BACKUP_AT) or (3, 30)
    except Exception:
        return 3, 30


def super_admins(session) -> list[str]:
    from core.models import AdminGrant, AdminRole

    return sorted(set(session.scalars(select(AdminGrant.openid)
                                      .where(AdminGrant.role == AdminRole.super))))


def _alert(session, template: str, at: datetime, **context) -> int:
    from core.messages import render
    from core.outbox import send_text

    text = render(template, **context)
    admins = super_admins(session)
    for openid in admins:
        send_text(session, openid, text)
    row = audit(session, ACTOR, "backup.alert", "backup", template, None,
                {"template": template, "admins": len(admins)})
    row.at = at.astimezone(timezone.utc)
    return len(admins)


def run_nightly(x, now: datetime) -> dict:
    """One nightly backup at `now` (local time); returns the outcome recorded."""
    from core import backup

    cfg = x.cfg
    folder = backup.backup_dir(cfg)
    outcome: dict
    try:
        phrase = backup.configured_passphrase(cfg)
        if phrase is None:
            raise backup.BackupError("no backup passphrase is configured (set "
                                     "HUZHU_BACKUP_PASSPHRASE or BACKUP_PASSPHRASE_FILE); "
                                     "no unencrypted backup is written")
        r = backup.make_backup(cfg, folder / backup.default_name(now), phrase)
        removed = backup.prune(folder, cfg.BACKUP_KEEP, now)
        outcome = {"ok": True, "file": str(r.path), "bytes": r.bytes,
                   "seconds": round(r.seconds, 1), "removed": len(removed)}
        log.info("nightly backup: %s (%.1f MB, %.1f s), %d old removed", r.path,
                 r.bytes / 1e6, r.seconds, len(removed))
    except Exception as exc:
        error = str(exc) if isinstance(exc, backup.BackupError) else (
            f"{type(exc).__name__}: {exc}")
        log.error("nightly backup failed: %s", error)
        outcome = {"ok": False, "error": error[:500]}
    with x.db.session() as s:
        if outcome["ok"]:
            audit(s, ACTOR, backup.DONE, "backup", now.strftime("%Y-%m-%d"), None, outcome)
        else:
            audit(s, ACTOR, backup.FAILED, "backup", now.strftime("%Y-%m-%d"), None, outcome)
            _alert(s, "backup_failed", now, when=now.strftime("%Y-%m-%d %H:%M"),
                   error=outcome["error"])
    x.waker.wake()
    return outcome


def watch(x, now_utc: datetime | None = None) -> bool:
    """Tell the super administrators when no backup has succeeded for 48 hours (counted from
    the last success, or from the first attempt when none ever succeeded); at most once a day.
    Returns whether it told them."""
    from core import backup
    from core.messages import format_date
    from core.models import AuditLog
    from core.outbox import as_utc

    now_utc = now_utc or datetime.now(timezone.utc)
    with x.db.session() as s:
        done = backup.last_of(s, backup.DONE)
        if done is not None:
            since = as_utc(done.at)
        else:
            first = s.scalar(select(AuditLog.at).where(AuditLog.action == backup.FAILED)
                             .order_by(AuditLog.id).limit(1))
            if first is None:
                return False  # no backup was ever attempted here yet
            since = as_utc(first)
        if now_utc - since < timedelta(hours=backup.OVERDUE_HOURS):
            return False
        alerted = s.scalar(select(AuditLog.at).where(
            AuditLog.action == backup.ALERT, AuditLog.entity_id == "backup_overdue")
            .order_by(AuditLog.id.desc()).limit(1))
        if alerted is not None and now_utc - as_utc(alerted) < timedelta(hours=24):
            return False
        last = format_date(as_utc(done.at).astimezone(x.cfg.tz)) if done else None
        _alert(s, "backup_overdue", now_utc, hours=backup.OVERDUE_HOURS, last=last)
    x.waker.wake()
    return True


_HOUR, _MINUTE = _at()


@job("backup.nightly", "cron", hour=_HOUR, minute=_MINUTE)
def nightly() -> None:
    x = current()
    run_nightly(x, datetime.now(x.cfg.tz))


@job("backup.watch", "interval", hours=1)
def backup_watch() -> None:
    watch(current())

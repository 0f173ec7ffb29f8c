"""The key for personal data at rest (SECRET_KEY, or DATA_DIR/secret.key): its fingerprint, a
copy for the safe, and rotation.

Everything encrypted with it, and every keyed hash made with it (both are derived from the one
key, core/crypto.py), is listed in ENCRYPTED: rotation re-encrypts each of those fields and
recomputes each hash in one transaction, so look-ups by ID or card number keep working.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from core.config import Config, _sync_folder
from core.crypto import PersonalDataVault
from core.db import Database


class KeyError_(Exception):
    """A key operation refused; the message is one line for the operator."""


def key_path(cfg: Config) -> Path:
    return cfg.data_dir / "secret.key"


def configured(cfg: Config) -> bool:
    return bool(cfg.SECRET_KEY)


def read_key(cfg: Config) -> bytes | None:
    """The key in use, or None when there is none yet (never makes one)."""
    if cfg.SECRET_KEY:
        return cfg.SECRET_KEY.encode()
    try:
        key = key_path(cfg).read_bytes().strip()
    except FileNotFoundError:
        return None
    return key or None


def fingerprint(key: bytes) -> str:
    """Eight groups of four hex digits of the key's SHA-256: shows which key a copy is without
    showing the key."""
    h = hashlib.sha256(b"huzhu-key-fingerprint:" + key).hexdigest()[:32]
    return " ".join(h[i:i + 4] for i in range(0, 32, 4))


def write_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only, refusing to overwrite, synced to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_folder(path.parent)


def export(cfg: Config, to: Path) -> str:
    key = read_key(cfg)
    if key is None:
        raise KeyError_(f"there is no key yet ({key_path(cfg)} does not exist and SECRET_KEY "
                        "is not set): nothing encrypted can exist either")
    if to.exists():
        raise KeyError_(f"{to} already exists; choose another file (nothing was written)")
    if not to.parent.is_dir():
        raise KeyError_(f"{to.parent} is not a folder (nothing was written)")
    write_private(to, key + b"\n")
    return fingerprint(key)


# ---------------------------------------------------------------------------------------------
# Rotation

@dataclass
class RotateResult:
    old_fingerprint: str
    new_fingerprint: str
    old_copy: Path
    counts: dict[str, int]


def _walk_state(data, old: PersonalDataVault, new: PersonalDataVault):
    """A dialogue's saved answers with every `*_enc` value re-encrypted and the `hash` beside an
    `id_enc` recomputed; returns (new data, number of values changed)."""
    changed = 0
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if isinstance(v, str) and k.endswith("_enc"):
                plain = old.decrypt(v)
                out[k] = new.encrypt(plain)
                changed += 1
                if k == "id_enc" and "hash" in data:
                    out["hash"] = new.lookup_hash(plain)
            elif k == "hash" and "id_enc" in data:
                out.setdefault(k, v)
            else:
                out[k], n = _walk_state(v, old, new)
                changed += n
        return out, changed
    if isinstance(data, list):
        items = [_walk_state(v, old, new) for v in data]
        return [v for v, _ in items], sum(n for _, n in items)
    return data, 0


def rotate(cfg: Config, db: Database, actor: str, now: datetime | None = None) -> RotateResult:
    from core.audit import audit
    from core.models import BankCard, DialogueState, Enrolment, Household, Member, PayoutLine

    if configured(cfg):
        raise KeyError_("SECRET_KEY is set in the configuration: rotate by hand is not possible "
                        "here; keep the key in DATA_DIR/secret.key (unset HUZHU_SECRET_KEY after "
                        "writing it there) and run `huzhu key rotate` again")
    old_key = read_key(cfg)
    if old_key is None:
        raise KeyError_(f"there is no key to rotate ({key_path(cfg)} does not exist)")
    now = now or datetime.now()
    old, new_key = PersonalDataVault(old_key), secrets.token_urlsafe(32).encode()
    new = PersonalDataVault(new_key)
    folder = cfg.data_dir
    old_copy = folder / f"secret.key.{now:%Y%m%d-%H%M%S}.old"
    pending = folder / "secret.key.new"
    if pending.exists():
        raise KeyError_(f"{pending} exists: a rotation was interrupted. If the data no longer "
                        "decrypts with secret.key, that file holds the key it was re-encrypted "
                        "with (move it to secret.key); otherwise remove it, then try again")
    write_private(old_copy, old_key + b"\n")
    write_private(pending, new_key + b"\n")
    counts = {"member": 0, "enrolment": 0, "household_phone": 0, "bank_card": 0,
              "payout_line": 0, "dialogue_state": 0}
    try:
        with db.session() as s:
            def member_rows(batch):
                out = []
                for mid, enc in batch:
                    plain = old.decrypt(enc)
                    out.append({"id": mid, "id_number_enc": new.encrypt(plain),
                                "id_number_hash": new.lookup_hash(plain)})
                return out

            counts["member"] = _in_batches(s, Member, Member.id_number_enc, member_rows)
            # an enrolment carries its member's hash (core/households.py)
            counts["enrolment"] = s.execute(
                update(Enrolment).values(id_number_hash=select(Member.id_number_hash).where(
                    Member.id == Enrolment.member_id).scalar_subquery())
                .execution_options(synchronize_session=False)).rowcount

            def phone_rows(batch):  # phones are optional: only the rows that have one
                return [{"id": hid, "phone_enc": new.encrypt(old.decrypt(enc))}
                        for hid, enc in batch if enc]

            counts["household_phone"] = _in_batches(s, Household, Household.phone_enc,
                                                     phone_rows, where=Household.phone_enc.isnot(None))

            def card_rows(batch):
                out = []
                for cid, enc in batch:
                    plain = old.decrypt(enc)
                    out.append({"id": cid, "number_enc": new.encrypt(plain),
                                "number_hash": new.lookup_hash(plain)})
                return out

            counts["bank_card"] = _in_batches(s, BankCard, BankCard.number_enc, card_rows)
            cache: dict[str, str] = {}

            def line_rows(batch):
                out = []
                for lid, enc in batch:
                    if enc not in cache:  # one card is on many lines: one token for them all
                        cache[enc] = new.encrypt(old.decrypt(enc))
                    out.append({"id": lid, "card_number_enc": cache[enc]})
                return out

            counts["payout_line"] = _in_batches(s, PayoutLine, PayoutLine.card_number_enc,
                                                line_rows)
            for state in s.scalars(select(DialogueState)):
                data, n = _walk_state(state.data or {}, old, new)
                if n:
                    s.execute(update(DialogueState).where(DialogueState.openid == state.openid)
                              .values(data=data))
                    counts["dialogue_state"] += 1
            audit(s, actor, "key.rotate", "key", None, {"fingerprint": fingerprint(old_key)},
                  {"fingerprint": fingerprint(new_key), **counts})
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, key_path(cfg))
    _sync_folder(folder)
    return RotateResult(fingerprint(old_key), fingerprint(new_key), old_copy, counts)


def _in_batches(session, model, column, convert, size: int = 5000, where=None) -> int:
    """Rewrite `column` of every row of `model`, `size` rows at a time in id order (memory stays
    bounded on 600,000 members); returns the number of rows."""
    last, n = 0, 0
    while True:
        query = select(model.id, column).where(model.id > last)
        if where is not None:
            query = query.where(where)
        batch = session.execute(query.order_by(model.id).limit(size)).all()
        if not batch:
            return n
        session.execute(update(model), convert(batch))
        last, n = batch[-1][0], n + len(batch)

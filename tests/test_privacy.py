"""Personal data at rest: no plain birth dates, short ID masks, phones encrypted with a masked
copy, cached replies without phones and deleted after 30 days — and the migration that brings
a database with data there, on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from stdnum.cn import ric

from core.crypto import PersonalDataVault, mask_id, mask_phone, scrub_phones
from core.db import alembic_config, script_heads, upgrade
from core.ids import birth_date_of
from core.models import AuditLog, InboundMessage, utcnow
from core.retention import delete_cached_replies
from tests.conftest import PG_URL

SECRET = b"migration-test-secret"


def _id(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17)


def test_id_mask_keeps_three_and_two_and_the_birth_date_comes_from_the_number():
    number = _id("32058219600517123")
    assert mask_id(number) == "320*************" + number[-2:]
    assert mask_id(number.lower()) == mask_id(number) and len(mask_id(number)) == 18
    assert birth_date_of(number) == date(1960, 5, 17)


def test_phone_masks():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0512-58881234") == "0512-****1234"
    assert mask_phone(None) is None and mask_phone("") is None
    text_ = "请核对：示范镇西村，电话 13812345678；座机 0512-58881234；户号 H13812345678"
    assert scrub_phones(text_) == ("请核对：示范镇西村，电话 138****5678；座机 0512-****1234；"
                                   "户号 H13812345678")
    # an 18-digit ID number is not a phone
    assert scrub_phones("320*************12 11010519491231002X") \
        == "320*************12 11010519491231002X"


# ---------------------------------------------------------------------------------------------
# The migration, on a database holding data at the heads before it.

@pytest.fixture(params=["sqlite", "postgresql"])
def old_engine(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL: set HUZHU_TEST_DATABASE_URL")
    schema = f"privacy_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_migration_moves_birth_dates_masks_and_phones_of_existing_rows(old_engine):
    from alembic import command

    new = {"privacy_01", "privacy_02"}
    before = (script_heads() - new) | {"0002"}
    cfg = alembic_config(old_engine)
    for head in sorted(before):
        command.upgrade(cfg, head)
    vault = PersonalDataVault(SECRET)
    head_id, child_id = _id("32058219600517123"), _id("11010520190203002")
    old_mask = head_id[:4] + "*" * 10 + head_id[-4:]
    now = utcnow()
    with old_engine.begin() as conn:
        conn.execute(text("INSERT INTO pool (id, code, name, level) VALUES (1, 'p', '示范镇', 'town')"))
        conn.execute(text("INSERT INTO village (id, pool_id, town, name, full_name) "
                          "VALUES (1, 1, '示范镇', '东村', '示范镇/东村')"))
        conn.execute(text(
            "INSERT INTO household (id, number, pool_id, village_id, phone, status, created_at) "
            "VALUES (1, 'H00000001', 1, 1, '13812345678', 'active', :t), "
            "(2, 'H00000002', 1, 1, '0512-58881234', 'active', :t), "
            "(3, 'H00000003', 1, 1, NULL, 'active', :t)"), {"t": now})
        for mid, hh, idn, born in ((1, 1, head_id, date(1960, 5, 17)),
                                   (2, 3, child_id, date(2019, 2, 3))):
            conn.execute(text(
                "INSERT INTO member (id, household_id, name, id_number_enc, id_number_hash, "
                "id_number_masked, birth_date, relation, insurance, created_at) VALUES "
                "(:id, :hh, '王大山', :enc, :h, :m, :b, 'head', 'resident', :t)"),
                {"id": mid, "hh": hh, "enc": vault.encrypt(idn), "h": vault.lookup_hash(idn),
                 "m": idn[:4] + "*" * 10 + idn[-4:], "b": born, "t": now})
        conn.execute(text("INSERT INTO audit_log (at, actor, action, after) "
                          "VALUES (:t, 'o_x', 'household.register', :a)"),
                     {"t": now, "a": json.dumps({"members": [old_mask], "phone": "138****5678"})})
        conn.execute(text("INSERT INTO inbound_message (dedupe_key, openid, msg_type, "
                          "received_at, done, reply) VALUES ('k1', 'o_x', 'text', :t, :d, :r)"),
                     {"t": now, "d": True, "r": json.dumps(
                         [f"请核对：东村，电话 13812345678\n王*山 {old_mask}"], ensure_ascii=False)})
        conn.execute(text("INSERT INTO dialogue_state (openid, dialogue, state, data, updated_at) "
                          "VALUES ('o_x', 'signup', 'head_insurance', :d, :t)"),
                     {"t": now, "d": json.dumps({"phone": "13912345678", "members": []})})

    upgrade(old_engine, lambda: SECRET)

    with old_engine.connect() as conn:
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} \
            == set(script_heads())
        members = conn.execute(text(
            "SELECT id, birth_year, id_number_masked FROM member ORDER BY id")).all()
        assert [tuple(m) for m in members] == [
            (1, 1960, "320*************" + head_id[-2:]),
            (2, 2019, "110*************" + child_id[-2:])]
        columns = conn.execute(text("SELECT * FROM member")).keys()
        assert "birth_date" not in columns
        households = conn.execute(text(
            "SELECT id, phone_enc, phone_masked FROM household ORDER BY id")).all()
        assert "phone" not in conn.execute(text("SELECT * FROM household")).keys()
        assert [h[2] for h in households] == ["138****5678", "0512-****1234", None]
        assert vault.decrypt(households[0][1]) == "13812345678"
        assert vault.decrypt(households[1][1]) == "0512-58881234" and households[2][1] is None
        audit = conn.execute(text("SELECT CAST(after AS TEXT) FROM audit_log")).scalar()
        assert old_mask not in audit and "320*************" + head_id[-2:] in audit
        reply = conn.execute(text("SELECT CAST(reply AS TEXT) FROM inbound_message")).scalar()
        assert "13812345678" not in reply and old_mask not in reply
        assert "138****5678" in json.loads(reply)[0]
        data = json.loads(conn.execute(text(
            "SELECT CAST(data AS TEXT) FROM dialogue_state")).scalar())
        assert "phone" not in data and vault.decrypt(data["phone_enc"]) == "13912345678"
    if old_engine.dialect.name == "sqlite":  # nor left in the file's free pages
        with old_engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = Path(old_engine.url.database).read_bytes()
        assert b"1960-05-17" not in raw and b"13812345678" not in raw
        assert old_mask.encode() not in raw


# ---------------------------------------------------------------------------------------------
# Cached replies: kept 30 days.

def test_cached_replies_older_than_30_days_are_deleted_by_the_nightly_job(db):
    from bot.jobs.scheduler import JOBS
    import bot.jobs.retention  # noqa: F401  (registers the job)

    assert JOBS["retention.cached_replies"].trigger == "cron"
    now = utcnow()
    with db.session() as s:
        for i, age in enumerate((31, 30.5, 29, 1, 0)):
            s.add(InboundMessage(dedupe_key=f"k{i}", openid="o_a", msg_type="text",
                                 received_at=now - timedelta(days=age), done=True,
                                 reply=[f"reply {i}"]))
    with db.session() as s:
        assert delete_cached_replies(s, now) == 2
    with db.session() as s:
        left = [m.dedupe_key for m in s.scalars(select(InboundMessage).order_by(InboundMessage.id))]
        assert left == ["k2", "k3", "k4"]
        row = s.scalar(select(AuditLog).where(AuditLog.action == "retention.cached_replies"))
        assert row.after["deleted"] == 2
    with db.session() as s:  # nothing more to delete: nothing written
        assert delete_cached_replies(s, now) == 0
        assert len(s.scalars(select(AuditLog)).all()) == 1


def test_the_log_follows_standard_error_when_it_is_swapped_and_stays_masked(monkeypatch):
    """A program that swaps its standard error after logging was set up (a test capturing it,
    then closing the capture) keeps logging to the new one — masked — instead of failing on
    the closed file with a traceback at every line."""
    import io
    import logging
    import sys

    from bot import logs

    full_id = _id("32068219500101123")
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.setup("INFO")
    root = logging.getLogger()
    try:
        logging.getLogger("huzhu.test").warning("member %s", full_id)
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("huzhu.test").warning("member again %s", full_id)
        out = second.getvalue()
        assert "member again" in out and full_id not in out and mask_id(full_id) in out
        assert "Logging error" not in out and "Traceback" not in out
    finally:
        for h in [h for h in root.handlers if getattr(h, "_huzhu", False)]:
            root.removeHandler(h)

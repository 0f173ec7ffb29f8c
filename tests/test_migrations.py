"""The start-up check of the schema: a database at the newest revision is left alone without
starting Alembic, one behind is migrated."""
from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import text

from core.db import MIGRATIONS_DIR, Database, script_heads


def test_script_heads_are_alembics_heads():
    assert script_heads() == set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def test_upgrade_migrates_a_database_behind_and_leaves_a_current_one(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'h.db'}")
    db.upgrade()
    with db.engine.begin() as conn:
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} \
            == script_heads()
        # one branch head taken back: the next upgrade must bring it forward again
        conn.execute(text("DELETE FROM alembic_version WHERE version_num = 'payments_01'"))
        conn.execute(text("DROP INDEX ux_payment_order_open"))
        conn.execute(text("DROP TABLE payment_reminder"))
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM payment_reminder")).scalar() == 0
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} \
            == script_heads()
    db.upgrade()  # current: nothing to do, no error
    db.dispose()


def test_inbound_message_rows_cost_no_index_on_the_sender(tmp_path):
    """Nothing looks a message's dedupe row up by its sender: webhook3_01 drops that index
    (each message paid for it with one more index page written), and puts it back on the way
    down."""
    from alembic import command
    from sqlalchemy import inspect

    from core.db import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'h.db'}")
    db.upgrade()

    def indexes() -> set[str]:
        return {ix["name"] for ix in inspect(db.engine).get_indexes("inbound_message")}

    assert "ix_inbound_message_openid" not in indexes()
    command.downgrade(alembic_config(db.engine), "webhook3_01@-1")
    assert "ix_inbound_message_openid" in indexes()
    db.upgrade()
    assert "ix_inbound_message_openid" not in indexes()
    db.dispose()

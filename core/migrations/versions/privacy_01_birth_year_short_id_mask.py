"""privacy: members keep their birth year only (the date is in the encrypted ID number), and
ID numbers are masked to their first three and last two characters

With the birth date in plain beside a mask of the first four and last four characters, two
digits and the check digit were left to guess (about nine numbers). The old masks written into
claim photos' text, the audit log, the outbox and cached replies are rewritten too: together
with the birth year they would still leave only a few dozen numbers.

Revision ID: privacy_01
Revises: 0002
"""
import re

from alembic import op
import sqlalchemy as sa

revision = "privacy_01"
down_revision = "0002"
branch_labels = None
depends_on = None

_OLD_MASK = re.compile(r"([0-9]{3})[0-9]\*{10}[0-9]{2}([0-9]{1}[0-9Xx])")
# (table, key column, text column, is JSON)
TEXTS = (("claim_document", "id", "ocr_text", False), ("audit_log", "id", "before", True),
         ("audit_log", "id", "after", True), ("outbox", "id", "payload", True),
         ("inbound_message", "id", "reply", True), ("dialogue_state", "openid", "data", True))


def remask(text: str) -> str:
    return _OLD_MASK.sub(lambda m: m.group(1) + "*" * 13 + m.group(2), text)


def rewrite_texts(bind, change, like: str, columns=TEXTS) -> None:
    """Rewrite, with `change`, every text (or JSON) value of `columns` LIKE `like`."""
    postgres = bind.dialect.name == "postgresql"
    for table, key, column, is_json in columns:
        rows = bind.execute(sa.text(
            f"SELECT {key}, CAST({column} AS TEXT) FROM {table} "
            f"WHERE CAST({column} AS TEXT) LIKE :like"), {"like": like}).all()
        value = "CAST(:v AS JSON)" if is_json and postgres else ":v"
        update = sa.text(f"UPDATE {table} SET {column} = {value} WHERE {key} = :k")
        changed = [{"k": k, "v": change(v)} for k, v in rows if v is not None and change(v) != v]
        if changed:
            bind.execute(update, changed)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # the rows rewritten and the tables copied by batch mode leave their old pages free in
        # the file: zeroed, so the plain values do not stay readable in it
        bind.exec_driver_sql("PRAGMA secure_delete = ON")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birth_year", sa.SmallInteger(), nullable=True))
    year = ("EXTRACT(YEAR FROM birth_date)" if bind.dialect.name == "postgresql"
            else "CAST(strftime('%Y', birth_date) AS INTEGER)")
    bind.execute(sa.text(f"UPDATE member SET birth_year = {year}"))
    bind.execute(sa.text(
        "UPDATE member SET id_number_masked = substr(id_number_masked, 1, 3) || "
        "'*************' || substr(id_number_masked, 17, 2) "
        "WHERE length(id_number_masked) = 18 AND substr(id_number_masked, 5, 10) = '**********'"))
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.alter_column("birth_year", existing_type=sa.SmallInteger(), nullable=False)
        batch_op.drop_column("birth_date")
    rewrite_texts(bind, remask, "%**********%")


def downgrade() -> None:
    # the day and month are not kept: 1 January of the birth year
    bind = op.get_bind()
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birth_date", sa.Date(), nullable=True))
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("UPDATE member SET birth_date = make_date(birth_year, 1, 1)"))
    else:
        bind.execute(sa.text("UPDATE member SET birth_date = printf('%04d-01-01', birth_year)"))
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.alter_column("birth_date", existing_type=sa.Date(), nullable=False)
        batch_op.drop_column("birth_year")

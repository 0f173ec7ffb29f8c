"""privacy: households' phone numbers encrypted at rest beside a masked copy (138****5678);
phone numbers in cached replies and in open sign-up dialogues masked or encrypted too

The encryption needs the secret key: the application hands it over (Database.secret); a
database upgraded without it (alembic run by hand) takes it the way `huzhu` does, from the
configuration in the environment.

Revision ID: privacy_02
Revises: privacy_01
"""
import json
import re

from alembic import context, op
import sqlalchemy as sa

revision = "privacy_02"
down_revision = "privacy_01"
branch_labels = None
depends_on = None

_MOBILE = re.compile(r"(?<![0-9A-Za-z])(1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9A-Za-z])(0[0-9]{2,3}-)([0-9]{3,4})([0-9]{4})(?![0-9])")
BATCH = 2000


def mask_phone(phone):
    if not phone:
        return None
    if "-" in phone:
        area, _, local = phone.partition("-")
        return f"{area}-" + "*" * max(len(local) - 4, 0) + local[-4:]
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]


def scrub_phones(text: str) -> str:
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    return _LANDLINE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def _vault():
    from core.crypto import PersonalDataVault

    source = context.config.attributes.get("secret_key")
    if source is not None:
        return PersonalDataVault(source())
    from core.config import load_config, secret_key

    return PersonalDataVault(secret_key(load_config(validate=False)))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # the rows rewritten and the tables copied by batch mode leave their old pages free in
        # the file: zeroed, so the plain values do not stay readable in it
        bind.exec_driver_sql("PRAGMA secure_delete = ON")
    postgres = bind.dialect.name == "postgresql"
    with op.batch_alter_table("household", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_enc", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("phone_masked", sa.String(length=20), nullable=True))
    update = sa.text("UPDATE household SET phone_enc = :e, phone_masked = :m WHERE id = :k")
    vault, last = None, 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, phone FROM household WHERE phone IS NOT NULL AND phone <> '' AND id > :last "
            "ORDER BY id LIMIT :n"), {"last": last, "n": BATCH}).all()
        if not rows:
            break
        vault = vault or _vault()
        bind.execute(update, [{"k": k, "e": vault.encrypt(p), "m": mask_phone(p)} for k, p in rows])
        last = rows[-1][0]
    with op.batch_alter_table("household", schema=None) as batch_op:
        batch_op.drop_column("phone")

    # cached replies (the sign-up summary shows the phone): masked
    value = "CAST(:v AS JSON)" if postgres else ":v"
    rows = bind.execute(sa.text("SELECT id, CAST(reply AS TEXT) FROM inbound_message "
                                "WHERE reply IS NOT NULL")).all()
    changed = [{"k": k, "v": scrub_phones(v)} for k, v in rows if scrub_phones(v) != v]
    if changed:
        bind.execute(sa.text(f"UPDATE inbound_message SET reply = {value} WHERE id = :k"), changed)
    # an open sign-up keeps the phone given, encrypted (handlers/signup.py)
    rows = bind.execute(sa.text("SELECT openid, CAST(data AS TEXT) FROM dialogue_state "
                                "WHERE CAST(data AS TEXT) LIKE '%\"phone\"%'")).all()
    changed = []
    for openid, text in rows:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("phone"):
            vault = vault or _vault()
            data["phone_enc"] = vault.encrypt(data.pop("phone"))
            changed.append({"k": openid, "v": json.dumps(data, ensure_ascii=False)})
    if changed:
        bind.execute(sa.text(f"UPDATE dialogue_state SET data = {value} WHERE openid = :k"),
                     changed)


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("household", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
    rows = bind.execute(sa.text("SELECT id, phone_enc FROM household "
                                "WHERE phone_enc IS NOT NULL")).all()
    if rows:
        vault = _vault()
        bind.execute(sa.text("UPDATE household SET phone = :p WHERE id = :k"),
                     [{"k": k, "p": vault.decrypt(e)} for k, e in rows])
    with op.batch_alter_table("household", schema=None) as batch_op:
        batch_op.drop_column("phone_masked")
        batch_op.drop_column("phone_enc")

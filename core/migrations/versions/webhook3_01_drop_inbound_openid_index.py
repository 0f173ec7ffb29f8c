"""webhook: inbound_message loses its index on openid — nothing looks dedupe rows up by sender
(retries by dedupe key, retention by id and time), and each message's row paid for it: one more
index page written a message (on SQLite a 4 KB page in the write-ahead log for nearly every
message once the table holds more rows than a few hundred senders fill)

Revision ID: webhook3_01
Revises: webhook2_01
"""
from alembic import op

revision = "webhook3_01"
down_revision = "webhook2_01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_inbound_message_openid", table_name="inbound_message")


def downgrade() -> None:
    op.create_index("ix_inbound_message_openid", "inbound_message", ["openid"])

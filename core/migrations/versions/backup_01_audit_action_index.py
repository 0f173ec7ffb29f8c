"""backup: an index on audit_log(action, id)

/healthz and the backup watch ask for the latest `backup.done` and `backup.failed` rows on
every call; without the index that is a scan of the whole audit log backwards.

Revision ID: backup_01
Revises: 0002
"""
from alembic import op

revision = "backup_01"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_action_id", table_name="audit_log")

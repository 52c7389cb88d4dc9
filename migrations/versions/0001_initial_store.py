"""Initial store: tracked records, watermarks, outbox, inbox, entity state, write-back queue, sync log,
leases.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 17:51:50.376291
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sync.store.dbtypes

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "entity_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("dispatch_id", sa.String(length=64), nullable=True),
        sa.Column("crm_object", sa.String(length=80), nullable=True),
        sa.Column("crm_id", sa.String(length=18), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("milestones", sa.JSON(), nullable=True),
        sa.Column("updated_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_state")),
        sa.UniqueConstraint("kind", "external_id", name=op.f("uq_entity_state_kind")),
    )
    with op.batch_alter_table("entity_state", schema=None) as batch_op:
        batch_op.create_index("ix_entity_dispatch", ["dispatch_id"], unique=False)

    op.create_table(
        "inbox_message",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("procedure_id", sa.String(length=128), nullable=True),
        sa.Column("receipt", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=True),
        sa.Column("entity_key", sa.String(length=300), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("received_at", sync.store.dbtypes.UTCDateTime(), nullable=False),
        sa.Column("acked_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("processed_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_inbox_message")),
    )
    with op.batch_alter_table("inbox_message", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_entity", ["entity_key"], unique=False)
        batch_op.create_index("ix_inbox_status_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sync.store.dbtypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lease")),
    )
    op.create_table(
        "outbox_batch",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", sync.store.dbtypes.UTCDateTime(), nullable=False),
        sa.Column("sent_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("confirmed_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_outbox_batch")),
    )
    with op.batch_alter_table("outbox_batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_batch_status"), ["status"], unique=False)

    op.create_table(
        "outbox_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("crm_object", sa.String(length=80), nullable=True),
        sa.Column("crm_id", sa.String(length=18), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_item")),
    )
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_item_external", ["record_type", "external_id"], unique=False)
        batch_op.create_index("ix_outbox_item_message", ["message_id"], unique=False)

    op.create_table(
        "sync_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sync.store.dbtypes.UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("entity", sa.String(length=40), nullable=True),
        sa.Column("crm_record_id", sa.String(length=18), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("msg_id", sa.String(length=128), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_log")),
    )
    with op.batch_alter_table("sync_log", schema=None) as batch_op:
        batch_op.create_index("ix_sync_log_at", ["at"], unique=False)
        batch_op.create_index("ix_sync_log_external", ["external_id"], unique=False)
        batch_op.create_index("ix_sync_log_record", ["crm_record_id"], unique=False)

    op.create_table(
        "tracked_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("crm_object", sa.String(length=80), nullable=False),
        sa.Column("crm_id", sa.String(length=18), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("dispatch_id", sa.String(length=64), nullable=True),
        sa.Column("fields_hash", sa.String(length=64), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("last_message_id", sa.String(length=64), nullable=True),
        sa.Column("published_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("confirmed_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_record")),
        sa.UniqueConstraint("crm_object", "crm_id", name=op.f("uq_tracked_record_crm_object")),
    )
    with op.batch_alter_table("tracked_record", schema=None) as batch_op:
        batch_op.create_index("ix_tracked_external", ["external_id"], unique=False)

    op.create_table(
        "watermark",
        sa.Column("crm_object", sa.String(length=80), nullable=False),
        sa.Column("system_modstamp", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("updated_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("crm_object", name=op.f("pk_watermark")),
    )
    op.create_table(
        "write_back",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=10), nullable=False),
        sa.Column("crm_object", sa.String(length=80), nullable=False),
        sa.Column("crm_id", sa.String(length=18), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sync.store.dbtypes.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("flushed_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_back")),
    )
    with op.batch_alter_table("write_back", schema=None) as batch_op:
        batch_op.create_index("ix_write_back_pending", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes too.
    op.drop_table("write_back")
    op.drop_table("watermark")
    op.drop_table("tracked_record")
    op.drop_table("sync_log")
    op.drop_table("outbox_item")
    op.drop_table("outbox_batch")
    op.drop_table("lease")
    op.drop_table("inbox_message")
    op.drop_table("entity_state")

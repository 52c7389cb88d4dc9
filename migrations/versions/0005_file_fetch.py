"""file_fetch: files from the field waiting to be stored in the CRM (note files, billing document PDFs).

A queue of its own, flushed by the write-back job: the download and the upload happen outside any message's
transaction, and `content_version_id` (set once) keeps a file from being stored twice. The downgrade drops the
table with whatever it holds (files not yet stored are fetched again only if their events are replayed).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sync.store.dbtypes

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_fetch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("crm_object", sa.String(length=80), nullable=False),
        sa.Column("crm_id", sa.String(length=18), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sync.store.dbtypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("content_version_id", sa.String(length=18), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_fetch")),
        sa.UniqueConstraint("system", "token", "crm_object", "crm_id", name="uq_file_fetch_token"),
    )
    op.create_index("ix_file_fetch_pending", "file_fetch", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_file_fetch_pending", table_name="file_fetch")
    op.drop_table("file_fetch")

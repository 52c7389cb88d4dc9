"""Watermark: the org's clock at the end of the last read (server_time).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sync.store.dbtypes

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("watermark", schema=None) as batch_op:
        batch_op.add_column(sa.Column("server_time", sync.store.dbtypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("watermark", schema=None) as batch_op:
        batch_op.drop_column("server_time")

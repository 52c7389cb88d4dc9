"""stream_position and outbox_batch.encoding: CRM change-event streaming and CSV first loads.

`stream_position` keeps each change-event channel's last applied replay id, so a restart resumes the
subscription where it stopped. `outbox_batch.encoding` says how a batch is sent ("json", or "csv" for
`publish --all --csv`); existing batches were all JSON. The downgrade drops both: a CSV batch still pending
would be re-sent as JSON, so it refuses while one is pending.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sync.store.dbtypes

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_position",
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("replay_id", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sync.store.dbtypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_stream_position")),
    )
    with op.batch_alter_table("outbox_batch") as batch:
        batch.add_column(sa.Column("encoding", sa.String(length=8), nullable=False, server_default="json"))


def downgrade() -> None:
    pending = (
        op.get_bind()
        .execute(sa.text("SELECT COUNT(*) FROM outbox_batch WHERE encoding = 'csv' AND status = 'pending'"))
        .scalar()
    )
    if pending:
        raise RuntimeError(
            f"cannot downgrade below 0006: {pending} CSV batch(es) are still pending; send them first "
            "(dispatch-connector publish) or delete them"
        )
    with op.batch_alter_table("outbox_batch") as batch:
        batch.drop_column("encoding")
    op.drop_table("stream_position")

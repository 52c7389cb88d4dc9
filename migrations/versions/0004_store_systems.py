"""A store that knows systems: every tracked record, outbox batch, inbox message and entity state names its
field-service back end (`system`); Dispatch Connect's ids become back-end neutral `remote_id`s.

- tracked_record: + system; dispatch_id -> remote_id, String(64) -> String(255).
- outbox_batch: + system; index ix_outbox_batch_system on (system, status).
- inbox_message: + system; - procedure_id, - receipt (Dispatch Connect's settle handles: they die with the
  delivery, so the engine keeps them in memory now). The downgrade re-adds them empty (nullable).
- entity_state: + system; dispatch_id -> remote_id (String(255)); unique (kind, external_id) becomes
  (system, kind, external_id); ix_entity_dispatch (dispatch_id) becomes ix_entity_remote
  (system, kind, remote_id).
- write_back: + system (nullable): the back end whose report queued a create, so the link to the created
  CRM record belongs to it; None for rows that are no back end's (updates, sync-log mirror rows).

Every row already stored is Dispatch Connect's, so `system` is filled with 'dispatch_connect' through a
server default that is dropped again once the rows have it: the models give `system` no default either, so a
writer that forgets the system fails instead of filing its row under Dispatch Connect.

On SQLite each table is rebuilt once (render_as_batch): the column is first added with ALTER TABLE ADD
COLUMN, which fills it without a copy, then one batch copies the table with everything else changed.

Downgrade REFUSES, with a SyncError naming the tables and counts, when any of the four tables holds a row of
another system than 'dispatch_connect', or a Dispatch Connect remote_id longer than the old 64 characters.
Revision 0003 cannot tell systems apart, so every row it keeps it reads as Dispatch Connect's. Deleting the
rows of other systems instead would not only settle entity_state's (kind, external_id) collisions: it would
silently destroy inbox messages already acknowledged to their back end (gone for good) and outbox batches not
yet sent, and keeping them would make revision 0003 send, apply and show them as Dispatch Connect's. Losing
data that way is the operator's decision, not a migration's: the error says which rows are in the way, and
they can be exported or deleted by hand (`DELETE FROM <table> WHERE system <> 'dispatch_connect'`) before the
downgrade is run again. Nothing is changed when it refuses (the check runs before any DDL).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

from sync.errors import SyncError

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose: a migration must not change when the registry's default does.
DISPATCH_CONNECT = "dispatch_connect"
SYSTEM_TABLES = ("tracked_record", "outbox_batch", "inbox_message", "entity_state")
REMOTE_ID_TABLES = ("tracked_record", "entity_state")
OLD_DISPATCH_ID_LENGTH = 64


def _add_system(table: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("system", sa.String(length=40), nullable=False, server_default=DISPATCH_CONNECT)
        )


def _to_remote_id(batch_op: BatchOperations) -> None:
    batch_op.alter_column(
        "dispatch_id",
        new_column_name="remote_id",
        existing_type=sa.String(length=64),
        type_=sa.String(length=255),
        existing_nullable=True,
    )


def _drop_system_default(batch_op: BatchOperations) -> None:
    batch_op.alter_column(
        "system", existing_type=sa.String(length=40), existing_nullable=False, server_default=None
    )


def upgrade() -> None:
    for table in SYSTEM_TABLES:
        _add_system(table)

    with op.batch_alter_table("tracked_record", schema=None) as batch_op:
        _drop_system_default(batch_op)
        _to_remote_id(batch_op)

    with op.batch_alter_table("outbox_batch", schema=None) as batch_op:
        _drop_system_default(batch_op)
        batch_op.create_index(batch_op.f("ix_outbox_batch_system"), ["system", "status"], unique=False)

    with op.batch_alter_table("inbox_message", schema=None) as batch_op:
        _drop_system_default(batch_op)
        batch_op.drop_column("receipt")
        batch_op.drop_column("procedure_id")

    with op.batch_alter_table("entity_state", schema=None) as batch_op:
        batch_op.drop_index("ix_entity_dispatch")
        batch_op.drop_constraint("uq_entity_state_kind", type_="unique")
        _drop_system_default(batch_op)
        _to_remote_id(batch_op)
        batch_op.create_unique_constraint(
            batch_op.f("uq_entity_state_system"), ["system", "kind", "external_id"]
        )
    # Its own batch: a batch cannot index a column it renames.
    with op.batch_alter_table("entity_state", schema=None) as batch_op:
        batch_op.create_index("ix_entity_remote", ["system", "kind", "remote_id"], unique=False)
    op.add_column("write_back", sa.Column("system", sa.String(length=40), nullable=True))


def _refuse_rows_revision_0003_cannot_hold() -> None:
    connection = op.get_bind()
    problems: list[str] = []
    for table in SYSTEM_TABLES:
        count = connection.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE system <> :system"), {"system": DISPATCH_CONNECT}
        ).scalar_one()
        if count:
            problems.append(f"{count} row(s) of other systems than {DISPATCH_CONNECT!r} in {table}")
    for table in REMOTE_ID_TABLES:
        count = connection.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE length(remote_id) > :n"),
            {"n": OLD_DISPATCH_ID_LENGTH},
        ).scalar_one()
        if count:
            problems.append(
                f"{count} remote_id(s) longer than {OLD_DISPATCH_ID_LENGTH} characters in {table}"
            )
    if problems:
        raise SyncError(
            "cannot downgrade below 0004: schema 0003 knows only Dispatch Connect, and this store holds "
            + "; ".join(problems)
            + ". Nothing was changed. Export or delete those rows first (e.g. DELETE FROM <table> WHERE "
            f"system <> '{DISPATCH_CONNECT}'), then run the downgrade again."
        )


def _to_dispatch_id(batch_op: BatchOperations) -> None:
    batch_op.alter_column(
        "remote_id",
        new_column_name="dispatch_id",
        existing_type=sa.String(length=255),
        type_=sa.String(length=OLD_DISPATCH_ID_LENGTH),
        existing_nullable=True,
    )


def downgrade() -> None:
    _refuse_rows_revision_0003_cannot_hold()
    with op.batch_alter_table("write_back", schema=None) as batch_op:
        batch_op.drop_column("system")

    with op.batch_alter_table("entity_state", schema=None) as batch_op:
        batch_op.drop_index("ix_entity_remote")
        batch_op.drop_constraint("uq_entity_state_system", type_="unique")
        _to_dispatch_id(batch_op)
        batch_op.drop_column("system")
        batch_op.create_unique_constraint(batch_op.f("uq_entity_state_kind"), ["kind", "external_id"])
    with op.batch_alter_table("entity_state", schema=None) as batch_op:
        batch_op.create_index("ix_entity_dispatch", ["dispatch_id"], unique=False)

    with op.batch_alter_table("inbox_message", schema=None) as batch_op:
        batch_op.drop_column("system")
        batch_op.add_column(sa.Column("procedure_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("receipt", sa.Text(), nullable=True))

    with op.batch_alter_table("outbox_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_batch_system"))
        batch_op.drop_column("system")

    with op.batch_alter_table("tracked_record", schema=None) as batch_op:
        _to_dispatch_id(batch_op)
        batch_op.drop_column("system")

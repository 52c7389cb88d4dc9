"""The store's tables. Every change here needs an Alembic revision in migrations/versions.

Natural keys (CRM object + id, MessageId, outbound message ID, system + entity kind + external id) are primary
keys or unique, because idempotency rests on them: a redelivered message or a re-sent batch hits the same row.

`system` names the field-service back end a row belongs to (a `connector.registry` name, "dispatch_connect" so
far). It has no default, here or in the database: a writer that forgets it fails at once instead of filing the
row under the wrong back end. `remote_id` is the back end's own id for the record (Dispatch Connect's numeric
id; other back ends use longer strings).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from sync.store.dbtypes import UTCDateTime, utcnow

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _ts(nullable: bool = True) -> Any:
    # A required timestamp defaults to "now" so no writer can forget it.
    return Field(
        default=None,
        sa_column=Column(UTCDateTime(), nullable=nullable, default=None if nullable else utcnow),
    )


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


def _system() -> Any:
    # Required and without a default (see the module docstring).
    return Field(max_length=40)


#: The `system` of links to CRM records the connector created for itself (sync-log mirror rows): no back end
#: holds them.
CRM_ONLY = "crm"


class TrackedRecord(SQLModel, table=True):
    """A CRM record the publisher has seen: what was last sent, and whether its back end confirmed it."""

    __tablename__ = "tracked_record"
    __table_args__ = (
        UniqueConstraint("crm_object", "crm_id"),
        Index("ix_tracked_external", "external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system: str = _system()
    crm_object: str = Field(max_length=80)
    crm_id: str = Field(max_length=18)
    external_id: str | None = Field(default=None, max_length=255)
    remote_id: str | None = Field(default=None, max_length=255)
    fields_hash: str | None = Field(default=None, max_length=64)
    snapshot: dict[str, Any] | None = _json()
    flagged: bool = True
    last_message_id: str | None = Field(default=None, max_length=64)
    published_at: datetime | None = _ts()
    confirmed_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class Watermark(SQLModel, table=True):
    """How far the publisher has read each CRM object (its newest SystemModstamp seen)."""

    __tablename__ = "watermark"

    crm_object: str = Field(primary_key=True, max_length=80)
    system_modstamp: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    # The org's clock (its Date header) when the last read finished: the window's lower bound moves with it
    # even when nothing changes, so an idle org is not re-read for the last burst forever.
    server_time: datetime | None = _ts()


class OutboxBatch(SQLModel, table=True):
    """One change set sent to a back end. Keyed by MessageId: a crash re-sends the batch, never a new one."""

    __tablename__ = "outbox_batch"
    # Named by the naming convention (ix_outbox_batch_system): each back end's sender reads its own pending.
    __table_args__ = (Index(None, "system", "status"),)

    message_id: str = Field(primary_key=True, max_length=64)
    system: str = _system()
    status: str = Field(default="pending", max_length=16, index=True)  # pending|sent|confirmed|failed
    attempts: int = 0
    record_count: int = 0
    payload: list[Any] | None = _json()
    created_at: datetime | None = _ts(nullable=False)
    sent_at: datetime | None = _ts()
    confirmed_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    # How the destination encodes the batch: "json" (canonical array) or "csv" (the playbook's dot-notation
    # CSV, `publish --all --csv`). The payload is the same canonical records either way.
    encoding: str = Field(
        default="json", sa_column=Column(String(8), nullable=False, default="json", server_default="json")
    )


class OutboxItem(SQLModel, table=True):
    """Which CRM record each canonical record of a batch came from, for ack/err correlation."""

    __tablename__ = "outbox_item"
    __table_args__ = (
        Index("ix_outbox_item_message", "message_id"),
        Index("ix_outbox_item_external", "record_type", "external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=64)
    position: int = 0
    record_type: str = Field(max_length=40)
    external_id: str = Field(max_length=255)
    crm_object: str | None = Field(default=None, max_length=80)
    crm_id: str | None = Field(default=None, max_length=18)
    status: str = Field(default="pending", max_length=16)  # pending|acked|error


class InboxMessage(SQLModel, table=True):
    """A delivery from any channel, stored before it is settled or answered; processed separately.

    The back end's settle handles (Dispatch Connect's receipt and ProcedureID) are not stored: they die with
    the delivery, so the engine keeps them in memory until it settles."""

    __tablename__ = "inbox_message"
    __table_args__ = (
        Index("ix_inbox_status_due", "status", "next_attempt_at"),
        Index("ix_inbox_entity", "entity_key"),
    )

    message_id: str = Field(primary_key=True, max_length=128)
    system: str = _system()
    type: str | None = Field(default=None, max_length=40)
    entity_key: str | None = Field(default=None, max_length=300)
    payload: dict[str, Any] | None = _json()
    status: str = Field(default="new", max_length=16)  # new|processed|dead
    attempts: int = 0
    deliveries: int = 1
    received_at: datetime | None = _ts(nullable=False)
    acked_at: datetime | None = _ts()
    processed_at: datetime | None = _ts()
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    claimed_by: str | None = Field(default=None, max_length=128)  # worker holding it (PostgreSQL workers)
    claimed_until: datetime | None = _ts()


class EntityStateRow(SQLModel, table=True):
    """The applied state of one back-end entity (job, appointment, offer, estimate, invoice)."""

    __tablename__ = "entity_state"
    __table_args__ = (
        UniqueConstraint("system", "kind", "external_id"),
        Index("ix_entity_remote", "system", "kind", "remote_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system: str = _system()
    kind: str = Field(max_length=20)
    external_id: str = Field(max_length=255)
    remote_id: str | None = Field(default=None, max_length=255)
    crm_object: str | None = Field(default=None, max_length=80)
    crm_id: str | None = Field(default=None, max_length=18)
    state: str | None = Field(default=None, max_length=32)
    status_message: str | None = Field(default=None, sa_column=Column(Text))
    milestones: dict[str, Any] | None = _json()
    updated_at: datetime | None = _ts()
    attributes: dict[str, Any] | None = _json()


class WriteBack(SQLModel, table=True):
    """A pending CRM update. Several rows for one record are coalesced into one call at flush time."""

    __tablename__ = "write_back"
    __table_args__ = (Index("ix_write_back_pending", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    operation: str = Field(default="update", max_length=10)  # update|create
    system: str | None = Field(default=None, max_length=40)  # a create's back end (its link belongs to it)
    crm_object: str = Field(max_length=80)
    crm_id: str | None = Field(default=None, max_length=18)
    external_id: str | None = Field(default=None, max_length=255)  # for creates: links the new CRM id
    fields: dict[str, Any] | None = _json()
    source: str | None = Field(default=None, max_length=128)
    status: str = Field(default="pending", max_length=16)  # pending|done|failed|skipped (record deleted)
    attempts: int = 0
    created_at: datetime | None = _ts(nullable=False)
    next_attempt_at: datetime | None = _ts()
    flushed_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class FileFetch(SQLModel, table=True):
    """A file from the field to store in the CRM (a note's file, a billing document's PDF). Fetched and
    uploaded by the file job outside any message's transaction; `content_version_id` is set once, so a
    redelivered note never stores its file twice. Unique per (system, token, CRM record)."""

    __tablename__ = "file_fetch"
    __table_args__ = (
        UniqueConstraint("system", "token", "crm_object", "crm_id", name="uq_file_fetch_token"),
        Index("ix_file_fetch_pending", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(max_length=255)
    system: str = _system()
    crm_object: str = Field(max_length=80)
    crm_id: str = Field(max_length=18)
    format: str = Field(default="original", max_length=40)
    title: str | None = Field(default=None, max_length=255)
    status: str = Field(default="pending", max_length=16)  # pending|done|failed
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    content_version_id: str | None = Field(default=None, max_length=18)


class SyncLog(SQLModel, table=True):
    """What support staff read: every error and warning of both directions, and notable events."""

    __tablename__ = "sync_log"
    __table_args__ = (
        Index("ix_sync_log_at", "at"),
        Index("ix_sync_log_record", "crm_record_id"),
        Index("ix_sync_log_external", "external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime | None = _ts(nullable=False)
    level: str = Field(default="info", max_length=10)  # debug|info|warning|error
    direction: str = Field(default="internal", max_length=10)  # out (CRM->Dispatch)|in|internal
    entity: str | None = Field(default=None, max_length=40)
    crm_record_id: str | None = Field(default=None, max_length=18)
    external_id: str | None = Field(default=None, max_length=255)
    msg_id: str | None = Field(default=None, max_length=128)
    message: str = Field(sa_column=Column(Text, nullable=False))
    details: dict[str, Any] | None = _json()


class StreamPosition(SQLModel, table=True):
    """Where a CRM change-event subscription stands (one row per channel): a restart resumes from
    `replay_id` instead of losing the events published while the connector was down."""

    __tablename__ = "stream_position"

    channel: str = Field(primary_key=True, max_length=255)  # /data/WorkOrderChangeEvent
    replay_id: str | None = Field(default=None, max_length=64)  # the last event applied; None: from the tip
    mode: str = Field(default="streaming", max_length=16)  # streaming|polling (fell back; see last_error)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime | None = _ts(nullable=False)


class Lease(SQLModel, table=True):
    """A named lock with an expiry (single poller, single publisher) for back ends without advisory locks."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime | None = _ts(nullable=False)


__all__ = [
    "CRM_ONLY",
    "ENTITY_STATES",
    "OUTBOX_BATCHES",
    "OUTBOX_ITEMS",
    "TRACKED_RECORDS",
    "WRITE_BACKS",
    "EntityStateRow",
    "FileFetch",
    "InboxMessage",
    "Lease",
    "OutboxBatch",
    "OutboxItem",
    "SQLModel",
    "StreamPosition",
    "SyncLog",
    "TrackedRecord",
    "Watermark",
    "WriteBack",
    "utcnow",
]


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for set-based statements that skip the ORM's per-row bookkeeping."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


# The Core tables behind the models, named once, for the engine's set-based statements (an ORM-enabled
# UPDATE would also evaluate its WHERE against every object in the session).
TRACKED_RECORDS = table_of(TrackedRecord)
ENTITY_STATES = table_of(EntityStateRow)
OUTBOX_BATCHES = table_of(OutboxBatch)
OUTBOX_ITEMS = table_of(OutboxItem)
WRITE_BACKS = table_of(WriteBack)

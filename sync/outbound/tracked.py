"""The publisher's view of tracked records: plain row objects, read and written set-based.

A cycle decides on thousands of rows; the ORM's per-object bookkeeping (identity map, attribute events,
unit-of-work flush) cost more than the decisions themselves, so rows are read with Core selects per chunk
and written back with one INSERT plus one UPDATE executemany per set of changed columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session

from sync.store.db import chunked
from sync.store.models import ENTITY_STATES, TRACKED_RECORDS

ROWS_PER_COMMIT = 5000
# Snapshot keys beside the relevant fields: the status the CRM last asked for and the provider it assigned.
STATUS_KEY, ORG_KEY = "_requested_status", "_organization"


@dataclass(slots=True)
class Tracked:
    """A tracked_record row as the publisher decides on it.

    A plain object, written back with one executemany per unit: the ORM's per-object bookkeeping (identity
    map, attribute events, unit-of-work flush) cost more than the decisions themselves. Only the columns a
    decision changed are written, so a confirmation or an error the poller stamps meanwhile is kept."""

    crm_object: str
    crm_id: str
    id: int | None = None
    system: str | None = None
    external_id: str | None = None
    fields_hash: str | None = None
    snapshot: dict[str, Any] | None = None
    flagged: bool = True
    last_message_id: str | None = None
    published_at: datetime | None = None
    last_error: str | None = None
    changed: set[str] = field(default_factory=set)

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.changed.update(values)

    def columns(self, names: Iterable[str]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}


WRITTEN = (
    "system",
    "external_id",
    "fields_hash",
    "snapshot",
    "flagged",
    "last_message_id",
    "published_at",
    "last_error",
)


def load_hashes(session: Session, name: str, ids: list[str]) -> dict[str, tuple[str | None, bool]]:
    query = core_select(
        TRACKED_RECORDS.c.crm_id, TRACKED_RECORDS.c.fields_hash, TRACKED_RECORDS.c.flagged
    ).where(TRACKED_RECORDS.c.crm_object == name, TRACKED_RECORDS.c.crm_id.in_(ids))
    return {crm_id: (digest, flagged) for crm_id, digest, flagged in session.execute(query)}


def load_tracked(
    session: Session, held: dict[tuple[str, str], Tracked], name: str, ids: list[str]
) -> dict[str, Tracked]:
    """The chunk's tracked rows; one this unit already holds (and may have decided on) is not re-read."""
    missing = [crm_id for crm_id in ids if (name, crm_id) not in held]
    columns = (
        TRACKED_RECORDS.c.id,
        TRACKED_RECORDS.c.crm_id,
        TRACKED_RECORDS.c.system,
        TRACKED_RECORDS.c.external_id,
        TRACKED_RECORDS.c.fields_hash,
    )
    query = core_select(*columns, TRACKED_RECORDS.c.snapshot, TRACKED_RECORDS.c.flagged).where(
        TRACKED_RECORDS.c.crm_object == name, TRACKED_RECORDS.c.crm_id.in_(missing)
    )
    for row_id, crm_id, system, external_id, digest, snapshot, flagged in session.execute(query):
        held[(name, crm_id)] = Tracked(name, crm_id, row_id, system, external_id, digest, snapshot, flagged)
    return {crm_id: held[(name, crm_id)] for crm_id in ids if (name, crm_id) in held}


def load_job_states(
    session: Session, keys: Iterable[tuple[str | None, str | None]]
) -> dict[tuple[str, str], str | None]:
    """The job state of every (system, external id) in a chunk, in one query (None: none reported yet)."""
    wanted = [(system, external_id) for system, external_id in keys if system and external_id]
    found: dict[tuple[str, str], str | None] = dict.fromkeys(wanted)
    if wanted:
        query = core_select(ENTITY_STATES.c.system, ENTITY_STATES.c.external_id, ENTITY_STATES.c.state).where(
            ENTITY_STATES.c.kind == "job",
            ENTITY_STATES.c.external_id.in_({external_id for _, external_id in wanted}),
        )
        for system, external_id, state in session.execute(query):
            if (system, external_id) in found:
                found[(system, external_id)] = state
    return found


def write_tracked(session: Session, decided: Iterable[Tracked]) -> None:
    """A unit's decisions in one INSERT and one UPDATE per set of changed columns (executemany each)."""
    new: list[dict[str, Any]] = []
    updates: dict[frozenset[str], list[dict[str, Any]]] = {}
    for tracked in decided:
        if tracked.id is None:  # every column given: one executemany needs the same keys in every row
            new.append(
                {"crm_object": tracked.crm_object, "crm_id": tracked.crm_id, **tracked.columns(WRITTEN)}
            )
        elif tracked.changed:
            row = {f"new_{name}": value for name, value in tracked.columns(tracked.changed).items()}
            updates.setdefault(frozenset(tracked.changed), []).append({"row_id": tracked.id, **row})
        tracked.changed = set()
    for chunk in chunked(new, ROWS_PER_COMMIT):
        session.execute(insert(TRACKED_RECORDS), chunk)
    for names, rows in updates.items():
        statement = (
            update(TRACKED_RECORDS)
            .where(TRACKED_RECORDS.c.id == bindparam("row_id"))
            .values({name: bindparam(f"new_{name}") for name in names})
        )
        for chunk in chunked(rows, ROWS_PER_COMMIT):
            session.execute(statement, chunk)

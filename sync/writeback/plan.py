"""What one flush writes: the due rows cut into units, one unit per record and failing generation.

A *generation* is the rows of one record that were last sent together: rows that failed together share
their `next_attempt_at` exactly (set in one statement), rows never tried (or made due by hand) have none.
Rows that arrive after a failure are a generation of their own, so a write that fails for a reason in its
own values never takes a newer update down with it. A record's generations never both carry one field:
each field is written by the generation holding its newest pending value, and older rows lose that field
when the plan is made (a row left with no field is settled as superseded), so the order in which
generations land cannot matter. Creates are never split into generations: two creates of one external id
would make two CRM records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session

from sync.store.db import IN_CLAUSE_CHUNK, chunked
from sync.store.dbtypes import utcnow
from sync.store.models import WRITE_BACKS

SUPERSEDED = "superseded by a newer write-back of the same field(s) before it could be written"


class Queued(Protocol):
    """The columns of a queued write-back row that a flush reads."""

    id: int
    operation: str
    crm_object: str
    crm_id: str | None
    external_id: str | None
    fields: dict[str, Any] | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


_QUEUED = (
    WRITE_BACKS.c.id,
    WRITE_BACKS.c.operation,
    WRITE_BACKS.c.crm_object,
    WRITE_BACKS.c.crm_id,
    WRITE_BACKS.c.external_id,
    WRITE_BACKS.c.fields,
    WRITE_BACKS.c.attempts,
    WRITE_BACKS.c.next_attempt_at,
    WRITE_BACKS.c.last_error,
)

RecordKey = tuple[str, str, str]  # operation, CRM object, CRM id (update) or external id (create)


@dataclass
class RecordState:
    """What the flush knows of one record's pending rows; shared by the record's units."""

    generations: set[datetime | None] = field(default_factory=set)  # keys in use, grows as units fail
    errors: set[str] = field(default_factory=set)  # the pending rows' errors: a failure is logged once


@dataclass
class Unit:
    """One Collections record: a generation's fields merged in row order (later values win)."""

    operation: str
    crm_object: str
    key: str
    fields: dict[str, Any]
    ids: list[int]
    attempts: int  # failed attempts so far (a generation's rows failed together)
    record: RecordState


@dataclass
class Plan:
    rounds: list[list[Unit]]  # a record's generations go in different rounds: one Id per call
    superseded: list[int]  # rows every field of which a newer generation now writes
    narrowed: dict[int, dict[str, Any]]  # rows that lost some fields to a newer generation


def due_rows(session: Session, limit: int) -> list[Queued]:
    """Due rows, plus every other pending row of the same records (even one in backoff), so a plan sees all
    of a record's pending values. Plain rows, not ORM objects: a flush reads thousands of them and
    changes them only through set-based UPDATEs."""
    now = utcnow()
    pending = WRITE_BACKS.c.status == "pending"
    query = (
        core_select(*_QUEUED)
        .where(pending)
        .where(or_(WRITE_BACKS.c.next_attempt_at.is_(None), WRITE_BACKS.c.next_attempt_at <= now))
        .order_by(WRITE_BACKS.c.id)
        .limit(limit)
    )
    due: list[Queued] = list(session.execute(query).all())
    if len(due) < limit and not _any_in_backoff(session, now):
        return due  # every pending row is in `due` already: no sibling can be missing
    keys = {record_key(row) for row in due}
    crm_ids = {row.crm_id for row in due if row.crm_id}
    external_ids = {row.external_id for row in due if row.external_id}
    siblings = session.execute(
        core_select(*_QUEUED)
        .where(pending)
        .where(or_(WRITE_BACKS.c.crm_id.in_(crm_ids), WRITE_BACKS.c.external_id.in_(external_ids)))
    ).all()
    rows: dict[int, Queued] = {row.id: row for row in due}
    rows.update({row.id: row for row in siblings if record_key(row) in keys})
    return [rows[i] for i in sorted(rows)]


def _any_in_backoff(session: Session, now: datetime) -> bool:
    waiting = core_select(WRITE_BACKS.c.id).where(
        WRITE_BACKS.c.status == "pending", WRITE_BACKS.c.next_attempt_at > now
    )
    return session.execute(waiting.limit(1)).first() is not None


def record_key(row: Queued) -> RecordKey:
    return (
        row.operation,
        row.crm_object,
        (row.crm_id if row.operation == "update" else row.external_id) or "",
    )


def plan_flush(rows: Sequence[Queued], now: datetime) -> Plan:
    """Rows (in id order) -> units to send, in rounds, and the rows newer generations supersede."""
    by_record: dict[RecordKey, list[Queued]] = {}
    for row in rows:
        by_record.setdefault(record_key(row), []).append(row)
    plan = Plan(rounds=[], superseded=[], narrowed={})
    for key, record_rows in by_record.items():
        for index, unit in enumerate(_record_units(key, record_rows, now, plan)):
            if len(plan.rounds) <= index:
                plan.rounds.append([])
            plan.rounds[index].append(unit)
    return plan


def _record_units(key: RecordKey, rows: list[Queued], now: datetime, plan: Plan) -> list[Unit]:
    operation, crm_object, record_id = key

    def generation(row: Queued) -> datetime | None:
        return None if operation == "create" else row.next_attempt_at

    record = RecordState(
        generations={generation(row) for row in rows}, errors={row.last_error or "" for row in rows}
    )
    if len(record.generations) == 1:  # the common case: one merge, nothing superseded
        unit = Unit(operation, crm_object, record_id, {}, [], 0, record)
        for row in rows:
            unit.fields.update(row.fields or {})
            unit.ids.append(row.id)
            unit.attempts = max(unit.attempts, row.attempts)
        return [unit] if _due(generation(rows[0]), now) else []
    owner = {name: generation(row) for row in rows for name in row.fields or {}}  # newest row wins
    merged: dict[datetime | None, Unit] = {}
    for row in rows:
        gen = generation(row)
        fields = row.fields or {}
        mine = {name: value for name, value in fields.items() if owner[name] == gen}
        if fields and not mine:
            plan.superseded.append(row.id)
            continue
        if len(mine) < len(fields):
            plan.narrowed[row.id] = mine
        unit = merged.setdefault(gen, Unit(operation, crm_object, record_id, {}, [], 0, record))
        unit.fields.update(mine)
        unit.ids.append(row.id)
        unit.attempts = max(unit.attempts, row.attempts)
    return [unit for gen, unit in merged.items() if _due(gen, now) and unit.fields]


def _due(generation: datetime | None, now: datetime) -> bool:
    return generation is None or generation <= now


def apply_plan(session: Session, plan: Plan) -> None:
    """Store what the plan decided about older rows before anything is sent (rare: only records with
    rows of two generations get here)."""
    now = utcnow()
    for ids in chunked(plan.superseded, IN_CLAUSE_CHUNK):
        session.execute(
            update(WRITE_BACKS)
            .where(WRITE_BACKS.c.id.in_(ids), WRITE_BACKS.c.status == "pending")
            .values(status="done", flushed_at=now, last_error=SUPERSEDED)
        )
    for row_id, fields in plan.narrowed.items():
        session.execute(update(WRITE_BACKS).where(WRITE_BACKS.c.id == row_id).values(fields=fields))

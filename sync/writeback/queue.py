"""The CRM write-back queue: what the connector must write to Salesforce, flushed in Collections calls.

Rows are enqueued inside the transaction of the effect that causes them (an ack, a processed event), so a
write is never lost and never invented. The flush merges a record's pending rows into one update (later
values win), sends <= 200 records per sObject Collections call, and retries failures with backoff; a
failure is a warning row at once, a newer update never waits on an older failing one, and fields Salesforce
names as bad are split off so the rest of the record lands (sync.writeback.plan, sync.writeback.outcome).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from sync.store.db import IN_CLAUSE_CHUNK, chunked, session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import WRITE_BACKS, WriteBack
from sync.store.synclog import write_log
from sync.writeback.outcome import GONE, CrmWriter, FlushReport, flush_chunk
from sync.writeback.plan import Queued, RecordKey, Unit, apply_plan, due_rows, plan_flush, record_key
from sync.writeback.timing import backoff, last_attempt_at

MAX_COLLECTION = 200
FLUSH_CONCURRENCY = 3  # Collections calls in flight at once (settings: writeback_concurrency)
# A flush asked for as soon as there is work (the daemon's wake-ups) waits until the queue has been quiet
# this long, has a full Collection, or its oldest row has waited FLUSH_MAX_WAIT_S: a burst of field events
# becomes calls of 200 records, not one call per processed message (docs/engine.md, "Wake-ups").
FLUSH_SETTLE_S = 0.2
FLUSH_MAX_WAIT_S = 1.2

__all__ = [
    "FLUSH_CONCURRENCY",
    "GONE",
    "MAX_COLLECTION",
    "CrmWriter",
    "FlushReport",
    "backoff",
    "enqueue_create",
    "enqueue_sourced_updates",
    "enqueue_update",
    "enqueue_updates",
    "flush_timing",
    "flush_wait_s",
    "flush_writebacks",
    "last_attempt_at",
    "pending_count",
    "retry_failed_writebacks",
]


def _update_row(
    crm_object: str, crm_id: str, fields: Mapping[str, Any], source: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "operation": "update",
        "crm_object": crm_object,
        "crm_id": crm_id,
        "fields": dict(fields),
        "source": source,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
    }


def enqueue_update(
    session: Session, crm_object: str, crm_id: str, fields: Mapping[str, Any], *, source: str | None = None
) -> None:
    if fields:
        session.add(WriteBack(**_update_row(crm_object, crm_id, fields, source, utcnow())))


def enqueue_updates(
    session: Session,
    crm_object: str,
    updates: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    source: str | None = None,
) -> None:
    """Many updates in one INSERT: confirming a batch of 200 records must not build 200 ORM objects.

    Pending ORM rows are flushed first, so row ids (the order in which values win) stay the call order."""
    now = utcnow()
    rows = [_update_row(crm_object, crm_id, fields, source, now) for crm_id, fields in updates if fields]
    if rows:
        session.flush()
        session.execute(insert(WRITE_BACKS), rows)  # Core executemany: no ORM per-row bookkeeping


def enqueue_sourced_updates(
    session: Session, crm_object: str, updates: Iterable[tuple[str, Mapping[str, Any], str | None]]
) -> None:
    """Like enqueue_updates, each row with its own source (the message that caused it)."""
    now = utcnow()
    rows = [
        _update_row(crm_object, crm_id, fields, source, now) for crm_id, fields, source in updates if fields
    ]
    if rows:
        session.flush()
        session.execute(insert(WRITE_BACKS), rows)


def enqueue_create(
    session: Session,
    crm_object: str,
    external_id: str,
    fields: Mapping[str, Any],
    *,
    system: str | None,
    source: str | None = None,
) -> None:
    """Queue a CRM record to create; `system` is the back end whose report it comes from (its link to the
    external id belongs to that back end), None for records the connector keeps for itself (log rows)."""
    session.add(
        WriteBack(
            operation="create",
            system=system,
            crm_object=crm_object,
            external_id=external_id,
            fields=dict(fields),
            source=source,
            created_at=utcnow(),
        )
    )


def flush_writebacks(
    engine: Engine,
    crm: CrmWriter,
    *,
    max_attempts: int = 8,
    limit: int = 5000,
    batch_size: int = MAX_COLLECTION,
    concurrency: int = FLUSH_CONCURRENCY,
    whole_calls: bool = False,
) -> FlushReport:
    """Write the due rows, up to `concurrency` Collections calls at a time.

    Each record is in exactly one call per round (its generation's rows are merged first; a record with a
    failing generation and newer rows has a second round, see sync.writeback.plan), and each call settles
    its own rows in its own transaction, so calls are independent: running a few at once overlaps their
    round trips. Salesforce serves concurrent API requests; rows it reports locked (UNABLE_TO_LOCK_ROW,
    e.g. children of one parent written at once) are retried by the gateway and then by this queue's
    backoff. The report says how many records failed, so a caller can tell "nothing landed" from "done".

    `whole_calls`: an operation and object with a full call or more writes only its oldest records that fill
    calls of `batch_size`; its tail stays pending for a later flush. For a flush asked for while the queue
    still fills (`flush_timing`), so a burst goes out in full calls."""
    with session_scope(engine) as session:
        rows = due_rows(session, limit)
        plan = plan_flush(_filling_calls(rows, batch_size) if whole_calls else rows, utcnow())
        if plan.superseded or plan.narrowed:
            apply_plan(session, plan)
    report = FlushReport(rows_done=len(plan.superseded))
    for units in plan.rounds:
        report.add(_flush_round(engine, crm, units, max_attempts, batch_size, concurrency))
    return report


def flush_wait_s(
    engine: Engine,
    *,
    batch_size: int = MAX_COLLECTION,
    settle_s: float = FLUSH_SETTLE_S,
    max_wait_s: float = FLUSH_MAX_WAIT_S,
    now: datetime | None = None,
) -> float:
    """Seconds a flush asked for now should wait to fill its Collections calls; 0.0: flush now.

    Now when nothing is due (the flush's other work, the log mirror and files, goes on), when the due rows
    name `batch_size` records (a full call), when none arrived for `settle_s` (the burst is over), or when
    the oldest has waited `max_wait_s` (a steady trickle still lands within that bound). One query."""
    return flush_timing(engine, batch_size=batch_size, settle_s=settle_s, max_wait_s=max_wait_s, now=now)[0]


def flush_timing(
    engine: Engine,
    *,
    batch_size: int = MAX_COLLECTION,
    settle_s: float = FLUSH_SETTLE_S,
    max_wait_s: float = FLUSH_MAX_WAIT_S,
    now: datetime | None = None,
) -> tuple[float, float | None]:
    """(`flush_wait_s`, when the rest is due): the second is not None when the flush goes now only because
    the due rows fill a call while the burst goes on (neither quiet nor overdue yet). Such a flush sends
    whole calls (`flush_writebacks(whole_calls=True)`), and the rest goes that many seconds later (when
    quiet or overdue), not as a short call now: with the processor keeping up, a flush woken at 230 due
    records sent 200 + 30, and 1,000 confirmations took 8 calls instead of 5."""
    now = now or utcnow()
    records, oldest, newest = _due_summary(engine, now)
    if not records or oldest is None or newest is None:
        return 0.0, None
    quiet_in = settle_s - (now - newest).total_seconds()
    overdue_in = max_wait_s - (now - oldest).total_seconds()
    rest_in = max(0.0, min(quiet_in, overdue_in))
    if records >= batch_size:
        return 0.0, (rest_in if rest_in > 0 else None)
    return rest_in, None


def _filling_calls(rows: list[Queued], batch_size: int) -> list[Queued]:
    """Per (operation, object): the oldest records that fill whole calls of `batch_size` when it has a full
    call or more (its tail waits), every record when it has less (as before: held back, it would go as a
    short call of its own later, which made a steady stream of field events cost more calls, bench/poller.py).
    All rows of a record or none (a plan needs every pending value of a record)."""
    records: dict[tuple[str, str], dict[RecordKey, None]] = defaultdict(dict)  # ordered sets
    for row in rows:
        records[(row.operation, row.crm_object)].setdefault(record_key(row))
    keep: set[RecordKey] = set()
    for group in records.values():
        keep.update(
            list(group)[: len(group) // batch_size * batch_size] if len(group) >= batch_size else group
        )
    return [row for row in rows if record_key(row) in keep]


_DUE_SUMMARY_SQLITE = (
    "SELECT count(DISTINCT coalesce(crm_id, external_id)), min(created_at), max(created_at) FROM write_back "
    "WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
)


def _due_summary(engine: Engine, now: datetime) -> tuple[int, datetime | None, datetime | None]:
    """(records, oldest row, newest row) of the due pending write-backs."""
    if engine.dialect.name == "sqlite":
        # Outside a transaction: every transaction of the engine starts BEGIN IMMEDIATE (the write lock), and
        # this runs at every wake-up, beside the poller and processor writing. In WAL mode a statement
        # outside a transaction reads a snapshot and takes no lock. Timestamps as SQLAlchemy stores them.
        stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            count, oldest, newest = cursor.execute(_DUE_SUMMARY_SQLITE, (stamp,)).fetchone()
            cursor.close()
        finally:
            raw.close()
        return int(count or 0), _parsed(oldest), _parsed(newest)
    w = WRITE_BACKS.c
    query = (
        core_select(
            func.count(func.distinct(func.coalesce(w.crm_id, w.external_id))),
            func.min(w.created_at),
            func.max(w.created_at),
        )
        .where(w.status == "pending")
        .where(or_(w.next_attempt_at.is_(None), w.next_attempt_at <= now))
    )
    with engine.connect() as connection:
        count, oldest, newest = connection.execute(query).one()
    return int(count or 0), _aware(oldest), _aware(newest)


def _parsed(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _aware(stamp: datetime | None) -> datetime | None:
    return stamp if stamp is None or stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _flush_round(
    engine: Engine, crm: CrmWriter, units: list[Unit], max_attempts: int, batch_size: int, concurrency: int
) -> FlushReport:
    groups: dict[tuple[str, str], list[Unit]] = defaultdict(list)
    for unit in units:
        groups[(unit.operation, unit.crm_object)].append(unit)
    calls = [
        (operation, crm_object, chunk)
        for (operation, crm_object), items in groups.items()
        for chunk in chunked(items, batch_size)
    ]

    def flush(call: tuple[str, str, list[Unit]]) -> FlushReport:
        part = FlushReport()
        flush_chunk(engine, crm, *call, part, max_attempts)
        return part

    if concurrency > 1 and len(calls) > 1:
        with ThreadPoolExecutor(min(concurrency, len(calls)), thread_name_prefix="writeback") as pool:
            parts = list(pool.map(flush, calls))
    else:
        parts = [flush(call) for call in calls]
    report = FlushReport()
    for part in parts:
        report.add(part)
    return report


def retry_failed_writebacks(engine: Engine, *, crm_object: str | None = None) -> int:
    """Queue the write-backs that gave up again (after the cause is fixed: a field created, a mapping
    corrected, a validation rule changed): pending, attempts 0, due now. One info row per record, so its
    timeline says why it is tried again. Returns the number of rows requeued."""
    now = utcnow()
    with session_scope(engine) as session:
        query = select(WriteBack).where(col(WriteBack.status) == "failed")
        if crm_object:
            query = query.where(col(WriteBack.crm_object) == crm_object)
        rows = list(session.exec(query.order_by(col(WriteBack.id))).all())
        records: dict[tuple[str, str, str], list[WriteBack]] = defaultdict(list)
        for row in rows:
            records[(row.operation, row.crm_object, row.crm_id or row.external_id or "")].append(row)
        for ids in chunked([row.id for row in rows if row.id is not None], IN_CLAUSE_CHUNK):
            session.execute(
                update(WRITE_BACKS)
                .where(WRITE_BACKS.c.id.in_(ids))
                .values(status="pending", attempts=0, next_attempt_at=now, last_error=None, flushed_at=None)
            )
        for (_operation, name, key), record_rows in records.items():
            write_log(
                session,
                f"CRM write-back of {name} {key} requeued ({len(record_rows)} row(s)); it had given up: "
                f"{record_rows[-1].last_error or 'no error recorded'}",
                direction="in",
                entity=name,
                crm_record_id=record_rows[-1].crm_id,
                external_id=record_rows[-1].external_id,
                details={"fields": [row.fields for row in record_rows]},
            )
        return len(rows)


def pending_count(session: Session) -> int:
    return len(session.exec(select(WriteBack.id).where(col(WriteBack.status) == "pending")).all())

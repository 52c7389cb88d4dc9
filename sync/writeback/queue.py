"""The CRM write-back queue: what the connector must write to Salesforce, flushed in Collections calls.

Rows are enqueued inside the transaction of the effect that causes them (an ack, a processed event), so a
write is never lost and never invented. The flush coalesces every pending row of one record into one
update (later values win), sends <= 200 records per sObject Collections call, and retries per-record
failures with backoff.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, insert, or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from connector.errors import ConnectorError
from sync.store.db import IN_CLAUSE_CHUNK, chunked, session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import CRM_ONLY, WRITE_BACKS, TrackedRecord, WriteBack
from sync.store.synclog import write_log

MAX_COLLECTION = 200
FLUSH_CONCURRENCY = 3  # Collections calls in flight at once (settings: writeback_concurrency)
GONE = "ENTITY_IS_DELETED"  # the record was deleted in the CRM: its writes are skipped, not retried


class RecordResultLike(Protocol):
    id: str | None
    success: bool
    errors: Any


class CrmWriter(Protocol):
    def update_records(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]: ...
    def create_records(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]: ...


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


@dataclass
class FlushReport:
    records_written: int = 0
    rows_done: int = 0
    calls: int = 0
    failures: list[str] = field(default_factory=list)


def backoff(attempts: int, base_s: float = 2.0, cap_s: float = 600.0) -> timedelta:
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(0, attempts - 1)))


class _Queued(Protocol):
    """The columns of a queued write-back row that a flush reads."""

    id: int
    operation: str
    crm_object: str
    crm_id: str | None
    external_id: str | None
    fields: dict[str, Any] | None


_QUEUED = (
    WRITE_BACKS.c.id,
    WRITE_BACKS.c.operation,
    WRITE_BACKS.c.crm_object,
    WRITE_BACKS.c.crm_id,
    WRITE_BACKS.c.external_id,
    WRITE_BACKS.c.fields,
)


def _due(session: Session, limit: int) -> list[_Queued]:
    """Due rows, plus every other pending row of the same records (even one in backoff): a record is always
    written with all its pending values merged in order, so an older failed row can never land after, and
    overwrite, a newer value. Plain rows of the columns a flush needs, not ORM objects: a flush reads
    thousands of them and changes them only through set-based UPDATEs."""
    now = utcnow()
    pending = WRITE_BACKS.c.status == "pending"
    query = (
        core_select(*_QUEUED)
        .where(pending)
        .where(or_(WRITE_BACKS.c.next_attempt_at.is_(None), WRITE_BACKS.c.next_attempt_at <= now))
        .order_by(WRITE_BACKS.c.id)
        .limit(limit)
    )
    due: list[_Queued] = list(session.execute(query).all())
    if len(due) < limit and not _any_in_backoff(session, now):
        return due  # every pending row is in `due` already: no sibling can be missing
    keys = {_key(row) for row in due}
    crm_ids = {row.crm_id for row in due if row.crm_id}
    external_ids = {row.external_id for row in due if row.external_id}
    siblings = session.execute(
        core_select(*_QUEUED)
        .where(pending)
        .where(or_(WRITE_BACKS.c.crm_id.in_(crm_ids), WRITE_BACKS.c.external_id.in_(external_ids)))
    ).all()
    rows: dict[int, _Queued] = {row.id: row for row in due}
    rows.update({row.id: row for row in siblings if _key(row) in keys})
    return [rows[i] for i in sorted(rows)]


def _any_in_backoff(session: Session, now: datetime) -> bool:
    waiting = select(WriteBack.id).where(
        col(WriteBack.status) == "pending", col(WriteBack.next_attempt_at) > now
    )
    return session.exec(waiting.limit(1)).first() is not None


def _key(row: _Queued) -> tuple[str, str, str]:
    return (
        row.operation,
        row.crm_object,
        (row.crm_id if row.operation == "update" else row.external_id) or "",
    )


def _coalesce(rows: Sequence[_Queued]) -> dict[tuple[str, str, str], tuple[dict[str, Any], list[int]]]:
    """(operation, object, id or external id) -> merged fields and the row ids they came from."""
    merged: dict[tuple[str, str, str], tuple[dict[str, Any], list[int]]] = {}
    for row in rows:
        fields, ids = merged.setdefault(_key(row), ({}, []))
        fields.update(row.fields or {})
        ids.append(row.id)
    return merged


def flush_writebacks(
    engine: Engine,
    crm: CrmWriter,
    *,
    max_attempts: int = 8,
    limit: int = 5000,
    batch_size: int = MAX_COLLECTION,
    concurrency: int = FLUSH_CONCURRENCY,
) -> FlushReport:
    """Write the due rows, up to `concurrency` Collections calls at a time.

    Each record is in exactly one call (its rows are merged first), and each call settles its own rows in
    its own transaction, so calls are independent: running a few at once overlaps their round trips.
    Salesforce serves concurrent API requests; rows it reports locked (UNABLE_TO_LOCK_ROW, e.g. children of
    one parent written at once) are retried by the gateway and then by this queue's backoff."""
    with session_scope(engine) as session:
        merged = _coalesce(_due(session, limit))
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any], list[int]]]] = defaultdict(list)
    for (operation, crm_object, key), (fields, ids) in merged.items():
        groups[(operation, crm_object)].append((key, fields, ids))
    calls = [
        (operation, crm_object, chunk)
        for (operation, crm_object), items in groups.items()
        for chunk in chunked(items, batch_size)
    ]

    def flush(call: tuple[str, str, list[tuple[str, dict[str, Any], list[int]]]]) -> FlushReport:
        part = FlushReport()
        _flush_chunk(engine, crm, *call, part, max_attempts)
        return part

    if concurrency > 1 and len(calls) > 1:
        with ThreadPoolExecutor(min(concurrency, len(calls)), thread_name_prefix="writeback") as pool:
            parts = list(pool.map(flush, calls))
    else:
        parts = [flush(call) for call in calls]
    return _merged(parts)


def _created_for(session: Session, ids: list[int]) -> str:
    """The back end a created record's link belongs to: the one whose report queued it (creates are rare:
    jobs born in the field, notes; one query each), or CRM_ONLY for the connector's own log rows."""
    systems = session.exec(select(WriteBack.system).where(col(WriteBack.id).in_(ids))).all()
    return next((system for system in systems if system), CRM_ONLY)


def _merged(parts: Iterable[FlushReport]) -> FlushReport:
    report = FlushReport()
    for part in parts:
        report.records_written += part.records_written
        report.rows_done += part.rows_done
        report.calls += part.calls
        report.failures.extend(part.failures)
    return report


def _flush_chunk(
    engine: Engine,
    crm: CrmWriter,
    operation: str,
    crm_object: str,
    chunk: list[tuple[str, dict[str, Any], list[int]]],
    report: FlushReport,
    max_attempts: int,
) -> None:
    payload = [{"Id": key, **fields} if operation == "update" else dict(fields) for key, fields, _ in chunk]
    try:
        call = crm.update_records if operation == "update" else crm.create_records
        results = list(call(crm_object, payload))
        report.calls += 1
    except ConnectorError as exc:
        # The whole call failed (outage, limit, session): every row stays pending, retried later.
        _retry_rows(engine, [i for _, _, ids in chunk for i in ids], str(exc), max_attempts, report)
        return
    with session_scope(engine) as session:
        done: list[int] = []
        for (key, _fields, ids), result in zip(chunk, results, strict=True):
            if getattr(result, "success", False):
                done.extend(ids)
                report.records_written += 1
                report.rows_done += len(ids)
                if operation == "create" and getattr(result, "id", None):
                    session.add(
                        TrackedRecord(
                            system=_created_for(session, ids),
                            crm_object=crm_object,
                            crm_id=str(result.id),
                            external_id=key,
                            flagged=False,
                            confirmed_at=utcnow(),
                        )
                    )
            elif GONE in (getattr(result, "error_codes", None) or ()):
                _mark_gone(session, ids, f"{crm_object} {key} was deleted in the CRM; nothing written")
                report.rows_done += len(ids)
            else:
                message = f"{crm_object} {key}: {_describe_errors(getattr(result, 'errors', None))}"
                _retry_rows_in(session, ids, message, max_attempts, report)
        _settle(session, done, "done")


def _describe_errors(errors: Any) -> str:
    if not errors:
        return "Salesforce refused the write without a reason"
    parts = []
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, Mapping):
            parts.append(f"{error.get('statusCode') or error.get('errorCode')}: {error.get('message')}")
        else:
            parts.append(str(error))
    return "; ".join(parts)


def _settle(session: Session, ids: list[int], status: str, error: str | None = None) -> None:
    """Mark rows settled with set-based UPDATEs: a 200-record Collections call settles in one statement."""
    now = utcnow()
    for chunk in chunked(ids, IN_CLAUSE_CHUNK):
        session.execute(
            update(WRITE_BACKS)
            .where(WRITE_BACKS.c.id.in_(chunk))
            .values(status=status, flushed_at=now, last_error=error)
        )


def _mark_gone(session: Session, ids: list[int], message: str) -> None:
    """A deleted record will never take the write: retrying it would only end in a false alarm."""
    rows = list(session.exec(select(WriteBack).where(col(WriteBack.id).in_(ids))).all())
    _settle(session, ids, "skipped", message)
    if rows:
        write_log(
            session,
            message,
            direction="in",
            entity=rows[0].crm_object,
            crm_record_id=rows[0].crm_id,
            external_id=rows[0].external_id,
            details={"fields": [row.fields for row in rows]},
        )


def _retry_rows(engine: Engine, ids: list[int], message: str, max_attempts: int, report: FlushReport) -> None:
    with session_scope(engine) as session:
        _retry_rows_in(session, ids, message, max_attempts, report)


def _retry_rows_in(
    session: Session, ids: list[int], message: str, max_attempts: int, report: FlushReport
) -> None:
    report.failures.append(message)
    for row in session.exec(select(WriteBack).where(col(WriteBack.id).in_(ids))).all():
        row.attempts += 1
        row.last_error = message
        row.next_attempt_at = utcnow() + backoff(row.attempts)
        if row.attempts >= max_attempts:
            row.status = "failed"
            write_log(
                session,
                f"CRM write-back gave up after {row.attempts} attempts: {message}",
                level="error",
                direction="in",
                entity=row.crm_object,
                crm_record_id=row.crm_id,
                external_id=row.external_id,
                details={"fields": row.fields},
            )
        session.add(row)


def pending_count(session: Session) -> int:
    return len(session.exec(select(WriteBack.id).where(col(WriteBack.status) == "pending")).all())

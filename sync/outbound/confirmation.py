"""Sync confirmation: the one code path for what a back end says about records it was sent.

The publisher records which CRM record every record of a batch came from (outbox items); a `RecordResult`
carrying the batch's message id is matched back to that record here, whether it came in the destination's
answer or later through an inbound channel. Confirmation writes Dispatch_Last_Synced__c and clears
Dispatch_Error__c; an error writes the error field. When a destination's answer confirms a batch, the
whole batch is confirmed at once (set-based).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from connector.mapping import MappingConfig
from connector.ports import RecordResult
from statemachines import EntityState, StateMachineError, request_change
from sync.outbound.tracked import STATUS_KEY
from sync.store.db import IN_CLAUSE_CHUNK, chunked
from sync.store.dbtypes import utcnow
from sync.store.models import (
    OUTBOX_BATCHES,
    OUTBOX_ITEMS,
    TRACKED_RECORDS,
    EntityStateRow,
    OutboxItem,
    TrackedRecord,
)
from sync.store.synclog import write_log
from sync.writeback.queue import enqueue_sourced_updates, enqueue_update


def _items(
    session: Session, msg_id: str | None, record_type: str | None, external_id: str | None
) -> list[OutboxItem]:
    query = select(OutboxItem)
    if msg_id:
        query = query.where(col(OutboxItem.message_id) == msg_id)
    if record_type:
        query = query.where(col(OutboxItem.record_type) == record_type)
    if external_id:
        query = query.where(col(OutboxItem.external_id) == str(external_id))
    return list(session.exec(query).all()) if (msg_id or external_id) else []


#: The payload keys an ack's `external_id` may echo: the record's own id, or the job or user it is about.
_ECHOED_IDS = ("external_id", "external_job_id", "external_user_id", "job_id")


def _items_named_in_batch(
    session: Session, msg_id: str | None, record_type: str | None, external_id: str | None
) -> list[OutboxItem]:
    """The items of a record the outbox keyed by another identity than the id the ack echoes (a user tag
    keyed by user and tag, sent with the user's id as external_id; a job trade without an external_id).
    Found in the batch's payload: the first record of that type, in batch order, that still waits and
    carries that id. Dispatch applies and answers a batch in order, so equal ids are matched in turn; a
    repeated ack falls back to the first. Only read when the direct match found nothing."""
    if not msg_id or not record_type or not external_id:
        return []
    payload = session.execute(
        select(OUTBOX_BATCHES.c.payload).where(OUTBOX_BATCHES.c.message_id == msg_id)
    ).scalar()
    positions = [
        index
        for index, item in enumerate(payload or [])
        if isinstance(item, dict)
        and item.get("record_type") == record_type
        and any(str((item.get("record") or {}).get(key)) == str(external_id) for key in _ECHOED_IDS)
    ]
    if not positions:
        return []
    rows = session.exec(
        select(OutboxItem).where(
            col(OutboxItem.message_id) == msg_id,
            col(OutboxItem.record_type) == record_type,
            col(OutboxItem.position).in_(positions),
        )
    ).all()
    by_position: dict[int, list[OutboxItem]] = defaultdict(list)
    for row in rows:
        by_position[row.position].append(row)
    for position in positions:
        if any(row.status == "pending" for row in by_position.get(position, [])):
            return by_position[position]
    return by_position.get(positions[0], [])


def _tracked(session: Session, item: OutboxItem) -> TrackedRecord | None:
    if not item.crm_object or not item.crm_id:
        return None
    return session.exec(
        select(TrackedRecord).where(
            col(TrackedRecord.crm_object) == item.crm_object, col(TrackedRecord.crm_id) == item.crm_id
        )
    ).first()


def confirm_records(
    session: Session, mapping: MappingConfig, records: Sequence[TrackedRecord], *, source: str
) -> None:
    """Stamp the records confirmed and queue Dispatch_Last_Synced__c (error field cleared) for each."""
    now = utcnow()
    for tracked in records:
        tracked.confirmed_at, tracked.last_error = now, None
        session.add(tracked)
    _queue_confirmations(session, mapping, [(t.crm_object, t.crm_id) for t in records], now, source)


def _queue_confirmations(
    session: Session, mapping: MappingConfig, records: Sequence[tuple[str, str]], now: datetime, source: str
) -> None:
    queue_sourced_confirmations(session, mapping, [(o, i, source) for o, i in records], now)


def queue_sourced_confirmations(
    session: Session, mapping: MappingConfig, records: Sequence[tuple[str, str, str]], now: datetime
) -> None:
    """Queue Dispatch_Last_Synced__c (error field cleared) for (crm_object, crm_id, source) records: one
    INSERT per object, each row keeping the source (the ack message) that confirmed it."""
    updates: dict[str, list[tuple[str, dict[str, Any], str]]] = defaultdict(list)
    for crm_object, crm_id, source in records:
        spec = mapping.objects.get(crm_object)
        if spec is None:
            continue
        fields: dict[str, Any] = {}
        if spec.write_back.last_synced:
            fields[spec.write_back.last_synced] = now.isoformat()
        if spec.write_back.error:
            fields[spec.write_back.error] = None
        updates[crm_object].append((crm_id, fields, source))
    for crm_object, rows in updates.items():
        enqueue_sourced_updates(session, crm_object, rows)


def report_error(
    session: Session,
    mapping: MappingConfig,
    crm_object: str,
    crm_id: str,
    external_id: str | None,
    message: str,
    *,
    source: str,
    msg_id: str | None,
    entity: str | None,
    direction: str = "out",
) -> None:
    """Where a user looks for an error: the CRM record's error field (cut to its length) and the sync log."""
    spec = mapping.objects.get(crm_object)
    limit = spec.write_back.error_max_length if spec else 255
    if spec and spec.write_back.error:
        enqueue_update(session, crm_object, crm_id, {spec.write_back.error: message[:limit]}, source=source)
    write_log(
        session,
        message,
        level="error",
        direction=direction,
        entity=entity,
        crm_record_id=crm_id,
        external_id=external_id,
        msg_id=msg_id,
    )


def _close_batch_if_done(session: Session, msg_id: str) -> None:
    """Confirm the batch once none of its items waits. An UPDATE, so the batch's payload is never loaded."""
    pending = session.exec(
        select(OutboxItem.id).where(col(OutboxItem.message_id) == msg_id, col(OutboxItem.status) == "pending")
    ).first()
    if pending is None:
        session.execute(
            update(OUTBOX_BATCHES)
            .where(OUTBOX_BATCHES.c.message_id == msg_id, OUTBOX_BATCHES.c.status != "confirmed")
            .values(status="confirmed", confirmed_at=utcnow())
        )


def apply_results(
    session: Session, mapping: MappingConfig, results: Iterable[RecordResult], *, source: str, label: str
) -> None:
    for result in results:
        apply_result(session, mapping, result, source=source, label=label)


def apply_result(
    session: Session, mapping: MappingConfig, result: RecordResult, *, source: str, label: str
) -> bool:
    """What a back end (`label`: its name for people) said about one record it was sent, now or later:
    confirmed, or an error."""
    if result.ok:
        return _apply_ack(session, mapping, result, source=source)
    return _apply_err(session, mapping, result, source=source, label=label)


def _apply_ack(session: Session, mapping: MappingConfig, ack: RecordResult, *, source: str) -> bool:
    """Mark the acknowledged record; confirm its CRM record when it is that record's primary one."""
    msg_id, model, external_id = ack.message_id, ack.record_type, ack.external_id
    items = _items(session, msg_id, model, external_id) or _items_named_in_batch(
        session, msg_id, model, external_id
    )
    if not items:
        write_log(
            session,
            f"ack for {model} {external_id} matches no published batch (msg_id {msg_id})",
            level="warning",
            direction="in",
            entity=model,
            external_id=external_id,
            msg_id=msg_id,
        )
        return False
    for item in items:
        item.status = "acked"
        session.add(item)
    # A shared record (a provider of 500 work orders) has one item per source record: confirm only the rows
    # whose primary record this is, with one query, and close each batch once.
    confirmed = _primary_tracked(session, items)
    for tracked in confirmed:
        take_ack(session, tracked, ack, model=model, external_id=external_id, msg_id=msg_id)
    confirm_records(session, mapping, confirmed, source=source)
    for tracked in confirmed:
        _follow_confirmed_request(session, tracked, msg_id)
    for message_id in {item.message_id for item in items}:
        _close_batch_if_done(session, message_id)
    return True


def take_ack(
    session: Session,
    tracked: TrackedRecord,
    ack: RecordResult,
    *,
    model: str | None,
    external_id: str | None,
    msg_id: str | None,
) -> None:
    """The back end's id for the record, and the ids a create made (job, provider, contact, appointment) on
    the record's timeline: what an ack teaches us beyond "confirmed"."""
    if ack.remote_id is not None:
        tracked.remote_id = ack.remote_id
    if ack.details:
        created = ", ".join(f"{key} {value}" for key, value in ack.details.items() if value is not None)
        write_log(
            session,
            f"{model} {external_id} created: {created}",
            direction="out",
            entity=model,
            crm_record_id=tracked.crm_id,
            external_id=external_id,
            msg_id=msg_id,
            details=dict(ack.details),
        )


def _follow_confirmed_request(session: Session, tracked: TrackedRecord, msg_id: str | None) -> None:
    """The job state follows a status the CRM asked for once the back end confirmed it (a cancel sent when
    the flag was cleared, a completion): `status` and the dashboard show it before any field event does.
    Only through an allowed transition (the strict policy): a field that has moved on keeps its word."""
    requested = (tracked.snapshot or {}).get(STATUS_KEY)
    if not requested or not tracked.external_id:
        return
    row = session.exec(
        select(EntityStateRow).where(
            col(EntityStateRow.system) == tracked.system,
            col(EntityStateRow.kind) == "job",
            col(EntityStateRow.external_id) == tracked.external_id,
        )
    ).first()
    follow_request(session, tracked, row, msg_id)


def follow_request(
    session: Session, tracked: TrackedRecord, row: EntityStateRow | None, msg_id: str | None
) -> None:
    """_follow_confirmed_request once the job's entity row (`row`, None: none yet) was looked up."""
    requested = (tracked.snapshot or {}).get(STATUS_KEY)
    if not requested or row is None or row.state in (None, requested):
        return  # nothing applied yet (a first publish creates the job as asked), or already there
    state = EntityState(row.state, row.status_message, _milestones(row), row.updated_at)
    try:
        request_change("job", state, requested, at=utcnow())
    except StateMachineError:
        return
    before, row.state = row.state, state.state
    row.milestones = {name: stamp.isoformat() for name, stamp in state.milestones.items()}
    session.add(row)
    write_log(
        session,
        f"job {row.external_id}: {before} -> {row.state} (asked by the CRM, confirmed)",
        direction="out",
        entity="job",
        crm_record_id=tracked.crm_id,
        external_id=row.external_id,
        msg_id=msg_id,
    )


def _milestones(row: EntityStateRow) -> dict[str, datetime]:
    stamps = {}
    for name, value in (row.milestones or {}).items():
        try:
            stamps[name] = datetime.fromisoformat(str(value))
        except ValueError:
            continue
    return stamps


def _primary_tracked(session: Session, items: list[OutboxItem]) -> list[TrackedRecord]:
    """Tracked records whose own (primary) canonical record is one of these items, sent in that batch.

    One query for the lot: confirming a batch of 200 must not cost 200 round trips to the store."""
    keys = {(i.crm_object, i.crm_id, i.external_id, i.message_id) for i in items if i.crm_object and i.crm_id}
    ids_by_object: dict[str, set[str]] = defaultdict(set)
    for crm_object, crm_id, _, _ in keys:
        ids_by_object[crm_object].add(crm_id)
    matched = []
    # By (crm_object, crm_id): the unique index's column order. By crm_id alone SQLite cannot use it and
    # read every tracked row, about 8 ms per ack at 2,000 tracked records (bench/publisher.py, acks on).
    for crm_object, ids in sorted(ids_by_object.items()):
        for chunk in chunked(sorted(ids), IN_CLAUSE_CHUNK):
            query = select(TrackedRecord).where(
                col(TrackedRecord.crm_object) == crm_object, col(TrackedRecord.crm_id).in_(chunk)
            )
            for tracked in session.exec(query).all():
                key = (tracked.crm_object, tracked.crm_id, tracked.external_id, tracked.last_message_id)
                if key in keys:
                    matched.append(tracked)
    return matched


def _apply_err(
    session: Session, mapping: MappingConfig, err: RecordResult, *, source: str, label: str
) -> bool:
    """Put the back end's error message on the CRM record (cut to the field length) and in the sync log."""
    msg_id, model, external_id = err.message_id, err.record_type, err.external_id
    message = err.error or f"{label} reported an error without a message"
    items = _items(session, msg_id, model, external_id) or _items_named_in_batch(
        session, msg_id, model, external_id
    )
    if not items:
        write_log(
            session,
            f"{label} error for {model} {external_id}: {message}",
            level="error",
            direction="out",
            entity=model,
            external_id=external_id,
            msg_id=msg_id,
            details={"note": "matches no published batch"},
        )
        return False
    for item in items:
        item.status = "error"
        session.add(item)
        tracked = _tracked(session, item)
        if tracked is not None:
            text = f"{label} rejected {model} {external_id}: {message}"
            tracked.last_error = text
            session.add(tracked)
            report_error(
                session,
                mapping,
                tracked.crm_object,
                tracked.crm_id,
                tracked.external_id,
                text,
                source=source,
                msg_id=msg_id,
                entity=model,
            )
        _close_batch_if_done(session, item.message_id)
    return True


def confirm_batch_on_http_200(session: Session, mapping: MappingConfig, message_id: str) -> None:
    """When acks are off, HTTP 200 is the confirmation (weaker: received, not applied).

    Set-based (a join and a few UPDATEs, no ORM objects): this runs for every batch sent, and confirming
    200 records one object at a time cost more than sending them."""
    now = utcnow()
    in_batch = OUTBOX_ITEMS.c.message_id == message_id
    session.execute(update(OUTBOX_ITEMS).where(in_batch).values(status="acked"))
    primary = session.execute(
        select(col(TrackedRecord.id), col(TrackedRecord.crm_object), col(TrackedRecord.crm_id))
        .join(
            OutboxItem,
            and_(
                col(OutboxItem.crm_object) == col(TrackedRecord.crm_object),
                col(OutboxItem.crm_id) == col(TrackedRecord.crm_id),
                col(OutboxItem.external_id) == col(TrackedRecord.external_id),
            ),
        )
        .where(in_batch, col(TrackedRecord.last_message_id) == message_id)
    ).all()
    for chunk in chunked([row_id for row_id, _, _ in primary], IN_CLAUSE_CHUNK):
        session.execute(
            update(TRACKED_RECORDS)
            .where(TRACKED_RECORDS.c.id.in_(chunk))
            .values(confirmed_at=now, last_error=None)
        )
    records = [(crm_object, crm_id) for _, crm_object, crm_id in primary]
    _queue_confirmations(session, mapping, records, now, f"batch {message_id}")
    _close_batch_if_done(session, message_id)

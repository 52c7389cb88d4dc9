"""Acks applied a group at a time: what sync.outbound.confirmation does for one ack, set-based.

A publish of 1,000 changed records comes back as ~1,100 ack messages. One at a time, each cost about nine
statements (its outbox items, its tracked record, the confirmation, the job row, the batch's close) and
~2.6 ms of CPU, which made the publisher's confirmed wall time (bench/publisher.py `acks_wall_s`) wait
on the processor. Here the acks of consecutive messages share those statements: items per batch by external
id, tracked records per object, one INSERT of confirmations, job rows in one query, each batch closed
once. The effect per ack is the one-at-a-time path's; an ack this path cannot match directly (no record
type, an item keyed by another identity, no item at all) takes that path, with its fallbacks and warning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlmodel import Session, col, select

from connector.mapping import MappingConfig
from connector.ports import RecordResult
from sync.outbound.confirmation import (
    _apply_ack,
    _close_batch_if_done,
    _primary_tracked,
    follow_request,
    queue_sourced_confirmations,
    take_ack,
)
from sync.store.db import IN_CLAUSE_CHUNK, chunked
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, OutboxItem, TrackedRecord

ItemKey = tuple[str, str | None, str | None]  # (batch message id, record type, external id)


def is_plain_ack(report: object) -> bool:
    """A report this path takes: a confirmation with nothing to warn about."""
    return isinstance(report, RecordResult) and report.ok and not report.problems


def apply_acks(session: Session, mapping: MappingConfig, acks: Sequence[tuple[RecordResult, str]]) -> None:
    """Apply (ack, source message id) pairs, in one transaction with their messages' `processed` marks."""
    items = _items_by_key(session, acks)
    matched: list[tuple[RecordResult, str, list[OutboxItem]]] = []
    for ack, source in acks:
        found = items.get(_key(ack)) if ack.record_type else None
        if found:
            matched.append((ack, source, found))
        else:
            _apply_ack(session, mapping, ack, source=source)
    all_items = [item for _, _, found in matched for item in found]
    for item in all_items:
        item.status = "acked"
        session.add(item)
    tracked_by_key: dict[tuple[str | None, ...], TrackedRecord] = {
        (t.crm_object, t.crm_id, t.external_id, t.last_message_id): t
        for t in _primary_tracked(session, all_items)
    }
    confirmed: list[tuple[TrackedRecord, RecordResult, str]] = []
    for ack, source, found in matched:
        for item in found:
            tracked = tracked_by_key.get((item.crm_object, item.crm_id, item.external_id, item.message_id))
            if tracked is not None:
                confirmed.append((tracked, ack, source))
    _confirm(session, mapping, confirmed)
    for message_id in sorted({item.message_id for item in all_items}):
        _close_batch_if_done(session, message_id)


def _key(ack: RecordResult) -> ItemKey:
    return (ack.message_id or "", ack.record_type, str(ack.external_id) if ack.external_id else None)


def _items_by_key(
    session: Session, acks: Sequence[tuple[RecordResult, str]]
) -> dict[ItemKey, list[OutboxItem]]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for ack, _ in acks:
        if ack.message_id and ack.external_id:
            wanted[ack.message_id].add(str(ack.external_id))
    found: dict[ItemKey, list[OutboxItem]] = defaultdict(list)
    for message_id, external_ids in sorted(wanted.items()):
        for chunk in chunked(sorted(external_ids), IN_CLAUSE_CHUNK):
            query = select(OutboxItem).where(
                col(OutboxItem.message_id) == message_id, col(OutboxItem.external_id).in_(chunk)
            )
            for item in session.exec(query).all():
                found[(item.message_id, item.record_type, item.external_id)].append(item)
    return found


def _confirm(
    session: Session, mapping: MappingConfig, confirmed: list[tuple[TrackedRecord, RecordResult, str]]
) -> None:
    now = utcnow()
    for tracked, ack, _ in confirmed:
        take_ack(
            session, tracked, ack, model=ack.record_type, external_id=ack.external_id, msg_id=ack.message_id
        )
        tracked.confirmed_at, tracked.last_error = now, None
        session.add(tracked)
    queue_sourced_confirmations(session, mapping, [(t.crm_object, t.crm_id, s) for t, _, s in confirmed], now)
    jobs = _job_rows(session, [tracked for tracked, _, _ in confirmed])
    for tracked, ack, _ in confirmed:
        if tracked.external_id:
            follow_request(session, tracked, jobs.get((tracked.system, tracked.external_id)), ack.message_id)


def _job_rows(session: Session, records: list[TrackedRecord]) -> dict[tuple[str, str], EntityStateRow]:
    """The job entity rows of these records, by (system, external id): one query per system and chunk."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for tracked in records:
        if tracked.external_id:
            wanted[tracked.system].add(tracked.external_id)
    rows: dict[tuple[str, str], EntityStateRow] = {}
    for system, external_ids in sorted(wanted.items()):
        for chunk in chunked(sorted(external_ids), IN_CLAUSE_CHUNK):
            query = select(EntityStateRow).where(
                col(EntityStateRow.system) == system,
                col(EntityStateRow.kind) == "job",
                col(EntityStateRow.external_id).in_(chunk),
            )
            for row in session.exec(query).all():
                rows.setdefault((system, str(row.external_id)), row)
    return rows

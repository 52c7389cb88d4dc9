"""The outbox: change sets cut into batches per back end, committed, then sent through each destination.

Batches, outbox items (which CRM record each record of a batch came from) and the publisher's decisions
commit together before anything is sent, so a crash re-sends the same MessageId instead of losing or
doubling a batch. Each back end's pending batches are sent oldest first, and a back end's sending stops
at its first failure so it sees its batches in order; one back end's outage holds up no other.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from connector.errors import ConnectorError
from connector.mapping import record_identity
from connector.ports import Destination, RecordResult, send_encoded
from sync.context import SyncContext
from sync.outbound.confirmation import apply_results, confirm_batch_on_http_200
from sync.store.db import chunked, session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import OUTBOX_BATCHES, OUTBOX_ITEMS, OutboxBatch
from sync.store.synclog import write_log

ROWS_PER_COMMIT = 5000


@dataclass
class PublishReport:
    read: int = 0
    changed: int = 0
    refused: int = 0
    canonical_records: int = 0
    batches_created: list[str] = field(default_factory=list)
    requests_sent: int = 0
    send_errors: list[str] = field(default_factory=list)
    payloads: list[list[dict[str, Any]]] = field(default_factory=list)
    encoding: str = "json"  # how this cycle's batches are sent: "json", or "csv" (publish --all --csv)


class Source(Protocol):
    """What a change gives the outbox: where its records go and which CRM record they came from;
    `set_message_id` records the batch that carries the change's own (primary) record."""

    system: str
    crm_object: str
    crm_id: str
    primary: tuple[str, str]
    records: list[dict[str, Any]]

    def set_message_id(self, message_id: str) -> None: ...


def _ordered_records(
    changes: list[Source], record_types: tuple[str, ...]
) -> list[tuple[dict[str, Any], list[Source]]]:
    """Dedupe records by (type, identity), newest content wins, in the destination's dependency order. The
    identity is the record's `identity` when its id is sent under another key (or not at all), else its
    external_id (connector.mapping.record_identity); outbox items keep it, so acks match by it."""
    merged: dict[tuple[str, str], tuple[dict[str, Any], list[Source]]] = {}
    for change in changes:
        for record in change.records:
            key = (record["record_type"], record_identity(record))
            sources = merged[key][1] if key in merged else []
            sources.append(change)  # in place: a provider shared by 500 work orders is not copied 500 times
            merged[key] = (record, sources)
    order = {name: index for index, name in enumerate(record_types)}
    return sorted(merged.values(), key=lambda item: order.get(item[0]["record_type"], len(order)))


def batches(
    changes: list[Source], destinations: Mapping[str, Destination], size: int
) -> Iterator[tuple[str, list[dict[str, Any]], list[list[Source]]]]:
    """(system, records, sources per record) per batch: each back end's changes in its own batches."""
    by_system: dict[str, list[Source]] = defaultdict(list)
    for change in changes:
        by_system[change.system].append(change)
    for system, group in by_system.items():
        destination = destinations[system]
        limit = max(1, min(size, destination.max_batch))
        for chunk in chunked(_ordered_records(group, destination.record_types), limit):
            yield system, [record for record, _ in chunk], [sources for _, sources in chunk]


def write_outbox(
    session: Session,
    changes: list[Source],
    destinations: Mapping[str, Destination],
    size: int,
    report: PublishReport,
    built: dict[str, list[Any]],
    encoding: str | None = None,
) -> None:
    """Batches and their items in a few INSERTs (a change set of 1,000 records has over 1,000 items).
    `encoding` ("json" or "csv", a first load's choice; default the report's) is how each batch is sent."""
    now = utcnow()
    items: list[dict[str, Any]] = []
    for index, (system, records, sources) in enumerate(batches(changes, destinations, size)):
        message_id = str(uuid.uuid4())
        session.add(
            OutboxBatch(
                message_id=message_id,
                system=system,
                payload=records,
                record_count=len(records),
                # a microsecond apart: batches are sent by (created_at, message_id), and a change set's
                # dependency order (organizations before the jobs naming them) must hold across batches
                created_at=now + timedelta(microseconds=index),
                encoding=encoding or report.encoding,
            )
        )
        for position, (record, changed) in enumerate(zip(records, sources, strict=True)):
            key = (record["record_type"], record_identity(record))
            for change in changed:
                items.append(
                    {
                        "message_id": message_id,
                        "position": position,
                        "record_type": key[0],
                        "external_id": key[1],
                        "crm_object": change.crm_object,
                        "crm_id": change.crm_id,
                        "status": "pending",
                    }
                )
                if change.primary == key:
                    change.set_message_id(message_id)
        report.batches_created.append(message_id)
        built[message_id] = records
        report.canonical_records += len(records)
    session.flush()
    for chunk in chunked(items, ROWS_PER_COMMIT):
        # the Core table, not the ORM entity: a plain executemany, without the ORM's per-row bookkeeping
        session.execute(insert(OUTBOX_ITEMS), chunk)


def send_pending(ctx: SyncContext, report: PublishReport, built: dict[str, list[Any]] | None = None) -> None:
    """Send pending batches oldest first, per back end; stop a back end at its first failure.

    `built` holds the payloads this cycle committed: those are sent as built, not decoded back from the
    store (a batch left by a crash or a failed send is read back). A sent batch is recorded (and confirmed,
    when the destination's answer confirms) by one worker thread while the next batch is on the wire: the
    store work of one overlaps the round trip of the next, and the worker's single thread keeps the records
    in send order. A crash before a batch is recorded re-sends it with the same MessageId."""
    with session_scope(ctx.engine) as session:
        pending = session.exec(
            select(OutboxBatch.message_id, OutboxBatch.system, OutboxBatch.encoding)
            .where(col(OutboxBatch.status) == "pending")
            .order_by(col(OutboxBatch.created_at), col(OutboxBatch.message_id))
        ).all()
    if not pending:
        return
    stopped: set[str] = set()
    with ThreadPoolExecutor(1, thread_name_prefix="publish-record") as recorder:
        recorded: list[Future[None]] = []
        for message_id, system, encoding in pending:
            if any(future.done() and future.exception() for future in recorded):
                break  # the store refused a record: stop sending, the error is raised below
            if system in stopped:
                continue
            payload = built.pop(message_id, None) if built is not None else None
            if not _send_one(ctx, system, message_id, report, payload, recorder, recorded, encoding):
                stopped.add(system)
        for future in recorded:
            future.result()


def _send_one(
    ctx: SyncContext,
    system: str,
    message_id: str,
    report: PublishReport,
    payload: list[Any] | None,
    recorder: ThreadPoolExecutor,
    recorded: list[Future[None]],
    encoding: str = "json",
) -> bool:
    this_batch = OUTBOX_BATCHES.c.message_id == message_id
    if payload is None:
        with session_scope(ctx.engine) as session:
            payload = list(
                session.execute(core_select(OUTBOX_BATCHES.c.payload).where(this_batch)).scalar() or []
            )
    destination = ctx.backend(system).destination
    try:
        results = send_encoded(destination, payload, message_id=message_id, encoding=encoding)
    except ConnectorError as exc:
        for future in recorded:  # the batches sent before this one are recorded first
            future.result()
        _record_failure(ctx, system, message_id, len(payload), exc)
        report.send_errors.append(str(exc))
        return False
    confirm, label = destination.confirmed_by_answer, ctx.backend(system).label
    recorded.append(recorder.submit(_record_sent, ctx, message_id, results, confirm, label))
    report.requests_sent += 1
    return True


def _record_failure(
    ctx: SyncContext, system: str, message_id: str, records: int, exc: ConnectorError
) -> None:
    with session_scope(ctx.engine) as session:
        session.execute(
            update(OUTBOX_BATCHES)
            .where(OUTBOX_BATCHES.c.message_id == message_id)
            .values(attempts=OUTBOX_BATCHES.c.attempts + 1, last_error=str(exc))
        )
        write_log(
            session,
            f"sending batch to {system} failed, will retry with the same MessageId: {exc}",
            level="error",
            direction="out",
            msg_id=message_id,
            details={"records": records, "retriable": exc.retriable, "system": system},
        )


def _record_sent(
    ctx: SyncContext, message_id: str, results: Sequence[RecordResult], confirm: bool, label: str
) -> None:
    with session_scope(ctx.engine) as session:
        # Column UPDATEs, not ORM loads: the payload (up to batch_size records) is not read back.
        session.execute(
            update(OUTBOX_BATCHES)
            .where(OUTBOX_BATCHES.c.message_id == message_id, OUTBOX_BATCHES.c.status == "pending")
            .values(attempts=OUTBOX_BATCHES.c.attempts + 1, status="sent", sent_at=utcnow(), last_error=None)
        )
        if results:
            apply_results(session, ctx.mapping, results, source=f"batch {message_id}", label=label)
        if confirm:
            confirm_batch_on_http_200(session, ctx.mapping, message_id)

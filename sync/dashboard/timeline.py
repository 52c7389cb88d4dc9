"""What happened to one record, from every table that mentions it, in store time order.

Support staff ask "what happened to work order X?" with whichever id they hold (CRM id or external id), so
the id is first resolved to every CRM id and external id it is linked to; each table is then read by those.
Times are the store's own (when the connector did something), never Dispatch's `updated_at`, so the order
is the order in which the connector saw and did things.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, cast, or_
from sqlmodel import Session, col, select

from connector.errors import ConnectorError
from connector.ports import Delivery, Notice, RecordResult, Report
from connector.registry import backend_type
from sync.dashboard.lookup import Candidate, resolve
from sync.store.models import (
    EntityStateRow,
    InboxMessage,
    OutboxBatch,
    OutboxItem,
    SyncLog,
    TrackedRecord,
    WriteBack,
)
from sync.store.synclog import without_sql
from sync.writeback.timing import last_attempt_at

# Inbox rows read per record: a record's whole life is a few dozen messages; the cap keeps a hostile id cheap.
MAX_INBOX_ROWS = 500
# Stand-in for a missing time, so such an event sorts first instead of breaking the sort.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    source: str  # outbox | inbox | log | write_back
    kind: str  # short label: "published", "sent", "received job", "write-back queued", a log level ...
    summary: str
    level: str = "info"  # info | warning | error
    message_id: str | None = None
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TrackedView:
    system: str
    crm_object: str
    crm_id: str
    external_id: str | None
    remote_id: str | None
    flagged: bool
    fields_hash: str | None
    last_message_id: str | None
    published_at: datetime | None
    confirmed_at: datetime | None
    last_error: str | None
    snapshot: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class EntityView:
    system: str
    kind: str
    external_id: str
    remote_id: str | None
    crm_id: str | None
    state: str | None
    status_message: str | None
    milestones: tuple[tuple[str, str], ...]
    updated_at: datetime | None


@dataclass
class Timeline:
    record_id: str
    crm_ids: set[str] = field(default_factory=set)
    external_ids: set[str] = field(default_factory=set)
    tracked: list[TrackedView] = field(default_factory=list)
    entities: list[EntityView] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)
    matched: str = ""  # the field or id the asked value was found in, when it is not the record's own id
    candidates: list[Candidate] = field(default_factory=list)  # several records hold the asked value

    @property
    def found(self) -> bool:
        return bool(self.tracked or self.entities or self.events or self.candidates)

    @property
    def errors(self) -> list[TimelineEvent]:
        return [e for e in self.events if e.level == "error"]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _pairs(mapping: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), _text(v)) for k, v in sorted((mapping or {}).items()))


def _resolve(session: Session, timeline: Timeline) -> None:
    """Every CRM id and external id linked to the asked id (sync.dashboard.lookup)."""
    found = resolve(session, timeline.record_id)
    timeline.crm_ids |= found.crm_ids
    timeline.external_ids |= found.external_ids
    timeline.matched = found.matched
    timeline.candidates = found.candidates


def _tracked_views(session: Session, timeline: Timeline) -> None:
    rows = session.exec(select(TrackedRecord).where(col(TrackedRecord.crm_id).in_(timeline.crm_ids))).all()
    timeline.tracked = [
        TrackedView(
            system=r.system,
            crm_object=r.crm_object,
            crm_id=r.crm_id,
            external_id=r.external_id,
            remote_id=r.remote_id,
            flagged=r.flagged,
            fields_hash=r.fields_hash,
            last_message_id=r.last_message_id,
            published_at=r.published_at,
            confirmed_at=r.confirmed_at,
            last_error=r.last_error,
            snapshot=_pairs(r.snapshot),
        )
        for r in rows
    ]


def _entity_views(session: Session, timeline: Timeline) -> None:
    rows = session.exec(
        select(EntityStateRow)
        .where(
            or_(
                col(EntityStateRow.external_id).in_(timeline.external_ids),
                col(EntityStateRow.crm_id).in_(timeline.crm_ids),
            )
        )
        .order_by(col(EntityStateRow.system), col(EntityStateRow.kind), col(EntityStateRow.external_id))
    ).all()
    timeline.entities = [
        EntityView(
            system=r.system,
            kind=r.kind,
            external_id=r.external_id,
            remote_id=r.remote_id,
            crm_id=r.crm_id,
            state=r.state,
            status_message=r.status_message,
            milestones=_pairs(r.milestones),
            updated_at=r.updated_at,
        )
        for r in rows
    ]


def _canonical_record(batch: OutboxBatch, record_type: str, external_id: str) -> dict[str, Any]:
    for entry in batch.payload or []:
        if not isinstance(entry, dict) or entry.get("record_type") != record_type:
            continue
        record = entry.get("record")
        if isinstance(record, dict) and record.get("external_id") == external_id:
            return record
    return {}


def _publish_details(batch: OutboxBatch, items: Sequence[OutboxItem]) -> tuple[tuple[str, str], ...]:
    details: list[tuple[str, str]] = [("batch records", str(batch.record_count))]
    for item in items:
        record = _canonical_record(batch, item.record_type, item.external_id)
        shown = {k: record[k] for k in ("title", "status", "name") if k in record}
        details.append(
            (f"{item.record_type} {item.external_id}", f"{item.status} {_text(shown) if shown else ''}")
        )
    return tuple(details)


def _batch_events(batch: OutboxBatch, items: Sequence[OutboxItem]) -> Iterable[TimelineEvent]:
    mid = batch.message_id
    summary = ", ".join(f"{i.record_type} {i.external_id}" for i in items)
    if batch.created_at:
        yield TimelineEvent(
            batch.created_at, "outbox", "published", f"queued in batch: {summary}", "info", mid,
            _publish_details(batch, items),
        )  # fmt: skip
    if batch.sent_at:
        yield TimelineEvent(
            batch.sent_at, "outbox", "sent", f"agent/in sent (attempts {batch.attempts})", "info", mid
        )
    if batch.confirmed_at:
        yield TimelineEvent(
            batch.confirmed_at, "outbox", "confirmed", "batch confirmed by Dispatch", "info", mid
        )
    failed = [i for i in items if i.status == "error"]
    if batch.last_error or batch.status == "failed":
        at = batch.sent_at or batch.created_at
        if at:
            yield TimelineEvent(at, "outbox", "send failed", batch.last_error or "batch failed", "error", mid)
    for item in failed:
        at = batch.confirmed_at or batch.sent_at or batch.created_at
        if at:
            yield TimelineEvent(
                at,
                "outbox",
                "rejected",
                f"{item.record_type} {item.external_id} answered by err",
                "error",
                mid,
            )


def _outbox_events(session: Session, timeline: Timeline) -> tuple[list[TimelineEvent], set[str]]:
    items = session.exec(
        select(OutboxItem)
        .where(
            or_(
                col(OutboxItem.crm_id).in_(timeline.crm_ids),
                col(OutboxItem.external_id).in_(timeline.external_ids),
            )
        )
        .order_by(col(OutboxItem.message_id), col(OutboxItem.position))
    ).all()
    by_batch: dict[str, list[OutboxItem]] = {}
    for item in items:
        by_batch.setdefault(item.message_id, []).append(item)
    events: list[TimelineEvent] = []
    for message_id, batch_items in by_batch.items():
        batch = session.get(OutboxBatch, message_id)
        if batch is not None:
            events.extend(_batch_events(batch, batch_items))
    return events, set(by_batch)


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _summary(row: InboxMessage) -> str:
    """`job 0WO...: status complete ("All done")`, read through the back end's own translation, so the
    dashboard knows no back end's message format. A back end instance named like its type is read by
    that type; a message that cannot be read shows its type."""
    try:
        entry = backend_type(row.system)
        delivery = Delivery(row.system, row.message_id, row.type or "", row.payload, row.entity_key)
        parts = [_describe(report) for report in entry.translate(delivery, None)]
    except (ConnectorError, LookupError, TypeError, ValueError, AttributeError):
        parts = []
    return "; ".join(parts) or (row.type or "message")


def _describe(report: Report) -> str:
    if isinstance(report, Notice):
        return report.message
    if isinstance(report, RecordResult):
        text = f"{'ack' if report.ok else 'err'} {report.record_type} {report.external_id}"
        return text + (f" message={report.error}" if report.error else "")
    text = f"{report.kind} {report.external_id or report.remote_id}"
    for key, value in (("status", report.status), ("reason", report.reason)):
        if value:
            text += f" {key}={_text(value)}"
    return text


def _inbox_rows(session: Session, timeline: Timeline) -> Sequence[InboxMessage]:
    conditions = []
    for ext in timeline.external_ids:
        conditions.append(col(InboxMessage.entity_key).like(_like_pattern(":" + ext)[:-1], escape="\\"))
        conditions.append(cast(col(InboxMessage.payload), String).like(_like_pattern(ext), escape="\\"))
    if not conditions:
        return []
    query = select(InboxMessage).where(or_(*conditions)).order_by(col(InboxMessage.received_at))
    return session.exec(query.limit(MAX_INBOX_ROWS)).all()


def _inbox_events(session: Session, timeline: Timeline) -> tuple[list[TimelineEvent], set[str]]:
    events: list[TimelineEvent] = []
    rows = _inbox_rows(session, timeline)
    for row in rows:
        level = "error" if row.status == "dead" else ("warning" if row.last_error else "info")
        details = (
            ("status", row.status),
            ("attempts", str(row.attempts)),
            ("deliveries", str(row.deliveries)),
            ("processed at", row.processed_at.isoformat() if row.processed_at else ""),
            ("last error", row.last_error or ""),
        )
        events.append(
            TimelineEvent(
                row.received_at or EPOCH, "inbox", f"received {row.type or '?'}", _summary(row),
                level, row.message_id, tuple(d for d in details if d[1]),
            )
        )  # fmt: skip
    return events, {r.message_id for r in rows}


def _log_events(session: Session, timeline: Timeline, related_ids: set[str]) -> list[TimelineEvent]:
    """Rows about the record, plus rows about its batches/messages that name no other record."""
    mine = or_(
        col(SyncLog.crm_record_id).in_(timeline.crm_ids), col(SyncLog.external_id).in_(timeline.external_ids)
    )
    anonymous = (
        col(SyncLog.msg_id).in_(related_ids)
        & col(SyncLog.crm_record_id).is_(None)
        & col(SyncLog.external_id).is_(None)
    )
    rows = session.exec(select(SyncLog).where(or_(mine, anonymous)).order_by(col(SyncLog.id))).all()
    return [
        TimelineEvent(
            r.at or EPOCH, "log", f"log {r.direction}", without_sql(r.message),
            r.level if r.level in ("warning", "error") else "info", r.msg_id,
            tuple(p for p in (("entity", r.entity or ""),) if p[1]) + _pairs(r.details),
        )
        for r in rows
    ]  # fmt: skip


def _write_back_events(session: Session, timeline: Timeline, inbox_ids: set[str]) -> list[TimelineEvent]:
    rows = session.exec(
        select(WriteBack)
        .where(
            or_(
                col(WriteBack.crm_id).in_(timeline.crm_ids),
                col(WriteBack.external_id).in_(timeline.external_ids),
                col(WriteBack.source).in_(inbox_ids),
            )
        )
        .order_by(col(WriteBack.id))
    ).all()
    events: list[TimelineEvent] = []
    for r in rows:
        target = f"{r.operation} {r.crm_object} {r.crm_id or r.external_id or ''}".strip()
        if r.created_at:
            events.append(
                TimelineEvent(
                    r.created_at,
                    "write_back",
                    "write-back queued",
                    target,
                    "info",
                    r.source,
                    _pairs(r.fields),
                )
            )
        outcome = _write_back_outcome(r, target)
        if outcome is not None:
            events.append(outcome)
    return events


def _write_back_outcome(r: WriteBack, target: str) -> TimelineEvent | None:
    """What became of a queued write, at the time it happened: written or skipped when settled, a failure
    at its last attempt (the next one is in the future and only named), a requeue when it was requeued."""
    tried = last_attempt_at(r.status, r.attempts, r.next_attempt_at, r.flushed_at)
    summary = f"{target}: {r.status}" + (f" ({r.attempts} failed attempt(s))" if r.attempts else "")
    if r.last_error:
        summary += f": {r.last_error}"
    if r.status in ("done", "skipped"):
        label = "write-back flushed" if r.status == "done" else "write-back skipped"
        return (
            TimelineEvent(r.flushed_at, "write_back", label, summary, "info", r.source)
            if r.flushed_at
            else None
        )
    if r.status == "failed":
        at = tried or r.created_at or EPOCH
        return TimelineEvent(at, "write_back", "write-back failed", summary, "error", r.source)
    if tried is not None:
        if r.next_attempt_at:
            summary += f"; next try at {_utc(r.next_attempt_at)}"
        return TimelineEvent(tried, "write_back", "write-back retry", summary, "warning", r.source)
    if r.attempts == 0 and r.next_attempt_at is not None:  # requeued by retry_failed_writebacks
        return TimelineEvent(
            r.next_attempt_at, "write_back", "write-back requeued", summary, "info", r.source
        )
    return None


def record_timeline(session: Session, record_id: str) -> Timeline:
    """Everything the store knows about `record_id` (a CRM id or an external id), oldest first."""
    timeline = Timeline(record_id=record_id.strip())
    if not timeline.record_id:
        return timeline
    _resolve(session, timeline)
    if timeline.candidates:
        return timeline  # several records hold the value: support chooses one
    _tracked_views(session, timeline)
    _entity_views(session, timeline)
    outbox, batch_ids = _outbox_events(session, timeline)
    inbox, inbox_ids = _inbox_events(session, timeline)
    events = outbox + inbox
    events += _log_events(session, timeline, batch_ids | inbox_ids)
    events += _write_back_events(session, timeline, inbox_ids)
    order = {"outbox": 0, "inbox": 1, "log": 2, "write_back": 3}
    timeline.events = sorted(events, key=lambda e: (e.at, order.get(e.source, 9)))
    return timeline


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

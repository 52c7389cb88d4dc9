"""CRM -> Dispatch: find flagged records whose relevant fields changed, and publish them as change sets.

One cycle per mapped CRM object: one SOQL query over the SystemModstamp watermark (re-reading a lookback
window, because a transaction that commits late can carry an older SystemModstamp than one already seen),
a hash of the relevant fields against the stored snapshot to decide what really changed, strict
validation of the status the CRM asks for, then the change set is cut into batches. Batches, snapshots
and the watermark commit together into the outbox before anything is sent, so a crash re-sends the same
MessageId instead of losing or doubling a batch. The connector's own write-backs touch no relevant field,
so they hash the same and never echo.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from connector.errors import ConnectorError
from connector.mapping import (
    RECORD_TYPES,
    ObjectSpec,
    RecordBuildError,
    build_records,
    relevant_hash,
    relevant_snapshot,
    soql_select,
)
from statemachines import EntityState, StateMachineError, allowed_targets, request_change
from sync.context import SyncContext
from sync.outbound.confirmation import confirm_batch_on_http_200, report_error
from sync.store.db import chunked, session_scope
from sync.store.dbtypes import utcnow
from sync.store.locks import single_instance
from sync.store.models import (
    ENTITY_STATES,
    OUTBOX_BATCHES,
    OUTBOX_ITEMS,
    TRACKED_RECORDS,
    OutboxBatch,
    Watermark,
)
from sync.store.synclog import write_log
from sync.writeback.queue import enqueue_update

ROWS_PER_COMMIT = 5000
ROWS_PER_DECISION = 500  # rows whose tracked state is loaded in one query
BACKFILL_ROWS_PER_COMMIT = 2000
STATUS_KEY, ORG_KEY = "_requested_status", "_organization"


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


@dataclass(slots=True)
class _Tracked:
    """A tracked_record row as the publisher decides on it.

    A plain object, written back with one executemany per unit: the ORM's per-object bookkeeping (identity
    map, attribute events, unit-of-work flush) cost more than the decisions themselves. Only the columns a
    decision changed are written, so a confirmation or an error the poller stamps meanwhile is kept."""

    crm_object: str
    crm_id: str
    id: int | None = None
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


_WRITTEN = (
    "external_id",
    "fields_hash",
    "snapshot",
    "flagged",
    "last_message_id",
    "published_at",
    "last_error",
)


@dataclass
class _Change:
    crm_object: str
    crm_id: str
    primary: tuple[str, str]
    records: list[dict[str, Any]]
    tracked: _Tracked


def publish_changes(
    ctx: SyncContext,
    *,
    dry_run: bool = False,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
    rows_per_commit: int = ROWS_PER_COMMIT,
) -> PublishReport:
    """Run one publish cycle: re-send what a crash left pending, then collect and send new change sets.

    Rows are decided and committed to the outbox in units of about `rows_per_commit` rows (across objects, so
    a small cycle is one change set and one request), which keeps memory flat however many records are
    flagged;
    an interrupted cycle loses at most the unit in hand, and its rerun skips by hash everything already
    published. A watermark commits with, or after, the last unit of its object."""
    report = PublishReport()
    if dry_run:
        _run_cycle(ctx, report, full, progress, rows_per_commit, dry_run=True)
        return report
    with single_instance(ctx.engine, "publisher"):
        _send_pending(ctx, report)
        _run_cycle(ctx, report, full, progress, rows_per_commit, dry_run=False)
    return report


class _Unit:
    """One transaction's worth of decided rows and their changes."""

    def __init__(
        self, ctx: SyncContext, report: PublishReport, dry_run: bool, built: dict[str, list[Any]]
    ) -> None:
        self.ctx, self.report, self.dry_run, self.built = ctx, report, dry_run, built
        self.session = Session(ctx.engine, expire_on_commit=False)
        self.changes: list[_Change] = []
        # tracked rows loaded or created in this unit, by (object, id); written at commit
        self.tracked: dict[tuple[str, str], _Tracked] = {}
        self.rows = 0

    def commit(self) -> None:
        batch_size = self.ctx.settings.batch_size
        if self.dry_run:
            self.report.payloads.extend(batch for batch, _ in _batches(self.changes, batch_size))
            self.session.rollback()
        else:
            _write_outbox(self.session, self.changes, batch_size, self.report, self.built)
            _write_tracked(self.session, self.tracked.values())
            self.session.commit()
        self.session.close()


def _run_cycle(
    ctx: SyncContext,
    report: PublishReport,
    full: bool,
    progress: Callable[[int], None] | None,
    rows_per_commit: int,
    *,
    dry_run: bool,
) -> None:
    built: dict[str, list[Any]] = {}  # payloads committed this cycle, by MessageId: sent without a re-read
    unit = _Unit(ctx, report, dry_run, built)
    try:
        for name, spec in ctx.mapping.objects.items():
            newest: datetime | None = None
            query, include_deleted = _query_for(ctx, unit.session, name, spec, full)
            rows = ctx.crm.query_iter(query, include_deleted=include_deleted)
            for chunk in chunked(rows, min(rows_per_commit, ROWS_PER_DECISION)):
                newest = _later(newest, _decide_rows(unit, name, spec, chunk))
                unit.rows += len(chunk)
                if progress:
                    progress(len(chunk))
                if unit.rows >= rows_per_commit:
                    unit.commit()
                    if not dry_run:
                        _send_pending(ctx, report, built)
                    unit = _Unit(ctx, report, dry_run, built)
            _advance_watermark(unit.session, name, spec, newest, getattr(ctx.crm, "server_time", None))
        unit.commit()
    except BaseException:
        unit.session.rollback()
        unit.session.close()
        raise
    if not dry_run:
        _send_pending(ctx, report, built)


def _query_for(
    ctx: SyncContext, session: Session, name: str, spec: ObjectSpec, full: bool
) -> tuple[str, bool]:
    """The cycle's one query, and whether it reads the recycle bin too (incremental cycles do, so a
    deletion is seen without a second call)."""
    if spec.pending:
        return f"{soql_select(spec, name)} WHERE {spec.pending.field} = true ORDER BY SystemModstamp", False
    mark = session.get(Watermark, name)
    if full or mark is None or mark.system_modstamp is None:
        return f"{soql_select(spec, name)} WHERE {spec.flag.soql_condition()} ORDER BY SystemModstamp", False
    # Re-read LOOKBACK_S before the newer of the newest stamp seen and the org's clock at the end of the last
    # read: late-committing transactions are caught, and an idle org's window still moves forward.
    anchor = max(mark.system_modstamp, mark.server_time or mark.system_modstamp)
    since = anchor - timedelta(seconds=ctx.settings.lookback_s)
    # Unflagged and deleted rows come back too, so an admin clearing the flag (on_unflag) or deleting the
    # record (on_delete) is seen.
    soql = soql_select(spec, name, extra=("IsDeleted",))
    return f"{soql} WHERE SystemModstamp >= {_soql_datetime(since)} ORDER BY SystemModstamp", True


def _soql_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _decide_rows(unit: _Unit, name: str, spec: ObjectSpec, rows: list[Mapping[str, Any]]) -> datetime | None:
    """Decide a chunk of rows against their tracked state; return the newest SystemModstamp.

    Most rows a cycle reads are unchanged (the lookback window, the connector's own write-backs): they are
    settled against (hash, flagged) columns alone, and only the rest load their full tracked state."""
    newest: datetime | None = None
    for row in rows:
        newest = _later(newest, row.get("SystemModstamp"))
    unit.report.read += len(rows)
    ids = [str(row["Id"]) for row in rows]
    known = _load_hashes(unit.session, name, ids)
    for crm_id in ids:  # a record read twice in one unit: its first decision is not in the store yet
        if decided := unit.tracked.get((name, crm_id)):
            known[crm_id] = (decided.fields_hash, decided.flagged)
    digests: dict[str, str] = {}
    todo = [row for row in rows if not _unchanged(spec, row, known.get(str(row["Id"])), digests)]
    tracked = _load_tracked(unit, name, [str(row["Id"]) for row in todo]) if todo else {}
    jobs = _load_job_states(unit.session, [t.external_id for t in tracked.values() if t.external_id])
    for row in todo:
        crm_id = str(row["Id"])
        change = _decide(unit, name, spec, row, tracked.get(crm_id), jobs, digests.get(crm_id))
        if change is not None:
            unit.report.changed += 1
            unit.changes.append(change)
    return newest


def _unchanged(
    spec: ObjectSpec, row: Mapping[str, Any], known: tuple[str | None, bool] | None, digests: dict[str, str]
) -> bool:
    """True when `_decide` would do nothing for this row (same outcome, decided without the ORM row)."""
    if spec.pending:
        return False  # every pending row clears its flag
    if not _flagged_now(spec, row):
        return known is None or not known[1]  # never published, or already known unflagged
    digest = digests[str(row["Id"])] = relevant_hash(spec, row)
    return known is not None and known[1] and known[0] == digest


def _advance_watermark(
    session: Session, name: str, spec: ObjectSpec, newest: datetime | None, server_time: datetime | None
) -> None:
    if spec.pending:
        return
    mark = session.get(Watermark, name)
    if mark is None:
        if newest is None:
            return  # nothing flagged yet: the next cycle is still a first load
        mark = Watermark(crm_object=name)
    if newest is not None and (mark.system_modstamp is None or newest > mark.system_modstamp):
        mark.system_modstamp = newest
    if server_time is not None and (mark.server_time is None or server_time > mark.server_time):
        mark.server_time = server_time
    mark.updated_at = utcnow()
    session.add(mark)


def backfill_all(
    ctx: SyncContext,
    *,
    progress: Callable[[int], None] | None = None,
    rows_per_commit: int = BACKFILL_ROWS_PER_COMMIT,
) -> PublishReport:
    """First load of every flagged record (`publish --all`), committed and sent chunk by chunk."""
    return publish_changes(ctx, full=True, progress=progress, rows_per_commit=rows_per_commit)


def count_flagged(ctx: SyncContext) -> int:
    """How many records a backfill will read (one COUNT() query per object), for the progress bar."""
    return sum(
        int(ctx.crm.count(f"SELECT COUNT() FROM {name} WHERE {spec.flag.soql_condition()}"))
        for name, spec in ctx.mapping.objects.items()
    )


def _later(current: datetime | None, value: Any) -> datetime | None:
    if not value:
        return current
    stamp = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp if current is None or stamp > current else current


def _load_hashes(session: Session, name: str, ids: list[str]) -> dict[str, tuple[str | None, bool]]:
    query = core_select(
        TRACKED_RECORDS.c.crm_id, TRACKED_RECORDS.c.fields_hash, TRACKED_RECORDS.c.flagged
    ).where(TRACKED_RECORDS.c.crm_object == name, TRACKED_RECORDS.c.crm_id.in_(ids))
    return {crm_id: (digest, flagged) for crm_id, digest, flagged in session.execute(query)}


def _load_tracked(unit: _Unit, name: str, ids: list[str]) -> dict[str, _Tracked]:
    """The chunk's tracked rows; one this unit already holds (and may have decided on) is not re-read."""
    missing = [crm_id for crm_id in ids if (name, crm_id) not in unit.tracked]
    columns = (
        TRACKED_RECORDS.c.id,
        TRACKED_RECORDS.c.crm_id,
        TRACKED_RECORDS.c.external_id,
        TRACKED_RECORDS.c.fields_hash,
    )
    query = core_select(*columns, TRACKED_RECORDS.c.snapshot, TRACKED_RECORDS.c.flagged).where(
        TRACKED_RECORDS.c.crm_object == name, TRACKED_RECORDS.c.crm_id.in_(missing)
    )
    for row_id, crm_id, external_id, digest, snapshot, flagged in unit.session.execute(query):
        unit.tracked[(name, crm_id)] = _Tracked(name, crm_id, row_id, external_id, digest, snapshot, flagged)
    return {crm_id: unit.tracked[(name, crm_id)] for crm_id in ids if (name, crm_id) in unit.tracked}


def _load_job_states(session: Session, external_ids: list[str]) -> dict[str, str | None]:
    """The job state of every tracked record in a chunk, in one query (None: Dispatch reported none yet)."""
    found: dict[str, str | None] = dict.fromkeys(external_ids)
    if external_ids:
        query = core_select(ENTITY_STATES.c.external_id, ENTITY_STATES.c.state).where(
            ENTITY_STATES.c.kind == "job", ENTITY_STATES.c.external_id.in_(external_ids)
        )
        found.update({external_id: state for external_id, state in session.execute(query)})
    return found


def _write_tracked(session: Session, decided: Iterable[_Tracked]) -> None:
    """A unit's decisions in one INSERT and one UPDATE per set of changed columns (executemany each)."""
    new: list[dict[str, Any]] = []
    updates: dict[frozenset[str], list[dict[str, Any]]] = {}
    for tracked in decided:
        if tracked.id is None:  # every column given: one executemany needs the same keys in every row
            new.append(
                {"crm_object": tracked.crm_object, "crm_id": tracked.crm_id, **tracked.columns(_WRITTEN)}
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


def _flagged_now(spec: ObjectSpec, row: Mapping[str, Any]) -> bool:
    """Whether the record should be in Dispatch: flagged and not deleted."""
    return spec.flag.is_set(row) and row.get("IsDeleted") is not True


def _decide(
    unit: _Unit,
    name: str,
    spec: ObjectSpec,
    row: Mapping[str, Any],
    tracked: _Tracked | None,
    jobs: Mapping[str, str | None],
    digest: str | None = None,
) -> _Change | None:
    """The heart of change detection: returns the change to publish, or None."""
    session, crm_id = unit.session, str(row["Id"])
    if spec.pending:
        enqueue_update(
            session, name, crm_id, {spec.pending.field: spec.pending.clear_value}, source="pending"
        )
    deleted = row.get("IsDeleted") is True
    flagged = _flagged_now(spec, row)
    policy = spec.on_delete if deleted else spec.on_unflag
    if deleted and tracked and tracked.flagged:
        _log_deletion(session, name, crm_id, tracked, policy)
    if not flagged and not (tracked and tracked.flagged and policy == "cancel"):
        if tracked and tracked.flagged:
            tracked.set(flagged=False)
        return None
    digest = digest or relevant_hash(spec, row)
    if tracked and tracked.flagged == flagged and tracked.fields_hash == digest:
        return None  # nothing relevant changed (this is where write-back echoes stop)
    if tracked is None:
        tracked = unit.tracked[(name, crm_id)] = _Tracked(crm_object=name, crm_id=crm_id)
    try:
        records = build_records(spec, row)
    except RecordBuildError as exc:
        _refuse(unit, tracked, digest, flagged, f"cannot map {name} {crm_id}: {exc}")
        return None
    primary_type = spec.primary_record().type
    primary = next((r for r in records if r["record_type"] == primary_type), None)
    if primary is None:
        message = f"{name} {crm_id} yields no {primary_type} record (its external id is empty)"
        _refuse(unit, tracked, digest, flagged, message)
        return None
    if not flagged:
        primary["record"]["status"] = "canceled"
    refusal = _validate_request(session, tracked, primary, jobs)
    if refusal:
        _refuse(unit, tracked, digest, flagged, f"{name} {crm_id}: {refusal}; not sent to Dispatch")
        return None
    snapshot = relevant_snapshot(spec, row)
    snapshot[STATUS_KEY] = primary["record"].get("status")
    snapshot[ORG_KEY] = primary["record"].get("external_organization_id")
    if tracked.snapshot and tracked.snapshot.get(STATUS_KEY) == snapshot[STATUS_KEY]:
        # unchanged status: no request, no regression of Dispatch's state
        primary["record"].pop("status", None)
    external_id = primary["record"]["external_id"]
    tracked.set(
        external_id=external_id, fields_hash=digest, snapshot=snapshot, flagged=flagged, published_at=utcnow()
    )
    return _Change(name, crm_id, (primary_type, external_id), records, tracked)


def _validate_request(
    session: Session, tracked: _Tracked, primary: Mapping[str, Any], jobs: Mapping[str, str | None]
) -> str | None:
    """Strict policy: a status or provider change the CRM asks for must be possible from the job's state."""
    if primary["record_type"] != "job" or not tracked.snapshot:
        return None
    record = primary["record"]
    if record["external_id"] in jobs:
        state = jobs[record["external_id"]]
    else:  # the mapping now derives another external id than the one tracked: look it up
        state = _load_job_states(session, [record["external_id"]])[record["external_id"]]
    current = state or tracked.snapshot.get(STATUS_KEY)
    requested = record.get("status")
    if requested and requested != tracked.snapshot.get(STATUS_KEY) and requested != current:
        try:
            request_change("job", EntityState(state=current), requested, at=utcnow())
        except StateMachineError as exc:
            return str(exc)
    old_org, new_org = tracked.snapshot.get(ORG_KEY), record.get("external_organization_id")
    if old_org and new_org and old_org != new_org and "canceled" not in allowed_targets("job", current):
        return (
            f"job cannot be reassigned from provider {old_org} to {new_org} while it is {current} "
            "(reassigning cancels it for the old provider)"
        )
    return None


def _log_deletion(session: Session, name: str, crm_id: str, tracked: _Tracked, policy: str) -> None:
    effect = "its job is sent canceled" if policy == "cancel" else "nothing is sent (on_delete: ignore)"
    write_log(
        session,
        f"{name} {crm_id} was deleted in the CRM; {effect}",
        direction="out",
        entity=tracked.crm_object,
        crm_record_id=crm_id,
        external_id=tracked.external_id,
    )


def _refuse(unit: _Unit, tracked: _Tracked, digest: str, flagged: bool, message: str) -> None:
    """Keep the hash so the same refused change is not retried every cycle; the next real edit is."""
    unit.report.refused += 1
    tracked.set(fields_hash=digest, flagged=flagged, last_error=message)
    report_error(
        unit.session,
        unit.ctx.mapping,
        tracked.crm_object,
        tracked.crm_id,
        tracked.external_id,
        message,
        source="publisher",
        msg_id=None,
        entity=tracked.crm_object,
    )


# --- batching and the outbox ----------------------------------------------------------------------------
def _ordered_records(changes: list[_Change]) -> list[tuple[dict[str, Any], list[_Change]]]:
    """Dedupe canonical records by (type, external id), newest content wins, in dependency order."""
    merged: dict[tuple[str, str], tuple[dict[str, Any], list[_Change]]] = {}
    for change in changes:
        for record in change.records:
            key = (record["record_type"], record["record"]["external_id"])
            sources = merged[key][1] if key in merged else []
            sources.append(change)  # in place: a provider shared by 500 work orders is not copied 500 times
            merged[key] = (record, sources)
    order = {name: index for index, name in enumerate(RECORD_TYPES)}
    return sorted(merged.values(), key=lambda item: order.get(item[0]["record_type"], len(order)))


def _batches(changes: list[_Change], size: int) -> Iterator[tuple[list[dict[str, Any]], list[Any]]]:
    for chunk in chunked(_ordered_records(changes), size):
        yield [record for record, _ in chunk], [sources for _, sources in chunk]


def _write_outbox(
    session: Session, changes: list[_Change], size: int, report: PublishReport, built: dict[str, list[Any]]
) -> None:
    """Batches and their items in a few INSERTs (a change set of 1,000 records has over 1,000 items)."""
    now = utcnow()
    items: list[dict[str, Any]] = []
    for records, sources in _batches(changes, size):
        message_id = str(uuid.uuid4())
        session.add(
            OutboxBatch(message_id=message_id, payload=records, record_count=len(records), created_at=now)
        )
        for position, (record, changed) in enumerate(zip(records, sources, strict=True)):
            key = (record["record_type"], record["record"]["external_id"])
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
                    change.tracked.set(last_message_id=message_id)
        report.batches_created.append(message_id)
        built[message_id] = records
        report.canonical_records += len(records)
    session.flush()
    for chunk in chunked(items, ROWS_PER_COMMIT):
        # the Core table, not the ORM entity: a plain executemany, without the ORM's per-row bookkeeping
        session.execute(insert(OUTBOX_ITEMS), chunk)


def _send_pending(ctx: SyncContext, report: PublishReport, built: dict[str, list[Any]] | None = None) -> None:
    """Send pending batches oldest first; stop at the first failure so batches stay in order.

    `built` holds the payloads this cycle committed: those are sent as built, not decoded back from the
    store (a batch left by a crash or a failed send is read back). A sent batch is recorded (and, with
    acks off, confirmed) by one worker thread while the next batch is on the wire: the store work of one
    overlaps the round trip of the next, and the worker's single thread keeps the records in send order.
    A crash before a batch is recorded re-sends it with the same MessageId, as before."""
    with session_scope(ctx.engine) as session:
        pending = session.exec(
            select(OutboxBatch.message_id)
            .where(col(OutboxBatch.status) == "pending")
            .order_by(col(OutboxBatch.created_at), col(OutboxBatch.message_id))
        ).all()
    if not pending:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="publish-record") as recorder:
        recorded: list[Future[None]] = []
        for message_id in pending:
            if any(future.done() and future.exception() for future in recorded):
                break  # the store refused a record: stop sending, the error is raised below
            payload = built.pop(message_id, None) if built is not None else None
            if not _send_one(ctx, message_id, report, payload, recorder, recorded):
                break
        for future in recorded:
            future.result()


def _send_one(
    ctx: SyncContext,
    message_id: str,
    report: PublishReport,
    payload: list[Any] | None,
    recorder: ThreadPoolExecutor,
    recorded: list[Future[None]],
) -> bool:
    this_batch = OUTBOX_BATCHES.c.message_id == message_id
    if payload is None:
        with session_scope(ctx.engine) as session:
            payload = list(
                session.execute(core_select(OUTBOX_BATCHES.c.payload).where(this_batch)).scalar() or []
            )
    try:
        ctx.dispatch.send_records(payload, message_id=message_id)
    except ConnectorError as exc:
        for future in recorded:  # the batches sent before this one are recorded first
            future.result()
        with session_scope(ctx.engine) as session:
            session.execute(
                update(OUTBOX_BATCHES)
                .where(this_batch)
                .values(attempts=OUTBOX_BATCHES.c.attempts + 1, last_error=str(exc))
            )
            write_log(
                session,
                f"sending batch failed, will retry with the same MessageId: {exc}",
                level="error",
                direction="out",
                msg_id=message_id,
                details={"records": len(payload), "retriable": exc.retriable},
            )
        report.send_errors.append(str(exc))
        return False
    recorded.append(recorder.submit(_record_sent, ctx, message_id))
    report.requests_sent += 1
    return True


def _record_sent(ctx: SyncContext, message_id: str) -> None:
    with session_scope(ctx.engine) as session:
        # Column UPDATEs, not ORM loads: the payload (up to batch_size records) is not read back.
        session.execute(
            update(OUTBOX_BATCHES)
            .where(OUTBOX_BATCHES.c.message_id == message_id, OUTBOX_BATCHES.c.status == "pending")
            .values(attempts=OUTBOX_BATCHES.c.attempts + 1, status="sent", sent_at=utcnow(), last_error=None)
        )
        if not ctx.settings.dispatch_acks:
            confirm_batch_on_http_200(session, ctx.mapping, message_id)

"""CRM -> Dispatch: find flagged records whose relevant fields changed, and publish them as change sets.
Long (over 500 lines) because the cycle, the by-id publish of change events and the decision rules share
one unit of work and read best together.

One cycle per mapped CRM object: one SOQL query over the SystemModstamp watermark (re-reading a lookback
window, because a transaction that commits late can carry an older SystemModstamp than one already seen),
a hash of the relevant fields against the stored snapshot to decide what really changed, strict
validation of the status the CRM asks for, then the change set is cut into batches. Batches, snapshots
and the watermark commit together into the outbox before anything is sent, so a crash re-sends the same
MessageId instead of losing or doubling a batch. The connector's own write-backs touch no relevant field,
so they hash the same and never echo.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from sqlmodel import Session

from connector.mapping import (
    ObjectSpec,
    build_records,
    record_identity,
    relevant_hash,
    relevant_snapshot,
    soql_select,
)
from connector.mapping_blobs import BlobRefused, resolve_blobs
from connector.mapping_values import RecordBuildError
from connector.ports import Destination
from statemachines import EntityState, StateMachineError, allowed_targets, request_change
from sync.context import SyncContext
from sync.outbound.child_changes import with_changed_parents
from sync.outbound.confirmation import report_error
from sync.outbound.outbox import PublishReport, batches, send_pending, write_outbox
from sync.outbound.tracked import (
    ORG_KEY,
    STATUS_KEY,
    Tracked,
    load_hashes,
    load_job_states,
    load_tracked,
    write_tracked,
)
from sync.store.db import chunked
from sync.store.dbtypes import utcnow
from sync.store.locks import single_instance
from sync.store.models import (
    Watermark,
)
from sync.store.synclog import write_log
from sync.writeback.queue import enqueue_update

ROWS_PER_COMMIT = 5000
ROWS_PER_DECISION = 500  # rows whose tracked state is loaded in one query
BACKFILL_ROWS_PER_COMMIT = 2000
# Salesforce caps a call's URI plus headers at 16,384 bytes (414/431 beyond): `WHERE Id IN (...)` queries are
# cut so their encoded URI stays under this, leaving the rest for the headers (the session token among them).
MAX_QUERY_URI = 8000
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# One publisher per process: the lease below is re-entrant for its own holder (host, pid), so the scheduled
# cycle and the change-event listener (sync/outbound/streaming.py) would otherwise run side by side.
_IN_PROCESS = threading.Lock()


@dataclass
class _Change:
    """What one CRM row sends to one back end (an outbox Source)."""

    system: str
    crm_object: str
    crm_id: str
    primary: tuple[str, str]
    records: list[dict[str, Any]]
    tracked: Tracked | None  # None for the cancel a moved record leaves on its old back end

    def set_message_id(self, message_id: str) -> None:
        if self.tracked is not None:
            self.tracked.set(last_message_id=message_id)


def publish_changes(
    ctx: SyncContext,
    *,
    dry_run: bool = False,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
    rows_per_commit: int = ROWS_PER_COMMIT,
    only: Mapping[str, Iterable[str]] | None = None,
    encoding: str = "json",
) -> PublishReport:
    """Run one publish cycle: re-send what a crash left pending, then collect and send new change sets.

    Rows are decided and committed to the outbox in units of about `rows_per_commit` rows (across objects, so
    a small cycle is one change set and one request), which keeps memory flat however many records are
    flagged;
    an interrupted cycle loses at most the unit in hand, and its rerun skips by hash everything already
    published. A watermark commits with, or after, the last unit of its object.

    `only` ({object: [record ids]}, from change events) publishes just those records, read by id through
    queryAll (a deleted one follows `on_delete`), with the same decisions and outbox; no watermark moves, so
    the next cycle still re-reads everything since the last one. `encoding` ("csv": a first load as the
    playbook's CSV) is how the batches this cycle commits are sent."""
    report = PublishReport(encoding=encoding)
    if dry_run:
        _run_cycle(ctx, report, full, progress, rows_per_commit, dry_run=True, only=only)
        return report
    with _IN_PROCESS, single_instance(ctx.engine, "publisher"):
        send_pending(ctx, report)
        _run_cycle(ctx, report, full, progress, rows_per_commit, dry_run=False, only=only)
    return report


def rows_by_id(
    crm: Any,
    object_name: str,
    ids: Iterable[str],
    select: str,
    *,
    where: str = "",
    include_deleted: bool = True,
) -> Iterator[dict[str, Any]]:
    """Rows of `object_name` by record id: `<select> WHERE Id IN (...)[ AND <where>]`, one query per slice of
    ids short enough for Salesforce's URI limit, through queryAll unless `include_deleted` is false."""
    unique = list(dict.fromkeys(ids))
    if bad := [i for i in unique if not _RECORD_ID.fullmatch(i)]:
        raise ValueError(f"{object_name}: not Salesforce record ids: {', '.join(map(repr, bad[:5]))}")
    tail = f" AND {where}" if where else ""
    room = MAX_QUERY_URI - len(quote_plus(f"{select} WHERE Id IN (){tail}")) - 100  # 100: path and `?q=`
    chunk: list[str] = []
    used = 0
    for crm_id in [*unique, ""]:  # quote_plus("'<id>', ") is %27<id>%27%2C+: the id and 10 characters
        if chunk and (not crm_id or used + len(crm_id) + 10 > room):
            quoted = ", ".join(f"'{i}'" for i in chunk)
            yield from crm.query_iter(
                f"{select} WHERE Id IN ({quoted}){tail}", include_deleted=include_deleted
            )
            chunk, used = [], 0
        chunk.append(crm_id)
        used += len(crm_id) + 10


class _Unit:
    """One transaction's worth of decided rows and their changes."""

    def __init__(
        self, ctx: SyncContext, report: PublishReport, dry_run: bool, built: dict[str, list[Any]]
    ) -> None:
        self.ctx, self.report, self.dry_run, self.built = ctx, report, dry_run, built
        self.session = Session(ctx.engine, expire_on_commit=False)
        self.changes: list[_Change] = []
        # tracked rows loaded or created in this unit, by (object, id); written at commit
        self.tracked: dict[tuple[str, str], Tracked] = {}
        self.rows = 0

    def destination(self, system: str) -> Destination:
        return self.ctx.backend(system).destination

    def commit(self) -> None:
        size = self.ctx.settings.batch_size
        destinations = {c.system: self.destination(c.system) for c in self.changes}
        if self.dry_run:
            self.report.payloads.extend(
                records for _, records, _ in batches(self.changes, destinations, size)
            )
            self.session.rollback()
        else:
            write_outbox(self.session, self.changes, destinations, size, self.report, self.built)
            write_tracked(self.session, self.tracked.values())
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
    only: Mapping[str, Iterable[str]] | None = None,
) -> None:
    built: dict[str, list[Any]] = {}  # payloads committed this cycle, by MessageId: sent without a re-read
    unit = _Unit(ctx, report, dry_run, built)
    try:
        for name, spec in _objects(ctx, only):
            newest: datetime | None = None
            if only is None:
                query, include_deleted = _query_for(ctx, unit.session, name, spec, full)
                rows = ctx.crm.query_iter(query, include_deleted=include_deleted)
                # then the published parents of changed child rows (sync.outbound.child_changes)
                rows = with_changed_parents(ctx, unit.session, name, spec, full, rows, _rows_of)
            else:
                rows = _rows_of(ctx, name, spec, only[name])
            for chunk in chunked(rows, min(rows_per_commit, ROWS_PER_DECISION)):
                newest = _later(newest, _decide_rows(unit, name, spec, chunk))
                unit.rows += len(chunk)
                if progress:
                    progress(len(chunk))
                if unit.rows >= rows_per_commit:
                    unit.commit()
                    if not dry_run:
                        send_pending(ctx, report, built)
                    unit = _Unit(ctx, report, dry_run, built)
            if only is None:
                _advance_watermark(unit.session, name, spec, newest, getattr(ctx.crm, "server_time", None))
        unit.commit()
    except BaseException:
        unit.session.rollback()
        unit.session.close()
        raise
    if not dry_run:
        send_pending(ctx, report, built)


def _objects(ctx: SyncContext, only: Mapping[str, Iterable[str]] | None) -> list[tuple[str, ObjectSpec]]:
    if only is None:
        return list(ctx.mapping.objects.items())
    if unknown := sorted(set(only) - set(ctx.mapping.objects)):
        raise ValueError(f"not mapped: {', '.join(unknown)} (mapped: {', '.join(ctx.mapping.objects)})")
    return [(name, spec) for name, spec in ctx.mapping.objects.items() if name in only]


def _rows_of(ctx: SyncContext, name: str, spec: ObjectSpec, ids: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The rows an incremental cycle would read of these records: deleted ones too (queryAll, IsDeleted),
    or only those with the pending flag set (Dispatch Pending mode)."""
    if spec.pending:
        pending = f"{spec.pending.field} = true"
        return rows_by_id(ctx.crm, name, ids, soql_select(spec, name), where=pending, include_deleted=False)
    return rows_by_id(ctx.crm, name, ids, soql_select(spec, name, extra=("IsDeleted",)))


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
    known = load_hashes(unit.session, name, ids)
    for crm_id in ids:  # a record read twice in one unit: its first decision is not in the store yet
        if decided := unit.tracked.get((name, crm_id)):
            known[crm_id] = (decided.fields_hash, decided.flagged)
    digests: dict[str, str] = {}
    todo = [row for row in rows if not _unchanged(spec, row, known.get(str(row["Id"])), digests)]
    tracked = load_tracked(unit.session, unit.tracked, name, [str(row["Id"]) for row in todo]) if todo else {}
    jobs = load_job_states(unit.session, [(t.system, t.external_id) for t in tracked.values()])
    for row in todo:
        crm_id = str(row["Id"])
        changes = _decide(unit, name, spec, row, tracked.get(crm_id), jobs, digests.get(crm_id))
        if changes:
            unit.report.changed += 1
            unit.changes.extend(changes)
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
    encoding: str = "json",
) -> PublishReport:
    """First load of every flagged record (`publish --all`, `--csv`: sent as CSV), committed and sent chunk
    by chunk."""
    return publish_changes(
        ctx, full=True, progress=progress, rows_per_commit=rows_per_commit, encoding=encoding
    )


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


def _flagged_now(spec: ObjectSpec, row: Mapping[str, Any]) -> bool:
    """Whether the record should be in Dispatch: flagged and not deleted."""
    return spec.flag.is_set(row) and row.get("IsDeleted") is not True


def _decide(
    unit: _Unit,
    name: str,
    spec: ObjectSpec,
    row: Mapping[str, Any],
    tracked: Tracked | None,
    jobs: Mapping[tuple[str, str], str | None],
    digest: str | None = None,
) -> list[_Change]:
    """The heart of change detection: the changes to publish (none, one, or a move's cancel and create)."""
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
        return []
    digest = digest or relevant_hash(spec, row)
    if tracked and tracked.flagged == flagged and tracked.fields_hash == digest:
        return []  # nothing relevant changed (this is where write-back echoes stop)
    if tracked is None:
        tracked = unit.tracked[(name, crm_id)] = Tracked(crm_object=name, crm_id=crm_id)
    system, moved_from = _route(unit, spec, row, tracked, flagged)
    if system is None:
        route = spec.route.field if spec.route else "route"
        message = f"{name} {crm_id}: its {route} value {row.get(route)!r} routes to no back end; not sent"
        _refuse(unit, tracked, digest, flagged, message)
        return []
    try:
        records = build_records(spec, row, system)
    except RecordBuildError as exc:
        _refuse(unit, tracked, digest, flagged, f"cannot map {name} {crm_id}: {exc}")
        return []
    primary_type = spec.primary_record(system).type
    primary = next((r for r in records if r["record_type"] == primary_type), None)
    if primary is None:
        message = f"{name} {crm_id} yields no {primary_type} record (its external id is empty)"
        _refuse(unit, tracked, digest, flagged, message)
        return []
    destination = unit.destination(system)
    fields = destination.job_fields
    if not flagged:
        primary["record"][fields.status] = "canceled"
    asked = _link_field_born_job(tracked, system, destination, primary)
    if moved_from:
        refusal = _validate_move(tracked, moved_from, system, jobs)
    else:
        refusal = _validate_request(session, tracked, system, destination, primary, jobs)
    if refusal:
        _refuse(unit, tracked, digest, flagged, f"{name} {crm_id}: {refusal}; not sent to {system}")
        return []
    if spec.has_blobs and not unit.dry_run:
        try:  # file bodies downloaded last: a refused request downloads nothing
            resolve_blobs(records, unit.ctx.crm.version_data)
        except BlobRefused as exc:
            _refuse(unit, tracked, digest, flagged, f"{name} {crm_id}: {exc}; not sent to {system}")
            return []
    snapshot = relevant_snapshot(spec, row)
    snapshot[STATUS_KEY] = primary["record"].get(fields.status, asked)
    snapshot[ORG_KEY] = primary["record"].get(fields.provider)
    if not moved_from and tracked.snapshot and tracked.snapshot.get(STATUS_KEY) == snapshot[STATUS_KEY]:
        # unchanged status: no request, no regression of the field's state
        primary["record"].pop(fields.status, None)
    changes = (
        [_cancel_on(unit, moved_from, tracked, spec.primary_record(moved_from).type, system)]
        if moved_from
        else []
    )
    external_id = record_identity(primary)
    tracked.set(
        system=system,
        external_id=external_id,
        fields_hash=digest,
        snapshot=snapshot,
        flagged=flagged,
        published_at=utcnow(),
    )
    return [*changes, _Change(system, name, crm_id, (primary_type, external_id), records, tracked)]


def _link_field_born_job(
    tracked: Tracked, system: str, destination: Destination, primary: dict[str, Any]
) -> str | None:
    """A CRM record the connector created for a job born in the field, published for the first time: its
    job is that job (the external id it was created under), not a new one; and the field's state stands,
    so the CRM's mapped status is not sent now (it is kept as asked: a later change is a request).
    Returns the status left out, None otherwise."""
    # a stored link the publisher never wrote: no snapshot (every publish stores one), an external id (the
    # write-back's create link; a refused first publish stores none)
    born_in_field = tracked.id is not None and tracked.snapshot is None and tracked.system == system
    if not (born_in_field and tracked.external_id and primary["record_type"] == destination.job_record_type):
        return None
    primary["record"]["external_id"] = tracked.external_id
    status = primary["record"].pop(destination.job_fields.status, None)
    return str(status) if status is not None else None


def _route(
    unit: _Unit, spec: ObjectSpec, row: Mapping[str, Any], tracked: Tracked, flagged: bool
) -> tuple[str | None, str | None]:
    """(the back end this change goes to, the one it moves away from). A cancel (flag cleared, record
    deleted) goes where the record lives; a published record whose route changed moves."""
    current = tracked.system if tracked.flagged and tracked.external_id else None
    if not flagged:
        return current or spec.backend_for(row, unit.ctx.default_backend), None
    target = spec.backend_for(row, unit.ctx.default_backend)
    return target, current if current and target and current != target else None


def _validate_move(
    tracked: Tracked, old: str, new: str, jobs: Mapping[tuple[str, str], str | None]
) -> str | None:
    """A move cancels the job on the old back end: refused when that job can no longer be canceled."""
    state = jobs.get((old, str(tracked.external_id)))
    if state and state != "canceled" and "canceled" not in allowed_targets("job", state):
        return f"cannot move from {old} to {new}: its job on {old} is {state} and can no longer be canceled"
    return None


def _cancel_on(unit: _Unit, system: str, tracked: Tracked, primary_type: str, new: str) -> _Change:
    """The record's job canceled on the back end it leaves; logged so support sees the move."""
    external_id = str(tracked.external_id)
    status = unit.destination(system).job_fields.status
    write_log(
        unit.session,
        f"{tracked.crm_object} {tracked.crm_id} moves from {system} to {new}: its job is canceled on "
        f"{system} and created on {new}",
        direction="out",
        entity=tracked.crm_object,
        crm_record_id=tracked.crm_id,
        external_id=external_id,
    )
    record = {"record_type": primary_type, "record": {"external_id": external_id, status: "canceled"}}
    return _Change(system, tracked.crm_object, tracked.crm_id, (primary_type, external_id), [record], None)


def _validate_request(
    session: Session,
    tracked: Tracked,
    system: str,
    destination: Destination,
    primary: Mapping[str, Any],
    jobs: Mapping[tuple[str, str], str | None],
) -> str | None:
    """Strict policy: a status or provider change the CRM asks for must be possible from the job's state."""
    if primary["record_type"] != destination.job_record_type or not tracked.snapshot:
        return None
    record, fields = primary["record"], destination.job_fields
    key = (system, record["external_id"])
    # the mapping may now derive another external id than the one tracked: look that one up
    state = jobs[key] if key in jobs else load_job_states(session, [key])[key]
    current = state or tracked.snapshot.get(STATUS_KEY)
    requested = record.get(fields.status)
    if requested and requested != tracked.snapshot.get(STATUS_KEY) and requested != current:
        try:
            request_change("job", EntityState(state=current), requested, at=utcnow())
        except StateMachineError as exc:
            return str(exc)
    old_org, new_org = tracked.snapshot.get(ORG_KEY), record.get(fields.provider)
    if old_org and new_org and old_org != new_org and "canceled" not in allowed_targets("job", current):
        return (
            f"job cannot be reassigned from provider {old_org} to {new_org} while it is {current} "
            "(reassigning cancels it for the old provider)"
        )
    return None


def _log_deletion(session: Session, name: str, crm_id: str, tracked: Tracked, policy: str) -> None:
    effect = "its job is sent canceled" if policy == "cancel" else "nothing is sent (on_delete: ignore)"
    write_log(
        session,
        f"{name} {crm_id} was deleted in the CRM; {effect}",
        direction="out",
        entity=tracked.crm_object,
        crm_record_id=crm_id,
        external_id=tracked.external_id,
    )


def _refuse(unit: _Unit, tracked: Tracked, digest: str, flagged: bool, message: str) -> None:
    """Keep the hash so the same refused change is not retried every cycle; the next real edit is."""
    unit.report.refused += 1
    tracked.set(fields_hash=digest, flagged=flagged, last_error=message)
    if tracked.system is None:  # never sent anywhere: kept under the default back end for its hash only
        tracked.set(system=unit.ctx.default_backend)
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

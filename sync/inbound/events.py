"""How what the field reports changes the store: entity state, write-back intents, sync-log rows.

Back ends translate their deliveries into `ReportedEvent`, `RecordResult` and `Notice` (connector.ports);
this module applies them, whatever system they came from. Events are applied leniently
(statemachines.apply_reported): an unexpected transition is applied with a warning, an event older than
the applied one never rolls state back, and an unknown type or attribute is kept (the whole payload stays
in the inbox row) and logged, never fatal. Nothing here does I/O: the caller commits all of one
delivery's effects in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from connector.ports import Notice, RecordResult, Report, ReportedEvent
from statemachines import ApplyResult, EntityState, apply_reported, follow_ups
from sync.inbound.event_context import CrmLink, EventContext, crm_link, external_of_job
from sync.inbound.field_records import (
    on_calendar_event,
    on_form,
    on_payment,
    queue_customer_link,
    read_path,
    write_billing_document,
)
from sync.inbound.messages import on_message
from sync.outbound.confirmation import apply_result
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, TrackedRecord
from sync.store.synclog import one_loud_row, write_log
from sync.writeback.files import enqueue_billing_pdf, enqueue_note_file
from sync.writeback.queue import enqueue_create, enqueue_update


def apply_report(ctx: EventContext, report: Report) -> None:
    """Apply one report. Whatever is wrong with it reaches support as one warning or error row."""
    with one_loud_row(ctx.session):
        if report.problems:
            entity = report.kind if isinstance(report, ReportedEvent) else _entity_name(report)
            _warn(
                ctx,
                entity,
                f"{entity} event has attributes of an unexpected type, ignored: {'; '.join(report.problems)}",
            )
        if isinstance(report, RecordResult):
            apply_result(ctx.session, ctx.mapping, report, source=ctx.msg_id, label=ctx.label)
        elif isinstance(report, Notice):
            _notice(ctx, report)
        else:
            HANDLERS.get(report.kind, _unknown_kind)(ctx, report)


def _entity_name(report: RecordResult | Notice) -> str | None:
    return report.record_type if isinstance(report, RecordResult) else report.entity


def _notice(ctx: EventContext, notice: Notice) -> None:
    """One row; with the CRM record it concerns when its external id leads to one, so `log --record` finds
    an auto-assign failure or an unknown event type by the work order."""
    link = crm_link(ctx, notice.external_id)
    write_log(
        ctx.session,
        notice.message,
        level=notice.level,
        direction="in",
        entity=notice.entity,
        crm_record_id=link[1] if link else None,
        external_id=notice.external_id,
        msg_id=notice.message_id or ctx.msg_id,
        details=dict(notice.details) if notice.details is not None else None,
    )


# --- entity state and CRM links -------------------------------------------------------------------------
def _entity(
    ctx: EventContext, kind: str, external_id: str | None, remote_id: str | None
) -> EntityStateRow | None:
    session, system = ctx.session, ctx.system
    row = None
    if external_id:
        row = session.exec(
            select(EntityStateRow)
            .where(
                col(EntityStateRow.system) == system,
                col(EntityStateRow.kind) == kind,
                col(EntityStateRow.external_id) == external_id,
            )
            .with_for_update()  # PostgreSQL workers: read-modify-write of one entity is serialised
        ).first()
    if row is None and remote_id is not None:
        row = session.exec(
            select(EntityStateRow)
            .where(
                col(EntityStateRow.system) == system,
                col(EntityStateRow.kind) == kind,
                col(EntityStateRow.remote_id) == remote_id,
            )
            .with_for_update()
        ).first()
    if row is None:
        key = external_id or (f"{system}:{remote_id}" if remote_id is not None else None)
        if key is None:
            return None
        row = EntityStateRow(system=system, kind=kind, external_id=key)
    if remote_id is not None:
        row.remote_id = remote_id
    session.add(row)
    return row


def _apply(
    ctx: EventContext, row: EntityStateRow, status: str, updated_at: datetime | None, reason: str | None
) -> ApplyResult:
    milestones = {k: _parse_iso(v) for k, v in (row.milestones or {}).items()}
    state = EntityState(
        row.state, row.status_message, {k: v for k, v in milestones.items() if v}, row.updated_at
    )
    result = apply_reported(row.kind, state, status, updated_at=updated_at, reason=reason)
    row.state, row.status_message, row.updated_at = state.state, state.status_message, state.updated_at
    row.milestones = {k: v.isoformat() for k, v in state.milestones.items()}
    ctx.session.add(row)
    if result.warning:
        _log_entity(ctx, row, result.warning, level="warning")
    elif result.changed:
        reason = f" ({row.status_message})" if row.status_message else ""
        _log_entity(
            ctx, row, f"{row.kind} {row.external_id}: {result.from_state or 'new'} -> {row.state}{reason}"
        )
    return result


def _log_entity(ctx: EventContext, row: EntityStateRow, message: str, *, level: str = "info") -> None:
    write_log(
        ctx.session,
        message,
        level=level,
        direction="in",
        entity=row.kind,
        crm_record_id=row.crm_id,
        external_id=row.external_id,
        msg_id=ctx.msg_id,
    )


def _parse_iso(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _job_writeback(
    ctx: EventContext,
    link: CrmLink,
    row: EntityStateRow,
    stamped: tuple[str, ...],
    extra: Mapping[str, Any] | None = None,
) -> None:
    crm_object, crm_id, spec = link
    wb = spec.write_back
    fields: dict[str, Any] = {}
    if wb.status and row.kind == "job":
        fields[wb.status] = row.state
    if wb.status_reason and row.kind == "job":
        fields[wb.status_reason] = row.status_message or None
    for milestone in stamped:
        name = wb.milestones.get(milestone)
        if name and row.milestones and milestone in row.milestones:
            fields[name] = row.milestones[milestone]
    if wb.last_updated_from_dispatch:
        fields[wb.last_updated_from_dispatch] = utcnow().isoformat()
    fields.update(extra or {})
    enqueue_update(ctx.session, crm_object, crm_id, fields, source=ctx.msg_id)


def _link_crm(row: EntityStateRow, link: CrmLink | None) -> None:
    if link and not row.crm_id:
        row.crm_object, row.crm_id = link[0], link[1]


# --- handlers ---------------------------------------------------------------------------------------------
def on_job(ctx: EventContext, event: ReportedEvent) -> None:
    row = _entity(ctx, "job", event.external_id, event.remote_id)
    if row is None:
        _unroutable(ctx, event)
        return
    link = crm_link(ctx, row.external_id)
    _link_crm(row, link)
    result = _apply(ctx, row, event.status or row.state or "offered", event.updated_at, event.reason)
    if link is None:
        _job_without_crm_record(ctx, row, event)
        return
    if result.changed or result.stamped:  # a late event may still prove a missing milestone
        _job_writeback(ctx, link, row, result.stamped)


def _job_without_crm_record(ctx: EventContext, row: EntityStateRow, event: ReportedEvent) -> None:
    """A job born in the field: create the CRM record when the mapping allows it, else log it for support."""
    for name, spec in ctx.mapping.objects.items():
        if spec.primary_record().type == "job" and spec.inbound_jobs.enabled and row.state == "offered":
            fields = {
                crm: read_path(event.attributes, attr) for crm, attr in spec.inbound_jobs.fields.items()
            }
            fields.update(spec.inbound_jobs.constants)
            if spec.write_back.status:
                fields[spec.write_back.status] = row.state
            enqueue_create(ctx.session, name, row.external_id, fields, system=ctx.system, source=ctx.msg_id)
            queue_customer_link(ctx, name, row.external_id, event.attributes)
            _log_entity(
                ctx, row, f"job {row.external_id} was created in {ctx.label}; creating a {name} for it"
            )
            return
    _log_entity(
        ctx,
        row,
        f"job {row.external_id} matches no CRM record and the mapping does not create one",
        level="warning",
    )


def _path(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def on_appointment(ctx: EventContext, event: ReportedEvent) -> None:
    row = _entity(ctx, "appointment", event.external_id, event.remote_id)
    if row is None or not event.status:
        _unroutable(ctx, event)
        return
    result = _apply(ctx, row, event.status, event.updated_at, event.reason)
    job_external = event.parent_external_id or external_of_job(ctx, event.parent_remote_id)
    link = crm_link(ctx, job_external)
    _link_crm(row, link)
    if link is None:
        _no_link(ctx, event.kind, row.external_id, job_external)
        return
    if result.stale and not result.stamped:
        return
    job_row = _entity(ctx, "job", job_external, event.parent_remote_id)
    job_stamped: tuple[str, ...] = ()
    for follow in follow_ups("appointment", row.state) if result.changed else ():
        if follow.relation == "parent_job" and job_row is not None:
            job_stamped = _apply(ctx, job_row, follow.status, event.updated_at, None).stamped
    stamped = tuple(m for m in result.stamped if m in ("enroute", "started")) + job_stamped
    if job_row is not None:
        _link_crm(job_row, link)
        merged = dict(job_row.milestones or {})
        merged.update(
            {m: row.milestones[m] for m in result.stamped if row.milestones and m in row.milestones}
        )
        job_row.milestones = merged
        _job_writeback(ctx, link, job_row, stamped, _window(link, event, result.stale))


def _window(link: CrmLink, event: ReportedEvent, stale: bool) -> dict[str, Any]:
    """The appointment window onto the job's CRM record (not from a stale event)."""
    wb = link[2].write_back
    window: dict[str, Any] = {}
    if wb.appointment_start and event.window_start and not stale:
        window[wb.appointment_start] = event.window_start.isoformat()
    if wb.appointment_end and event.window_end and not stale:
        window[wb.appointment_end] = event.window_end.isoformat()
    return window


def on_offer(ctx: EventContext, event: ReportedEvent) -> None:
    """An offer (match) of a job we sent: its state, and per the mapping the work order's offer status,
    reason and milestones (`write_back.offer_status`, `offer_status_reason`, `offer_milestones`)."""
    row = _entity(ctx, "offer", event.external_id, event.remote_id)
    if row is None or not event.status:
        _unroutable(ctx, event)
        return
    result = _apply(ctx, row, event.status, event.updated_at, event.reason)
    link = crm_link(ctx, row.external_id)
    _link_crm(row, link)
    write_log(
        ctx.session,
        f"offer {row.external_id} is {row.state}",
        direction="in",
        entity="offer",
        crm_record_id=row.crm_id,
        external_id=row.external_id,
        msg_id=ctx.msg_id,
    )
    if link is None or not (result.changed or result.stamped):
        return
    wb = link[2].write_back
    fields: dict[str, Any] = {}
    if wb.offer_status:
        fields[wb.offer_status] = row.state
    if wb.offer_status_reason:
        fields[wb.offer_status_reason] = row.status_message or None
    for milestone in result.stamped:
        name = wb.offer_milestones.get(milestone)
        if name and row.milestones and milestone in row.milestones:
            fields[name] = row.milestones[milestone]
    if fields:
        enqueue_update(ctx.session, link[0], link[1], fields, source=ctx.msg_id)


def on_note(ctx: EventContext, event: ReportedEvent) -> None:
    """Notes and files: state active/deleted, kept as entity rows, written as CRM records if mapped."""
    row = _entity(ctx, event.kind, None, event.remote_id)
    if row is None:
        _unroutable(ctx, event)
        return
    if row.updated_at and event.updated_at and event.updated_at < row.updated_at:
        return  # an older version of the note: keep the newer one
    row.state = event.status or "active"
    row.updated_at = event.updated_at or row.updated_at
    row.attributes = dict(event.attributes)
    job_external = event.parent_external_id
    link = crm_link(ctx, job_external)
    _link_crm(row, link)
    write_log(
        ctx.session,
        f"{event.kind} {row.external_id} on job {job_external} {row.state}: {event.reason}",
        direction="in",
        entity=event.kind,
        crm_record_id=row.crm_id,
        external_id=job_external,
        msg_id=ctx.msg_id,
    )
    if link is not None:
        _job_writeback(ctx, link, EntityStateRow(system=ctx.system, kind=event.kind, external_id=""), ())
        _note_record(ctx, link, row, event.attributes)


def _note_record(ctx: EventContext, link: CrmLink, row: EntityStateRow, values: Mapping[str, Any]) -> None:
    """Create the CRM note record the first time, update it afterwards (creates coalesce until flushed)."""
    enqueue_note_file(ctx, link, values)  # its file, if it has one, stored later by the file job
    notes = link[2].write_back.notes
    if notes is None:
        return
    fields = {crm: values.get(attr) for crm, attr in notes.fields.items()}
    existing = ctx.session.exec(
        select(TrackedRecord).where(
            col(TrackedRecord.crm_object) == notes.object, col(TrackedRecord.external_id) == row.external_id
        )
    ).first()
    if existing is not None:
        enqueue_update(ctx.session, notes.object, existing.crm_id, fields, source=ctx.msg_id)
    else:
        enqueue_create(
            ctx.session,
            notes.object,
            row.external_id,
            {notes.parent_field: link[1], **fields},
            system=ctx.system,
            source=ctx.msg_id,
        )


def on_survey(ctx: EventContext, event: ReportedEvent) -> None:
    reasons = list(event.attributes.get("reasons") or [])
    comments = event.reason or ""
    job_external = event.parent_external_id
    link = crm_link(ctx, job_external)
    write_log(
        ctx.session,
        f"survey for job {job_external}: rating {event.attributes.get('rating')}",
        direction="in",
        entity="surveyresponse",
        crm_record_id=link[1] if link else None,
        external_id=job_external,
        msg_id=ctx.msg_id,
        details={"reasons": reasons, "comments": comments},
    )
    if link is None:
        _no_link(ctx, "surveyresponse", event.remote_id, job_external)
        return
    wb = link[2].write_back
    fields: dict[str, Any] = {}
    if wb.survey_rating:
        fields[wb.survey_rating] = event.attributes.get("rating")
    if wb.survey_comments:
        fields[wb.survey_comments] = (f"[{', '.join(reasons)}] " if reasons else "") + comments
    _job_writeback(ctx, link, EntityStateRow(system=ctx.system, kind="survey", external_id=""), (), fields)


def on_billing_document(ctx: EventContext, event: ReportedEvent) -> None:
    """An estimate or invoice: its state, and per the mapping its own CRM record on the job's record
    (field_records). An older event than the one applied changes neither (no roll back)."""
    kind = event.kind
    row = _entity(ctx, kind, event.external_id, event.remote_id)
    if row is None or not event.status:
        _unroutable(ctx, event)
        return
    before = dict(row.attributes or {})
    result = _apply(ctx, row, event.status, event.updated_at, None)
    if not result.stale:
        row.attributes = dict(event.attributes)
    for follow in follow_ups(kind, row.state) if result.changed else ():
        write_log(
            ctx.session,
            f"{kind} {row.external_id} is {row.state}: {follow.reason}",
            direction="in",
            entity=kind,
            external_id=row.external_id,
            msg_id=ctx.msg_id,
        )
    job_external = event.parent_external_id or external_of_job(ctx, event.parent_remote_id)
    link = crm_link(ctx, job_external)
    _link_crm(row, link)
    write_log(
        ctx.session,
        f"{kind} {row.external_id} is {row.state}",
        direction="in",
        entity=kind,
        crm_record_id=row.crm_id,
        external_id=job_external or row.external_id,
        msg_id=ctx.msg_id,
    )
    if link is None:
        _no_link(ctx, kind, row.external_id, job_external)
        return
    if not result.stale and (result.changed or row.attributes != before):
        write_billing_document(ctx, row, link)
    enqueue_billing_pdf(ctx, event)  # its PDF as a File on the work order, when the mapping asks (once)


def _warn(ctx: EventContext, kind: str | None, message: str, **fields: Any) -> None:
    write_log(ctx.session, message, level="warning", direction="in", entity=kind, msg_id=ctx.msg_id, **fields)


def _unroutable(ctx: EventContext, event: ReportedEvent) -> None:
    message = f"{event.kind} event has no external_id, id or status to apply; kept in the inbox"
    _warn(ctx, event.kind, message, details=dict(event.attributes))


def _unknown_kind(ctx: EventContext, event: ReportedEvent) -> None:
    message = (
        f"{ctx.label} reported an entity of unknown kind {event.kind!r}: kept in the inbox, no CRM effect"
    )
    _warn(ctx, event.kind, message, details=dict(event.attributes))


def _no_link(ctx: EventContext, kind: str, external_id: str | None, job_external: str | None) -> None:
    message = f"{kind} {external_id}: job {job_external} matches no CRM record; state kept, nothing written"
    _warn(ctx, kind, message, external_id=job_external)


HANDLERS: dict[str, Callable[[EventContext, ReportedEvent], None]] = {
    "message": on_message,
    "job": on_job,
    "appointment": on_appointment,
    "offer": on_offer,
    "note": on_note,
    "attachment": on_note,
    "survey": on_survey,
    "estimate": on_billing_document,
    "invoice": on_billing_document,
    "payment": on_payment,
    "form": on_form,
    "calendar_event": on_calendar_event,
}

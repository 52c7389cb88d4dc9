"""How each `agent/out` event type changes the store: entity state, write-back intents, sync-log rows.

Events Dispatch reports are applied leniently (statemachines.apply_reported): an unexpected transition is
applied with a warning, an event older than the applied one never rolls state back, and an unknown type
or attribute is kept (the whole payload stays in the inbox row) and logged, never fatal. Nothing here
does I/O: the caller commits all of one message's effects in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from connector.dispatch_connect.event_shapes import normalize_event
from connector.mapping import MappingConfig, ObjectSpec
from statemachines import ApplyResult, EntityState, apply_reported, follow_ups
from sync.outbound.confirmation import apply_ack, apply_err
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, TrackedRecord
from sync.store.synclog import one_loud_row, write_log
from sync.writeback.queue import enqueue_create, enqueue_update


@dataclass
class EventContext:
    session: Session
    mapping: MappingConfig
    msg_id: str


def parse_time(value: Any) -> datetime | None:
    """Dispatch writes `2018-05-18T10:05:46+0000`; Python wants a colon in the offset."""
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- entity state and CRM links -------------------------------------------------------------------------
def _entity(ctx: EventContext, kind: str, external_id: str | None, dispatch_id: Any) -> EntityStateRow | None:
    session = ctx.session
    row = None
    if external_id:
        row = session.exec(
            select(EntityStateRow)
            .where(col(EntityStateRow.kind) == kind, col(EntityStateRow.external_id) == external_id)
            .with_for_update()  # PostgreSQL workers: read-modify-write of one entity is serialised
        ).first()
    if row is None and dispatch_id is not None:
        row = session.exec(
            select(EntityStateRow)
            .where(col(EntityStateRow.kind) == kind, col(EntityStateRow.dispatch_id) == str(dispatch_id))
            .with_for_update()
        ).first()
    if row is None:
        key = external_id or (f"dispatch:{dispatch_id}" if dispatch_id is not None else None)
        if key is None:
            return None
        row = EntityStateRow(kind=kind, external_id=key)
    if dispatch_id is not None:
        row.dispatch_id = str(dispatch_id)
    session.add(row)
    return row


def _apply(
    ctx: EventContext, row: EntityStateRow, status: str, updated_at: datetime | None, reason: str | None
) -> ApplyResult:
    milestones = {k: parse_time(v) for k, v in (row.milestones or {}).items()}
    state = EntityState(
        row.state, row.status_message, {k: v for k, v in milestones.items() if v}, row.updated_at
    )
    result = apply_reported(row.kind, state, status, updated_at=updated_at, reason=reason)
    row.state, row.status_message, row.updated_at = state.state, state.status_message, state.updated_at
    row.milestones = {k: v.isoformat() for k, v in state.milestones.items()}
    ctx.session.add(row)
    if result.warning:
        write_log(
            ctx.session,
            result.warning,
            level="warning",
            direction="in",
            entity=row.kind,
            crm_record_id=row.crm_id,
            external_id=row.external_id,
            msg_id=ctx.msg_id,
        )
    elif result.changed:
        reason = f" ({row.status_message})" if row.status_message else ""
        write_log(
            ctx.session,
            f"{row.kind} {row.external_id}: {result.from_state or 'new'} -> {row.state}{reason}",
            direction="in",
            entity=row.kind,
            crm_record_id=row.crm_id,
            external_id=row.external_id,
            msg_id=ctx.msg_id,
        )
    return result


def crm_link(ctx: EventContext, external_id: str | None) -> tuple[str, str, ObjectSpec] | None:
    """The CRM record whose primary canonical record has this external id (a job -> its work order)."""
    if not external_id:
        return None
    tracked = ctx.session.exec(
        select(TrackedRecord).where(col(TrackedRecord.external_id) == external_id)
    ).first()
    if tracked is None or tracked.crm_object not in ctx.mapping.objects:
        return None
    return tracked.crm_object, tracked.crm_id, ctx.mapping.objects[tracked.crm_object]


def _job_writeback(
    ctx: EventContext,
    link: tuple[str, str, ObjectSpec],
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


def _link_crm(row: EntityStateRow, link: tuple[str, str, ObjectSpec] | None) -> None:
    if link and not row.crm_id:
        row.crm_object, row.crm_id = link[0], link[1]


# --- handlers ---------------------------------------------------------------------------------------------
def on_job(ctx: EventContext, data: Mapping[str, Any]) -> None:
    others = (str(v) for v in data.get("external_ids") or [] if isinstance(v, str | int))
    external_id = data.get("external_id") or next(others, None)
    row = _entity(ctx, "job", external_id, data.get("id"))
    if row is None:
        _unroutable(ctx, "job", data)
        return
    link = crm_link(ctx, row.external_id)
    _link_crm(row, link)
    status = str(data.get("status") or row.state or "offered")
    result = _apply(ctx, row, status, parse_time(data.get("updated_at")), data.get("status_message") or None)
    if link is None:
        _job_without_crm_record(ctx, row, data)
        return
    if result.changed or result.stamped:  # a late event may still prove a missing milestone
        _job_writeback(ctx, link, row, result.stamped)


def _job_without_crm_record(ctx: EventContext, row: EntityStateRow, data: Mapping[str, Any]) -> None:
    """A job born in Dispatch: create the CRM record when the mapping allows it, else log it for support."""
    for name, spec in ctx.mapping.objects.items():
        if spec.primary_record().type == "job" and spec.inbound_jobs.enabled and row.state == "offered":
            fields = {crm: _path(data, attr) for crm, attr in spec.inbound_jobs.fields.items()}
            fields.update(spec.inbound_jobs.constants)
            if spec.write_back.status:
                fields[spec.write_back.status] = row.state
            enqueue_create(ctx.session, name, row.external_id, fields, source=ctx.msg_id)
            write_log(
                ctx.session,
                f"job {row.external_id} was created in Dispatch; creating a {name} for it",
                level="info",
                direction="in",
                entity="job",
                external_id=row.external_id,
                msg_id=ctx.msg_id,
            )
            return
    write_log(
        ctx.session,
        f"job {row.external_id} matches no CRM record and the mapping does not create one",
        level="warning",
        direction="in",
        entity="job",
        external_id=row.external_id,
        msg_id=ctx.msg_id,
    )


def _path(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _parent_job_id(data: Mapping[str, Any]) -> str | None:
    job = data.get("job")
    return str(job["external_id"]) if isinstance(job, Mapping) and job.get("external_id") else None


def on_appointment(ctx: EventContext, data: Mapping[str, Any]) -> None:
    row = _entity(ctx, "appointment", data.get("external_id"), data.get("id"))
    if row is None or not data.get("status"):
        _unroutable(ctx, "appointment", data)
        return
    updated_at = parse_time(data.get("updated_at"))
    result = _apply(ctx, row, str(data["status"]), updated_at, data.get("status_message") or None)
    job_external = _parent_job_id(data)
    link = crm_link(ctx, job_external)
    _link_crm(row, link)
    if link is None:
        _no_link(ctx, "appointment", row.external_id, job_external)
        return
    if result.stale and not result.stamped:
        return
    wb = link[2].write_back
    window: dict[str, Any] = {}
    if wb.appointment_start and data.get("start_time") and not result.stale:
        window[wb.appointment_start] = _iso(data["start_time"])
    if wb.appointment_end and data.get("end_time") and not result.stale:
        window[wb.appointment_end] = _iso(data["end_time"])
    job_row = _entity(ctx, "job", job_external, data.get("job_id"))
    job_stamped: tuple[str, ...] = ()
    for follow in follow_ups("appointment", row.state) if result.changed else ():
        if follow.relation == "parent_job" and job_row is not None:
            job_stamped = _apply(ctx, job_row, follow.status, updated_at, None).stamped
    stamped = tuple(m for m in result.stamped if m in ("enroute", "started")) + job_stamped
    if job_row is not None:
        _link_crm(job_row, link)
        merged = dict(job_row.milestones or {})
        merged.update(
            {m: row.milestones[m] for m in result.stamped if row.milestones and m in row.milestones}
        )
        job_row.milestones = merged
        _job_writeback(ctx, link, job_row, stamped, window)


def _iso(value: Any) -> str | None:
    parsed = parse_time(value)
    return parsed.isoformat() if parsed else None


def on_offer(ctx: EventContext, data: Mapping[str, Any]) -> None:
    row = _entity(ctx, "offer", data.get("external_id"), data.get("id"))
    if row is None or not data.get("status"):
        _unroutable(ctx, "offer", data)
        return
    _apply(
        ctx, row, str(data["status"]), parse_time(data.get("updated_at")), data.get("status_message") or None
    )
    write_log(
        ctx.session,
        f"offer {row.external_id} is {row.state}",
        direction="in",
        entity="offer",
        external_id=row.external_id,
        msg_id=ctx.msg_id,
    )


def on_attachment(ctx: EventContext, data: Mapping[str, Any]) -> None:
    """Notes (with `description`) and files (with `file_token`); `deleted_at` set means deleted."""
    kind = "note" if "description" in data and not data.get("file_token") else "attachment"
    row = _entity(ctx, kind, None, data.get("id"))
    if row is None:
        _unroutable(ctx, kind, data)
        return
    updated_at = parse_time(data.get("updated_at"))
    if row.updated_at and updated_at and updated_at < row.updated_at:
        return  # an older version of the note: keep the newer one
    row.state = "deleted" if data.get("deleted_at") else "active"
    row.updated_at = updated_at or row.updated_at
    row.attributes = dict(data)
    job_external = _parent_job_id(data)
    link = crm_link(ctx, job_external)
    _link_crm(row, link)
    text = data.get("description") if kind == "note" else data.get("name")
    write_log(
        ctx.session,
        f"{kind} {row.external_id} on job {job_external} {row.state}: {text}",
        direction="in",
        entity=kind,
        crm_record_id=row.crm_id,
        external_id=job_external,
        msg_id=ctx.msg_id,
    )
    if link is not None:
        _job_writeback(ctx, link, EntityStateRow(kind=kind, external_id=row.external_id), ())
        _note_record(ctx, link, row, data)


def _note_record(
    ctx: EventContext, link: tuple[str, str, ObjectSpec], row: EntityStateRow, data: Mapping[str, Any]
) -> None:
    """Create the CRM note record the first time, update it afterwards (creates coalesce until flushed)."""
    notes = link[2].write_back.notes
    if notes is None:
        return
    values = {**data, "deleted": bool(data.get("deleted_at"))}
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
            source=ctx.msg_id,
        )


SURVEY_REASONS = re.compile(r"^\s*\[([^\]]*)\]\s*")


def split_survey_comment(message: str | None) -> tuple[list[str], str]:
    """'[Late, Messy] Great tech' -> (['Late', 'Messy'], 'Great tech')."""
    if not message:
        return [], ""
    match = SURVEY_REASONS.match(message)
    if not match:
        return [], message.strip()
    reasons = [r.strip() for r in match.group(1).split(",") if r.strip()]
    return reasons, message[match.end() :].strip()


def _number(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def on_survey(ctx: EventContext, data: Mapping[str, Any]) -> None:
    reasons, comments = split_survey_comment(data.get("message"))
    job_external = _parent_job_id(data)
    link = crm_link(ctx, job_external)
    write_log(
        ctx.session,
        f"survey for job {job_external}: rating {data.get('rating')}",
        direction="in",
        entity="surveyresponse",
        crm_record_id=link[1] if link else None,
        external_id=job_external,
        msg_id=ctx.msg_id,
        details={"reasons": reasons, "comments": comments},
    )
    if link is None:
        _no_link(ctx, "surveyresponse", str(data.get("id")), job_external)
        return
    wb = link[2].write_back
    fields: dict[str, Any] = {}
    if wb.survey_rating:
        fields[wb.survey_rating] = _number(data.get("rating"))
    if wb.survey_comments:
        fields[wb.survey_comments] = (f"[{', '.join(reasons)}] " if reasons else "") + comments
    _job_writeback(ctx, link, EntityStateRow(kind="survey", external_id=""), (), fields)


def on_billing_document(kind: str) -> Callable[[EventContext, Mapping[str, Any]], None]:
    def handle(ctx: EventContext, data: Mapping[str, Any]) -> None:
        row = _entity(ctx, kind, data.get("external_id"), data.get("id"))
        if row is None or not data.get("status"):
            _unroutable(ctx, kind, data)
            return
        result = _apply(ctx, row, str(data["status"]), parse_time(data.get("updated_at")), None)
        row.attributes = dict(data)
        for follow in follow_ups(kind, row.state) if result.changed else ():
            write_log(
                ctx.session,
                f"{kind} {row.external_id} is {row.state}: {follow.reason}",
                direction="in",
                entity=kind,
                external_id=row.external_id,
                msg_id=ctx.msg_id,
            )
        write_log(
            ctx.session,
            f"{kind} {row.external_id} is {row.state}",
            direction="in",
            entity=kind,
            external_id=_parent_job_id(data) or row.external_id,
            msg_id=ctx.msg_id,
        )

    return handle


def on_payment(ctx: EventContext, data: Mapping[str, Any]) -> None:
    document = data.get("billing_document") or {}
    amount = (data.get("amount") or {}).get("text")
    write_log(
        ctx.session,
        f"payment {data.get('id')} of {amount} on {document.get('external_id')}: {data.get('result')}",
        direction="in",
        entity="payment",
        external_id=document.get("external_id"),
        msg_id=ctx.msg_id,
        details=dict(data),
    )


def on_ack(ctx: EventContext, data: Mapping[str, Any]) -> None:
    model = str(data.get("model") or "")
    if model.startswith("auto_assign"):
        level = "warning" if data.get("ack_message") else "info"
        external = data.get("external_id") or (data.get("data") or {}).get("external_id")
        write_log(
            ctx.session,
            f"{model}: {data.get('ack_message') or 'assigned'}",
            level=level,
            direction="in",
            entity=model,
            external_id=external,
            msg_id=data.get("msg_id"),
            details=dict(data),
        )
        return
    apply_ack(ctx.session, ctx.mapping, data, source=ctx.msg_id)


def on_err(ctx: EventContext, data: Mapping[str, Any]) -> None:
    inner = (data.get("payload") or {}).get("err") if isinstance(data.get("payload"), Mapping) else None
    apply_err(ctx.session, ctx.mapping, inner or data, source=ctx.msg_id)


def on_kept(kind: str) -> Callable[[EventContext, Mapping[str, Any]], None]:
    """Event types with no CRM effect by default (calendar events, custom forms): kept and logged."""

    def handle(ctx: EventContext, data: Mapping[str, Any]) -> None:
        external = data.get("external_id") or _parent_job_id(data)
        write_log(
            ctx.session,
            f"{kind} received",
            direction="in",
            entity=kind,
            external_id=external,
            msg_id=ctx.msg_id,
            details=dict(data),
        )

    return handle


def _warn(ctx: EventContext, kind: str, message: str, **fields: Any) -> None:
    write_log(ctx.session, message, level="warning", direction="in", entity=kind, msg_id=ctx.msg_id, **fields)


def _unroutable(ctx: EventContext, kind: str, data: Mapping[str, Any]) -> None:
    message = f"{kind} event has no external_id, id or status to apply; kept in the inbox"
    _warn(ctx, kind, message, details=dict(data))


def _no_link(ctx: EventContext, kind: str, external_id: str | None, job_external: str | None) -> None:
    message = f"{kind} {external_id}: job {job_external} matches no CRM record; state kept, nothing written"
    _warn(ctx, kind, message, external_id=job_external)


HANDLERS: dict[str, Callable[[EventContext, Mapping[str, Any]], None]] = {
    "job": on_job,
    "appointment": on_appointment,
    "offer": on_offer,
    "joboffer": on_offer,
    "attachment": on_attachment,
    "surveyresponse": on_survey,
    "estimate": on_billing_document("estimate"),
    "invoice": on_billing_document("invoice"),
    "payment": on_payment,
    "ack": on_ack,
    "err": on_err,
    "calendar_event": on_kept("calendar_event"),
    "customform": on_kept("customform"),
}


def handle_action(ctx: EventContext, put_type: str, data: Mapping[str, Any]) -> None:
    """Apply one action. Whatever is wrong with it reaches support as one warning or error row."""
    with one_loud_row(ctx.session):
        _handle_action(ctx, put_type, data)


def _handle_action(ctx: EventContext, put_type: str, data: Mapping[str, Any]) -> None:
    data, problems = normalize_event(data)
    if problems:
        _warn(
            ctx,
            put_type,
            f"{put_type} event has attributes of an unexpected type, ignored: {'; '.join(problems)}",
        )
    handler = HANDLERS.get(put_type)
    if handler is None:
        _warn(
            ctx,
            put_type,
            f"unknown event type {put_type!r}: kept in the inbox, no CRM effect",
            details=dict(data),
        )
        return
    handler(ctx, data)

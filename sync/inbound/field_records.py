"""Records born in the field, written to the CRM as records of their own: estimates and invoices, payments,
submitted custom forms, calendar events (the playbook's "From Dispatch": Billing, Custom Forms, Calendar
Events).

Each becomes one CRM record per the mapping (`write_back.billing_documents`, `.payments`, `.forms` on the
job's object, top-level `calendar_events`), created the first time and updated in place afterwards: the
record is keyed by `<kind>:<entity key>`, so a redelivered event updates the record the first one created
(creates of one key coalesce until flushed, and a flushed create is a TrackedRecord). An event older than
the one written never rolls a record back: its entity row keeps the newest `updated_at` and the attributes
written from it. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlmodel import col, select

from connector.mapping import FieldRecordSpec
from connector.mapping_writes import FormsSpec, PaymentsSpec
from connector.ports import ReportedEvent
from sync.inbound.event_context import CrmLink, EventContext, crm_link, external_of_job
from sync.store.models import EntityStateRow, TrackedRecord
from sync.store.synclog import write_log
from sync.writeback.queue import enqueue_create, enqueue_update

BILLING_KINDS = ("estimate", "invoice")


def warn(ctx: EventContext, kind: str, message: str, **fields: Any) -> None:
    write_log(ctx.session, message, level="warning", direction="in", entity=kind, msg_id=ctx.msg_id, **fields)


def entity_row(ctx: EventContext, kind: str, key: str, remote_id: str | None) -> EntityStateRow:
    """The entity row of this field record (by key, then by Dispatch's id), new if none."""
    for column, value in ((EntityStateRow.external_id, key), (EntityStateRow.remote_id, remote_id)):
        if value is None:
            continue
        found = ctx.session.exec(
            select(EntityStateRow)
            .where(
                col(EntityStateRow.system) == ctx.system,
                col(EntityStateRow.kind) == kind,
                col(column) == value,
            )
            .with_for_update()
        ).first()
        if found is not None:
            return found
    return EntityStateRow(system=ctx.system, kind=kind, external_id=key, remote_id=remote_id)


def newer(row: EntityStateRow, event: ReportedEvent) -> bool:
    """Whether the event is to be written: not older than the one written, and not the same again."""
    last, at = row.updated_at, event.updated_at
    if last is not None and at is not None:
        last_aware = last if last.tzinfo else last.replace(tzinfo=at.tzinfo)
        if at < last_aware:
            return False
    return row.id is None or dict(row.attributes or {}) != dict(event.attributes)


def read_path(data: Mapping[str, Any], path: str) -> Any:
    """`total.value` of the event's attributes; a list or an object (an estimate's lines) as JSON text."""
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, Mapping | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def record_key(kind: str, entity_key: str) -> str:
    """The external id a field record is created under (never equal to a job's, which `crm_link` reads)."""
    return f"{kind}:{entity_key}"


def crm_record(ctx: EventContext, crm_object: str, key: str) -> str | None:
    """The CRM id of a field record already created under `key`, None while its create is pending."""
    return ctx.session.exec(
        select(TrackedRecord.crm_id).where(
            col(TrackedRecord.crm_object) == crm_object,
            col(TrackedRecord.external_id) == key,
            col(TrackedRecord.system) == ctx.system,
        )
    ).first()


def write_record(
    ctx: EventContext, crm_object: str, key: str, fields: Mapping[str, Any], on_create: Mapping[str, Any]
) -> None:
    """Update the record created under `key`, or queue its create (with the links in `on_create`)."""
    existing = crm_record(ctx, crm_object, key)
    if existing is not None:
        enqueue_update(ctx.session, crm_object, existing, fields, source=ctx.msg_id)
    else:
        enqueue_create(
            ctx.session, crm_object, key, {**on_create, **fields}, system=ctx.system, source=ctx.msg_id
        )


def mapped_fields(spec: FieldRecordSpec, attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {crm: read_path(attributes, path) for crm, path in spec.fields.items()}


# --- billing documents --------------------------------------------------------------------------------------
def write_billing_document(ctx: EventContext, row: EntityStateRow, link: CrmLink) -> None:
    """The estimate's or invoice's record, from the attributes of the newest event (kept on `row`)."""
    spec: FieldRecordSpec | None = link[2].write_back.billing_documents
    if spec is None:
        return
    fields = mapped_fields(spec, row.attributes or {})
    key = record_key(row.kind, row.external_id)
    write_record(ctx, spec.object, key, fields, {spec.parent_field: link[1]})


# --- payments ---------------------------------------------------------------------------------------------
def on_payment(ctx: EventContext, event: ReportedEvent) -> None:
    """A payment: its own record, linked to the job's record and to its document's record when known."""
    key = event.external_id or (f"{ctx.system}:{event.remote_id}" if event.remote_id else None)
    if key is None:
        warn(ctx, "payment", "payment event has no id; kept in the inbox", details=dict(event.attributes))
        return
    row = entity_row(ctx, "payment", key, event.remote_id)
    document = _billing_row(ctx, event.parent_external_id, event.parent_remote_id)
    job_external = _job_of(document)
    link = crm_link(ctx, job_external)
    on = f"{document.kind} {document.external_id}" if document else "a document not reported before"
    write_log(
        ctx.session,
        f"payment {row.external_id} of {_amount(event.attributes)} on {on}: {event.status}",
        direction="in",
        entity="payment",
        crm_record_id=link[1] if link else None,
        external_id=job_external or event.parent_external_id,
        msg_id=ctx.msg_id,
    )
    if not newer(row, event):
        return
    row.state, row.updated_at = event.status, event.updated_at or row.updated_at
    row.attributes = dict(event.attributes)
    if link is not None and not row.crm_id:
        row.crm_object, row.crm_id = link[0], link[1]
    ctx.session.add(row)
    if link is None:
        warn(ctx, "payment", f"payment {row.external_id}: its document's job matches no CRM record")
        return
    spec: PaymentsSpec | None = link[2].write_back.payments
    if spec is None:
        return
    fields = mapped_fields(spec, row.attributes)
    documents = link[2].write_back.billing_documents
    if spec.document_field and document is not None and documents is not None:
        # written with every version, so a payment that came before its document's record gets the link later
        document_id = crm_record(ctx, documents.object, record_key(document.kind, document.external_id))
        if document_id:
            fields[spec.document_field] = document_id
    key = record_key("payment", row.external_id)
    write_record(ctx, spec.object, key, fields, {spec.parent_field: link[1]})


def _amount(attributes: Mapping[str, Any]) -> Any:
    amount = attributes.get("amount")
    return amount.get("text") or amount.get("value") if isinstance(amount, Mapping) else amount


def _billing_row(ctx: EventContext, external_id: str | None, remote_id: str | None) -> EntityStateRow | None:
    """The estimate or invoice a payment names, by its external id, else by Dispatch's id."""
    for column, value in ((EntityStateRow.external_id, external_id), (EntityStateRow.remote_id, remote_id)):
        if value is None:
            continue
        found = ctx.session.exec(
            select(EntityStateRow).where(
                col(EntityStateRow.system) == ctx.system,
                col(EntityStateRow.kind).in_(BILLING_KINDS),
                col(column) == value,
            )
        ).first()
        if found is not None:
            return found
    return None


def _job_of(document: EntityStateRow | None) -> str | None:
    job = (document.attributes or {}).get("job") if document else None
    return str(job["external_id"]) if isinstance(job, Mapping) and job.get("external_id") else None


# --- custom forms -----------------------------------------------------------------------------------------
def on_form(ctx: EventContext, event: ReportedEvent) -> None:
    """A submitted custom form: one record per job and form name (a resubmission updates it)."""
    job_external = event.parent_external_id or external_of_job(ctx, event.parent_remote_id)
    if not event.reason or not job_external:
        warn(ctx, "customform", "custom form names no job or no form", details=dict(event.attributes))
        return
    link = crm_link(ctx, job_external)
    write_log(
        ctx.session,
        f"custom form {event.reason} submitted on job {job_external}",
        direction="in",
        entity="customform",
        crm_record_id=link[1] if link else None,
        external_id=job_external,
        msg_id=ctx.msg_id,
        details={"form_data": event.attributes.get("form_data")},
    )
    if link is None:
        warn(ctx, "customform", f"custom form {event.reason}: job {job_external} matches no CRM record")
        return
    spec: FormsSpec | None = link[2].write_back.forms
    if spec is None:
        return
    fields = mapped_fields(spec, event.attributes)
    if spec.answers_field:
        answers = event.attributes.get("form_data")
        fields[spec.answers_field] = json.dumps(
            answers if isinstance(answers, Mapping) else {}, sort_keys=True
        )
    key = record_key("customform", f"{job_external}:{event.reason}")
    write_record(ctx, spec.object, key, fields, {spec.parent_field: link[1]})


# --- calendar events --------------------------------------------------------------------------------------
def on_calendar_event(ctx: EventContext, event: ReportedEvent) -> None:
    """A technician's calendar event as a CRM Event, created once and updated in place; an older version
    never overwrites a newer one (ordered by `updated_at` when the event has one)."""
    key = event.remote_id or event.external_id
    if key is None:
        warn(ctx, "calendar_event", "calendar event has no uuid", details=dict(event.attributes))
        return
    row = entity_row(ctx, "calendar_event", key, event.remote_id)
    if not newer(row, event):
        return  # older than the version written, or a redelivery of it
    row.state = "active"
    row.updated_at = event.updated_at or row.updated_at
    row.attributes = dict(event.attributes)
    ctx.session.add(row)
    write_log(
        ctx.session,
        f"calendar event {key}: {event.reason or '(no title)'}",
        direction="in",
        entity="calendar_event",
        external_id=event.external_id or key,
        msg_id=ctx.msg_id,
    )
    spec = ctx.mapping.spec.calendar_events
    if spec is None:
        return
    fields = {crm: read_path(event.attributes, path) for crm, path in spec.fields.items()}
    on_create = dict(spec.constants)
    who = read_path(event.attributes, spec.who_attribute)
    who_id = _published(ctx, str(who)) if spec.who_field and who else None
    if spec.who_field and who_id:
        on_create[spec.who_field] = who_id
    write_record(ctx, spec.object, record_key("calendar_event", key), fields, on_create)


def _published(ctx: EventContext, external_id: str) -> str | None:
    """The CRM record the connector published under this external id (a technician's Contact or User)."""
    return ctx.session.exec(
        select(TrackedRecord.crm_id).where(
            col(TrackedRecord.external_id) == external_id, col(TrackedRecord.system) == ctx.system
        )
    ).first()


# --- customers of jobs born in the field --------------------------------------------------------------------
def queue_customer_link(
    ctx: EventContext, crm_object: str, job_key: str, attributes: Mapping[str, Any]
) -> None:
    """Remember that the record created for this job wants its customer's Contact: matching one needs a CRM
    query, which applying an event never makes; sync.inbound.customers does it once the record exists."""
    spec = ctx.mapping.objects[crm_object].inbound_jobs.contact
    if spec is None or not isinstance(attributes.get("customer"), Mapping):
        return
    values = {crm: read_path(attributes, path) for crm, path in spec.fields.items()}
    wanted = {"email": read_path(attributes, spec.email), "phone": read_path(attributes, spec.phone)}
    row = entity_row(ctx, "customer_link", job_key, None)
    if row.id is not None:
        return  # a redelivery of the job's creation
    row.state = "pending"
    row.crm_object = crm_object
    row.attributes = {"contact": values, "match": wanted}
    ctx.session.add(row)

"""Messages from the field's inbox (the playbook's Inbox Messages) into the CRM: a sync-log row on the record
they concern and, when the mapping has `inbox_messages`, a CRM record (a Task on the contact and the work
order).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from connector.ports import ReportedEvent
from sync.inbound.event_context import EventContext
from sync.store.models import EntityStateRow, OutboxItem, TrackedRecord
from sync.store.synclog import write_log
from sync.writeback.queue import enqueue_create


def on_message(ctx: EventContext, event: ReportedEvent) -> None:
    """A message from the field's inbox: one sync-log row on the CRM record it concerns (the open record that
    sent all of its `about` ids), and a CRM record per the mapping's `inbox_messages` (a Task)."""
    tracked = _open_record_about(ctx, event.about)
    sender = event.attributes.get("sender") or "the field"
    write_log(
        ctx.session,
        f"message from {sender}: {event.reason}",
        level="info" if tracked else "warning",
        direction="in",
        entity="message",
        crm_record_id=tracked.crm_id if tracked else None,
        external_id=tracked.external_id if tracked else (event.about[0] if event.about else None),
        msg_id=ctx.msg_id,
        details={**event.attributes, **({} if tracked else {"note": "matches no open CRM record"})},
    )
    spec = ctx.mapping.spec.inbox_messages
    if spec is None or tracked is None:
        return
    values = {**event.attributes, "subject": f"Dispatch message from {sender}"}
    fields: dict[str, Any] = {crm: values.get(attr) for crm, attr in spec.fields.items()}
    fields.update(spec.constants)
    if spec.record_field:
        fields[spec.record_field] = tracked.crm_id
    contact = (tracked.snapshot or {}).get(spec.record_contact_field) if spec.record_contact_field else None
    if spec.contact_field and contact:
        fields[spec.contact_field] = contact
    key = f"{ctx.system}:message:{ctx.msg_id}"
    enqueue_create(ctx.session, spec.object, key, fields, system=ctx.system, source=ctx.msg_id)


def _open_record_about(ctx: EventContext, about: tuple[str, ...]) -> TrackedRecord | None:
    """The CRM record on this back end whose published records include every id in `about`, preferring a
    flagged one whose job is still open, then the latest published."""
    if not about:
        return None
    items = ctx.session.exec(
        select(OutboxItem.crm_object, OutboxItem.crm_id, OutboxItem.external_id).where(
            col(OutboxItem.external_id).in_(about)
        )
    ).all()
    covers: dict[tuple[str, str], set[str]] = {}
    for crm_object, crm_id, external_id in items:
        if crm_object and crm_id:
            covers.setdefault((crm_object, crm_id), set()).add(external_id)
    candidates = [key for key, ids in covers.items() if ids >= set(about)]
    best: tuple[tuple[bool, str], TrackedRecord] | None = None
    for crm_object, crm_id in candidates:
        tracked = ctx.session.exec(
            select(TrackedRecord).where(
                col(TrackedRecord.crm_object) == crm_object,
                col(TrackedRecord.crm_id) == crm_id,
                col(TrackedRecord.system) == ctx.system,
            )
        ).first()
        if tracked is None:
            continue
        rank = (tracked.flagged and not _job_closed(ctx, tracked), str(tracked.published_at or ""))
        if best is None or rank > best[0]:
            best = (rank, tracked)
    return best[1] if best else None


def _job_closed(ctx: EventContext, tracked: TrackedRecord) -> bool:
    state = ctx.session.exec(
        select(EntityStateRow.state).where(
            col(EntityStateRow.system) == ctx.system,
            col(EntityStateRow.kind) == "job",
            col(EntityStateRow.external_id) == tracked.external_id,
        )
    ).first()
    return state in ("complete", "canceled", "rejected")

"""The customers of jobs born in the field, as CRM Contacts (the playbook's Gateway "Job Created").

Applying the job event creates the work order and remembers the customer (`customer_link` entity rows,
sync.inbound.field_records); matching the customer to a Contact needs CRM queries, which the event handlers
never make. This pass runs after the write-back flush: for each remembered customer whose work order now
exists, the Contact with the same email, else the same phone, else a new one, is linked to the work order
(`inbound_jobs.contact.contact_field`, an update on the write-back queue). A pass that fails (the CRM
refusing the Contact, a network error) leaves the customer remembered and is tried again next cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simple_salesforce import format_soql
from sqlmodel import Session, col, select

from connector.mapping_writes import InboundContactSpec
from sync.context import SyncContext
from sync.store.db import session_scope
from sync.store.models import EntityStateRow, TrackedRecord
from sync.store.synclog import write_log
from sync.writeback.queue import enqueue_update


@dataclass
class CustomerReport:
    matched: int = 0
    created: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)


def link_field_customers(ctx: SyncContext, *, limit: int = 200) -> CustomerReport:
    """Link the remembered customers whose work orders exist; the caller flushes the write-back queue."""
    report = CustomerReport()
    with session_scope(ctx.engine) as session:
        rows = session.exec(
            select(EntityStateRow)
            .where(col(EntityStateRow.kind) == "customer_link", col(EntityStateRow.state) == "pending")
            .limit(limit)
        ).all()
        for row in rows:
            _link(ctx, session, row, report)
    return report


def _link(ctx: SyncContext, session: Session, row: EntityStateRow, report: CustomerReport) -> None:
    spec = ctx.mapping.objects[row.crm_object].inbound_jobs.contact if row.crm_object else None
    record = session.exec(
        select(TrackedRecord.crm_id).where(
            col(TrackedRecord.system) == row.system,
            col(TrackedRecord.crm_object) == row.crm_object,
            col(TrackedRecord.external_id) == row.external_id,
        )
    ).first()
    if spec is None or record is None:
        report.waiting += 1  # its work order is not created yet (or the mapping no longer asks)
        return
    attributes = row.attributes or {}
    try:
        contact_id = _match(ctx, spec, attributes.get("match") or {})
        created = contact_id is None
        if contact_id is None:
            contact_id = str(ctx.crm.create(spec.object, _values(attributes.get("contact") or {})))
    except Exception as exc:  # the CRM refused or failed: remembered, tried again next cycle
        report.errors.append(f"{row.external_id}: {type(exc).__name__}: {exc}")
        _log(session, row, f"customer of job {row.external_id}: no Contact yet ({exc})", "warning", record)
        return
    enqueue_update(session, str(row.crm_object), record, {spec.contact_field: contact_id}, source="customers")
    row.state, row.crm_id = "linked", contact_id
    session.add(row)
    if created:
        report.created += 1
    else:
        report.matched += 1
    how = "a new Contact" if created else "the Contact with the same email or phone"
    _log(session, row, f"customer of job {row.external_id} linked to {how} {contact_id}", "info", record)


def _match(ctx: SyncContext, spec: InboundContactSpec, wanted: dict[str, Any]) -> str | None:
    """An existing Contact with the customer's email, else with the customer's phone."""
    for crm_field, value in (
        (spec.match_email, wanted.get("email")),
        (spec.match_phone, wanted.get("phone")),
    ):
        if not crm_field or not value:
            continue
        soql = format_soql(
            f"SELECT Id FROM {spec.object} WHERE {crm_field} = {{}} ORDER BY CreatedDate LIMIT 1", str(value)
        )
        found = ctx.crm.query_all(soql)
        if found:
            return str(found[0]["Id"])
    return None


def _values(contact: dict[str, Any]) -> dict[str, Any]:
    """The new Contact's fields; Salesforce requires a last name: the email, when the customer has none."""
    values = {k: v for k, v in contact.items() if v not in (None, "")}
    if "LastName" in contact and not values.get("LastName"):
        values["LastName"] = values.get("Email") or "Unknown"
    return values


def _log(session: Session, row: EntityStateRow, message: str, level: str, record: str) -> None:
    write_log(
        session,
        message,
        level=level,
        direction="in",
        entity="customer",
        crm_record_id=record,
        external_id=row.external_id,
    )

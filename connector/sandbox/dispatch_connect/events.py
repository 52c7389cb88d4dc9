"""Outbound event payloads of the Dispatch Connect emulator, in the playbook's shapes.

Each builder returns `(put_type, data)` with exactly the keys of the matching sample in
`seeds/outbound-samples` (01..19), so the client and the processor are tested against what Dispatch sends.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

Event = tuple[str, dict[str, Any]]

JOB_STATUSES = ("offered", "unscheduled", "rejected", "scheduled", "paused", "complete", "canceled")
APPOINTMENT_STATUSES = ("draft", "scheduled", "enroute", "started", "paused", "complete", "canceled")
DEFAULT_UI_OPTIONS: dict[str, Any] = {
    "show_decline": True,
    "reject_reasons": ["incorrect_service_area", "no_availability", "wrong_trade"],
    "complete_reasons": ["ready_for_billing", "customer_does_not_want_service"],
    "pause_reasons": ["waiting_for_parts", "no_show", "waiting_on_authorization"],
    "cancel_reasons": ["provider_canceled", "customer_canceled"],
}


def timestamp(seconds: float) -> str:
    """Dispatch's outbound time format: `2018-05-18T10:05:46+0000`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(seconds))


def money(value: Decimal | float | int | str, currency: str = "USD") -> dict[str, str]:
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    return {"currency": currency, "text": f"${amount}", "value": str(amount)}


def job_ref(job: dict[str, Any]) -> dict[str, Any]:
    return {"external_id": job.get("external_id")}


def job_status(job: dict[str, Any], status: str, message: str, at: str) -> Event:
    """Samples 01 and 19: a status change of a job (accepted, rejected, paused, complete, canceled)."""
    return "job", {
        "id": job["id"],
        "status": status,
        "status_message": message,
        "updated_at": at,
        "external_id": job.get("external_id"),
    }


def _address(job: dict[str, Any]) -> dict[str, Any]:
    address = job.get("address") or {}
    return {
        "street_1": address.get("street_1", ""),
        "street_2": address.get("street_2", ""),
        "postal_code": address.get("postal_code", ""),
        "city": address.get("city", ""),
        "state": address.get("state", ""),
        "country": address.get("country", "United States"),
        "timezone": address.get("timezone", "America/New_York"),
        "latitude": address.get("latitude"),
        "longitude": address.get("longitude"),
    }


def _customer(customer: dict[str, Any], full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if full:
        out["id"] = customer.get("id")
        out["external_id"] = customer.get("external_id")
    out.update(
        {
            "first_name": customer.get("first_name", ""),
            "last_name": customer.get("last_name", ""),
            "company_name": customer.get("company_name", ""),
            "email": customer.get("email", ""),
            "phone_number": customer.get("phone_number", ""),
        }
    )
    return out


def job_offered(
    job: dict[str, Any], customer: dict[str, Any], org: dict[str, Any], at: str, shape: str
) -> Event:
    """Job created on the Dispatch side. shape: 'gateway' (sample 09), 'dnm' (02) or 'fsm' (08)."""
    if shape == "gateway":
        return "job", {
            "id": job["id"],
            "source_id": job.get("source_id"),
            "source": job.get("source", ""),
            "organization_id": org.get("id"),
            "organization_external_id": org.get("external_id"),
            "title": job.get("title", ""),
            "status": job.get("status", "offered"),
            "status_message": job.get("status_message", ""),
            "description": job.get("description", ""),
            "symptom": job.get("symptom", ""),
            "service_instructions": job.get("service_instructions", ""),
            "service_fee": job.get("service_fee", 0),
            "service_type": job.get("service_type", ""),
            "updated_at": at,
            "address": _address(job),
            "external_id": job.get("external_id"),
            "customer": _customer(customer, full=True),
            "equipment_descriptions": list(job.get("equipment_descriptions", [])),
            "custom_fields": dict(job.get("custom_fields", {})),
            "marketing_attributions": list(job.get("marketing_attributions", [])),
            "ui_options": dict(job.get("ui_options") or DEFAULT_UI_OPTIONS),
        }
    if shape not in ("dnm", "fsm"):
        raise ValueError(f"unknown job shape {shape!r} (gateway, dnm, fsm)")
    data: dict[str, Any] = {
        "id": job["id"],
        "organization_id": org.get("id"),
        "title": job.get("title", ""),
        "status": job.get("status", "offered"),
        "status_message": job.get("status_message", ""),
        "description": job.get("description", ""),
        "updated_at": at,
        "service_type": job.get("service_type", ""),
        "service_fee": job.get("service_fee", 0),
        "address": _address(job),
    }
    if shape == "fsm":
        data["external_ids"] = [job["external_id"]] if job.get("external_id") else []
    else:
        data["external_id"] = job.get("external_id")
    data["customer"] = _customer(customer, full=False)
    return "job", data


def appointment(appt: dict[str, Any], job: dict[str, Any], at: str) -> Event:
    """Sample 03."""
    return "appointment", {
        "id": appt["id"],
        "external_id": appt.get("external_id"),
        "status": appt.get("status"),
        "job_id": job["id"],
        "updated_at": at,
        "start_time": appt.get("start_time"),
        "end_time": appt.get("end_time"),
        "job": job_ref(job),
    }


def note(item: dict[str, Any], job: dict[str, Any], at: str) -> Event:
    """Sample 04 (a note has `description`)."""
    return "attachment", {
        "id": item["id"],
        "entity_type": "Job",
        "entity_id": job["id"],
        "description": item.get("description", ""),
        "updated_at": at,
        "deleted_at": item.get("deleted_at"),
        "job": job_ref(job),
    }


def attachment(item: dict[str, Any], job: dict[str, Any], at: str) -> Event:
    """Sample 05 (a file has `file_token` and `name`)."""
    return "attachment", {
        "id": item["id"],
        "entity_type": "Job",
        "entity_id": job["id"],
        "file_token": item.get("file_token"),
        "name": item.get("name"),
        "updated_at": at,
        "deleted_at": item.get("deleted_at"),
        "job": job_ref(job),
    }


def survey(item: dict[str, Any], job: dict[str, Any], at: str) -> Event:
    """Sample 06."""
    return "surveyresponse", {
        "account_message": item.get("account_message", ""),
        "account_rating": item.get("account_rating"),
        "id": item["id"],
        "job_id": job["id"],
        "message": item.get("message", ""),
        "rating": item.get("rating"),
        "updated_at": at,
        "job": job_ref(job),
    }


def offer(item: dict[str, Any], status: str, message: str, at: str) -> Event:
    """Sample 07."""
    return "offer", {
        "id": item["id"],
        "status": status,
        "status_message": message,
        "updated_at": at,
        "external_id": item.get("external_id"),
    }


def ack(dispatch_id: Any, external_id: Any, msg_id: Any, model: str, organization_id: Any) -> Event:
    """Sample 10: a record of an `agent/in` request was applied."""
    return "ack", {
        "id": dispatch_id,
        "external_id": external_id,
        "msg_id": msg_id,
        "action": "inbound_ack",
        "model": model,
        "data": {"organization_id": organization_id, "external_id": external_id},
    }


def err(data_type: str, external_id: Any, msg_id: Any, message: str) -> Event:
    """Sample 11: a record of an `agent/in` request could not be applied."""
    return "err", {
        "payload": {
            "err": {
                "data_type": data_type,
                "external_id": external_id,
                "msg_id": msg_id,
                "message": message,
            }
        }
    }


def auto_assign_technician_failed(
    job_external_id: Any, appointment_external_id: Any, msg_id: Any, message: str
) -> Event:
    """Sample 12."""
    return "ack", {
        "external_id": job_external_id,
        "external_appointment_id": appointment_external_id,
        "msg_id": msg_id,
        "action": "inbound_ack",
        "model": "auto_assign_technician",
        "ack_message": message,
        "api_response": {"matches": None},
    }


def auto_assign_org_failed(dispatch_id: Any, offer_external_id: Any, msg_id: Any, message: str) -> Event:
    """Sample 13."""
    return "ack", {
        "id": dispatch_id,
        "data": {"external_id": offer_external_id},
        "msg_id": msg_id,
        "action": "inbound_ack",
        "model": "auto_assign_org",
        "ack_message": message,
        "api_response": {"matches": None},
    }


def billing_document(doc: dict[str, Any], job: dict[str, Any], at: str) -> Event:
    """Samples 14 (estimate) and 15 (invoice; no `invoice_id` key)."""
    lines = []
    subtotal = Decimal("0")
    taxable_total = Decimal("0")
    for line in doc.get("lines", []):
        price = Decimal(str(line.get("price", 0)))
        qty = Decimal(str(line.get("qty", 1)))
        markup = Decimal(str(line.get("markup", 0)))
        price_with_markup = price * (1 + markup / 100)
        total = price_with_markup * qty
        subtotal += total
        if line.get("taxable", True):
            taxable_total += total
        lines.append(
            {
                "billing_item_id": line.get("billing_item_id"),
                "id": line.get("id"),
                "billing_item": {"external_id": line.get("external_billing_item_id")},
                "markup": line.get("markup", 0),
                "price": money(price),
                "price_with_markup": money(price_with_markup),
                "qty": line.get("qty", 1),
                "taxable": line.get("taxable", True),
                "title": line.get("title", ""),
                "total": money(total),
            }
        )
    discount = Decimal(str(doc.get("discount_amount") or 0))
    tax = taxable_total * Decimal(str(doc.get("tax_rate", 0)))
    total = subtotal + tax - discount
    total_paid = Decimal(str(doc.get("total_paid", 0)))
    is_invoice = doc.get("doc_type") == "Invoice"
    data: dict[str, Any] = {
        "description": doc.get("description"),
        "discount_amount": money(discount),
        "discount_percent": doc.get("discount_percent"),
        "doc_type": doc.get("doc_type", "Estimate"),
        "external_id": doc.get("external_id"),
        "id": doc["id"],
    }
    if not is_invoice:
        data["invoice_id"] = doc.get("invoice_id")
    data.update(
        {
            "job": job_ref(job),
            "job_id": job["id"],
            "lines": lines,
            "number": str(doc.get("number", doc["id"])),
            "paid": total_paid >= total and total > 0,
            "po_number": doc.get("po_number"),
            "status": doc.get("status", "draft"),
            "subtotal": money(subtotal),
            "tax_amount": money(tax),
            "title": doc.get("title"),
            "total": money(total),
            "total_paid": money(total_paid),
            "updated_at": at,
        }
    )
    return ("invoice" if is_invoice else "estimate"), data


def payment(item: dict[str, Any], doc: dict[str, Any], at: str) -> Event:
    """Sample 16."""
    return "payment", {
        "amount": money(item.get("amount", 0)),
        "billing_document_id": doc["id"],
        "billing_document": {"external_id": doc.get("external_id")},
        "card_name": item.get("card_name"),
        "card_number": item.get("card_number"),
        "card_type": item.get("card_type"),
        "id": item["id"],
        "payment_method": item.get("payment_method", "check"),
        "reference": item.get("reference"),
        "result": item.get("result", "success"),
        "transaction_id": item.get("transaction_id"),
        "updated_at": at,
    }


def calendar_event(item: dict[str, Any]) -> Event:
    """Sample 17."""
    return "calendar_event", {
        "uuid": item["uuid"],
        "title": item.get("title", ""),
        "started_at": item.get("started_at"),
        "completed_at": item.get("completed_at"),
        "external_id": item.get("external_id"),
    }


def custom_form(form_name: str, form_data: dict[str, Any], job: dict[str, Any]) -> Event:
    """Sample 18."""
    return "customform", {
        "form_data": dict(form_data),
        "form_name": form_name,
        "job": job_ref(job),
        "job_id": job["id"],
    }

"""The field technician's side of the Dispatch Connect emulator: the actions the control API exposes.

`FieldControl` is mixed into `DispatchEmulator`, so tests keep calling `emulator.accept_job(...)`; it lives
here so the emulator's lifecycle and the technician's actions can each be read on their own. Every action
changes the record store and emits an outbound event in the playbook's shape. `CONTROL_METHODS` names the
actions `POST /control/<name>` may call; the WSGI app imports it from here, not from the emulator.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from connector.sandbox.dispatch_connect import events as ev
from connector.sandbox.dispatch_connect.files import FileHolding
from connector.sandbox.dispatch_connect.queue import OutboundQueue
from connector.sandbox.dispatch_connect.store import RecordStore, json_copy

#: Put types whose sample carries `"ID": null`; the others carry a uuid.
NULL_ACTION_ID_TYPES = frozenset(
    {"job", "appointment", "attachment", "surveyresponse", "offer", "calendar_event"}
)

CONTROL_METHODS = frozenset(
    {
        "accept_job", "reject_job", "pause_job", "complete_job", "cancel_job", "set_job_status",
        "schedule_appointment", "enroute_appointment", "start_appointment", "pause_appointment",
        "complete_appointment", "cancel_appointment",
        "add_note", "update_note", "delete_note", "add_attachment", "submit_survey",
        "create_estimate", "create_invoice", "set_billing_status", "record_payment",
        "create_job", "offer", "auto_assign_technician_failed", "auto_assign_org_failed",
        "calendar_event", "submit_custom_form", "emit", "put_file", "expire_file",
    }
)  # fmt: skip

#: Completing an appointment with these reasons pauses the job (playbook: Job Paused).
PAUSING_COMPLETE_REASONS = frozenset({"no_show", "waiting_for_parts", "waiting_on_authorization"})


class FieldControl(FileHolding):
    """Technician actions over `store`, emitting to `queue`; the host class provides the state below."""

    store: RecordStore
    queue: OutboundQueue
    clock: Callable[[], float]

    def count(self, name: str, n: int = 1) -> None:
        """Counted by the host (the emulator keeps the per-endpoint counters)."""
        raise NotImplementedError

    # -- outbound --------------------------------------------------------------------------------

    def emit(self, put_type: str, data: dict[str, Any], action_id: str | None = None) -> str:
        """Queue one event `{"Actions": [{"ID", "Put": {put_type: data}}]}`; returns the message ID."""
        if action_id is None and put_type not in NULL_ACTION_ID_TYPES:
            action_id = str(uuid.uuid4())
        payload = {"Actions": [{"ID": action_id, "Put": {put_type: json_copy(data)}}]}
        self.count("events")
        return self.queue.put(put_type, payload)

    def _now(self) -> str:
        return ev.timestamp(self.clock())

    def _get(self, record_type: str, ref: Any) -> tuple[str, dict[str, Any]]:
        """A record by external id, '#<id>' key or Dispatch id; KeyError when absent."""
        with self.store.lock:
            table = self.store.table(record_type)
            if str(ref) in table:
                return str(ref), table[str(ref)]
            key, record = self.store.find(record_type, None, str(ref).lstrip("#"))
        if record is None:
            raise KeyError(f"no {record_type} {ref!r}")
        return key, record

    # -- jobs ------------------------------------------------------------------------------------

    def set_job_status(self, external_id: str, status: str, reason: str = "") -> str:
        _, job = self._get("job", external_id)
        with self.store.lock:
            job["status"] = status
            job["status_message"] = reason
            self.store._track_assignment(job)
        return self.emit(*ev.job_status(job, status, reason, self._now()))

    def accept_job(self, external_id: str) -> str:
        return self.set_job_status(external_id, "unscheduled")

    def reject_job(self, external_id: str, reason: str = "") -> str:
        return self.set_job_status(external_id, "rejected", reason)

    def pause_job(self, external_id: str, reason: str = "") -> str:
        return self.set_job_status(external_id, "paused", reason)

    def complete_job(self, external_id: str, reason: str = "") -> str:
        return self.set_job_status(external_id, "complete", reason)

    def cancel_job(self, external_id: str, reason: str = "") -> str:
        return self.set_job_status(external_id, "canceled", reason)

    def create_job(
        self,
        *,
        title: str,
        address: dict[str, Any],
        customer: dict[str, Any],
        organization_external_id: str | None = None,
        external_id: str | None = None,
        shape: str = "gateway",
        **fields: Any,
    ) -> int:
        """A job created on the Dispatch side (status offered); shape picks sample 09, 02 or 08."""
        with self.store.lock:
            org = self.store.organization_for(organization_external_id) or {}
            job = {**fields, "title": title, "address": dict(address), "status": "offered"}
            job.update(id=self.store.next_id(), external_id=external_id)
            job["external_organization_id"] = organization_external_id
            job["organization_id"] = org.get("id")
            cust = {**customer, "id": customer.get("id") or self.store.next_id()}
            job["customer"] = cust
            self.store.table("job")[external_id or f"#{job['id']}"] = job
            self.store._track_assignment(job)
        self.emit(*ev.job_offered(job, cust, org, self._now(), shape))
        return int(job["id"])

    def offer(self, external_id: str, status: str = "offered", reason: str = "") -> str:
        """An offer event (sample 07) for a job sent to match: 'offered' or 'canceled'."""
        _, job = self._get("job", external_id)
        return self.emit(*ev.offer(job, status, reason, self._now()))

    # -- appointments ----------------------------------------------------------------------------

    def schedule_appointment(
        self, job_external_id: str, start: str, end: str, *, external_id: str | None = None
    ) -> str:
        """Schedule (or reschedule) a job's appointment; returns the appointment's key."""
        _, job = self._get("job", job_external_id)
        with self.store.lock:
            table = self.store.table("appointment")
            key = external_id or f"{job_external_id}"
            appt = table.get(key) or {"id": self.store.next_id(), "external_id": key}
            appt.update(
                status="scheduled",
                start_time=start,
                end_time=end,
                job_id=job["id"],
                external_job_id=job.get("external_id"),
            )
            table[key] = appt
            job["status"] = "scheduled"
        self.emit(*ev.appointment(appt, job, self._now()))
        return key

    def _appointment_status(self, ref: str, status: str, reason: str) -> tuple[dict[str, Any], Any]:
        _, appt = self._get("appointment", ref)
        _, job = self._get("job", appt.get("external_job_id") or f"#{appt['job_id']}")
        with self.store.lock:
            appt["status"] = status
            appt["status_message"] = reason
        self.emit(*ev.appointment(appt, job, self._now()))
        return appt, job

    def enroute_appointment(self, external_id: str) -> None:
        self._appointment_status(external_id, "enroute", "")

    def start_appointment(self, external_id: str) -> None:
        self._appointment_status(external_id, "started", "")

    def pause_appointment(self, external_id: str, reason: str = "") -> None:
        self._appointment_status(external_id, "paused", reason)

    def cancel_appointment(self, external_id: str, reason: str = "") -> None:
        self._appointment_status(external_id, "canceled", reason)

    def complete_appointment(self, external_id: str, reason: str = "") -> None:
        """Also completes the job ('ready_for_billing', no other open appointment) or pauses it
        ('no_show', 'waiting_for_parts'), as the playbook's Job Completed/Paused sections say."""
        _, job = self._appointment_status(external_id, "complete", reason)
        key = job.get("external_id") or f"#{job['id']}"
        if reason in PAUSING_COMPLETE_REASONS:
            self.pause_job(key, reason)
        elif reason == "ready_for_billing":
            with self.store.lock:
                open_ = [
                    a
                    for a in self.store.table("appointment").values()
                    if a.get("job_id") == job["id"] and a["status"] not in ("complete", "canceled")
                ]
            if not open_:
                self.complete_job(key, reason)

    # -- notes, attachments, surveys, forms ------------------------------------------------------

    def add_note(self, job_external_id: str, text: str) -> int:
        _, job = self._get("job", job_external_id)
        with self.store.lock:
            note: dict[str, Any] = {"id": self.store.next_id(), "description": text}
            note["deleted_at"] = None
            note.update(job_id=job["id"], external_job_id=job.get("external_id"), kind="note")
            self.store.table("attachment")[f"#{note['id']}"] = note
        self.emit(*ev.note(note, job, self._now()))
        return int(note["id"])

    def _note_event(self, note_id: int | str, **changes: Any) -> str:
        _, note = self._get("attachment", f"#{str(note_id).lstrip('#')}")
        _, job = self._get("job", f"#{note['job_id']}")
        with self.store.lock:
            note.update(changes)
        builder = ev.attachment if note.get("file_token") else ev.note
        return self.emit(*builder(note, job, self._now()))

    def update_note(self, note_id: int | str, text: str) -> str:
        return self._note_event(note_id, description=text)

    def delete_note(self, note_id: int | str) -> str:
        return self._note_event(note_id, deleted_at=self._now())

    def add_attachment(self, job_external_id: str, name: str, file_token: str | None = None) -> int:
        _, job = self._get("job", job_external_id)
        with self.store.lock:
            item: dict[str, Any] = {"id": self.store.next_id(), "name": name, "deleted_at": None}
            item.update(file_token=file_token or str(uuid.uuid4()), job_id=job["id"])
            item["external_job_id"] = job.get("external_id")
            self.store.table("attachment")[f"#{item['id']}"] = item
        self.hold_file(item["file_token"], name)
        self.emit(*ev.attachment(item, job, self._now()))
        return int(item["id"])

    def submit_survey(
        self,
        job_external_id: str,
        rating: int,
        message: str = "",
        account_rating: int | None = None,
        account_message: str = "",
    ) -> int:
        _, job = self._get("job", job_external_id)
        with self.store.lock:
            item: dict[str, Any] = {"id": self.store.next_id(), "rating": rating, "message": message}
            item.update(account_rating=account_rating, account_message=account_message)
            self.store.table("surveyresponse")[f"#{item['id']}"] = item
        self.emit(*ev.survey(item, job, self._now()))
        return int(item["id"])

    def submit_custom_form(self, job_external_id: str, form_name: str, form_data: dict[str, Any]) -> str:
        _, job = self._get("job", job_external_id)
        return self.emit(*ev.custom_form(form_name, form_data, job))

    def calendar_event(
        self, title: str, started_at: str, completed_at: str, external_id: str | None = None
    ) -> str:
        item = {"uuid": str(uuid.uuid4()), "title": title, "external_id": external_id}
        item.update(started_at=started_at, completed_at=completed_at)
        self.emit(*ev.calendar_event(item))
        return str(item["uuid"])

    def auto_assign_technician_failed(
        self,
        job_external_id: str,
        appointment_external_id: str | None = None,
        msg_id: str | None = None,
        message: str = "No technicians found for availability window",
    ) -> str:
        return self.emit(
            *ev.auto_assign_technician_failed(
                job_external_id, appointment_external_id or job_external_id, msg_id, message
            )
        )

    def auto_assign_org_failed(
        self,
        external_id: str,
        msg_id: str | None = None,
        message: str = "No matching organizations found",
    ) -> str:
        _, job = self._get("job", external_id)
        return self.emit(*ev.auto_assign_org_failed(job["id"], external_id, msg_id, message))

    # -- billing ---------------------------------------------------------------------------------

    def _create_billing(self, doc_type: str, job_external_id: str, **fields: Any) -> int:
        _, job = self._get("job", job_external_id)
        with self.store.lock:
            doc = {"status": "draft", **fields, "doc_type": doc_type, "id": self.store.next_id()}
            doc.update(job_id=job["id"], external_job_id=job.get("external_id"))
            doc["lines"] = [
                {"id": str(uuid.uuid4()), "billing_item_id": None, **line} for line in fields.get("lines", [])
            ]
            self.store.table("billing_document")[doc.get("external_id") or f"#{doc['id']}"] = doc
        self.emit(*ev.billing_document(doc, job, self._now()))
        return int(doc["id"])

    def create_estimate(self, job_external_id: str, **fields: Any) -> int:
        """fields: lines=[{external_billing_item_id, title, qty, price, taxable, markup}], external_id,
        status, number, po_number, discount_amount, title, description."""
        return self._create_billing("Estimate", job_external_id, **fields)

    def create_invoice(self, job_external_id: str, **fields: Any) -> int:
        return self._create_billing("Invoice", job_external_id, **fields)

    def set_billing_status(self, document: str | int, status: str) -> str:
        """Estimate draft -> sent -> won/lost; invoice draft -> sent -> balance_outstanding -> paid."""
        _, doc = self._get("billing_document", document)
        _, job = self._get("job", f"#{doc['job_id']}")
        with self.store.lock:
            doc["status"] = status
        return self.emit(*ev.billing_document(doc, job, self._now()))

    def record_payment(
        self, document: str | int, amount: float | str, payment_method: str = "check", **fields: Any
    ) -> int:
        _, doc = self._get("billing_document", document)
        with self.store.lock:
            item = {**fields, "id": self.store.next_id(), "amount": amount}
            item["payment_method"] = payment_method
            doc["total_paid"] = float(doc.get("total_paid", 0)) + float(amount)
            self.store.table("payment")[f"#{item['id']}"] = item
        self.emit(*ev.payment(item, doc, self._now()))
        return int(item["id"])

"""Records held by the Dispatch Connect emulator and how `agent/in` records are applied to them.

Upsert by `external_id` (falling back to the Dispatch `id` the gateway samples send), lenient the way the
playbook describes ("Typical errors"): invalid e-mails and phone numbers are stripped, and only the errors the
playbook names (address without state and zip, technician without e-mail and phone) or broken references
become `err` events.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from connector.dispatch_connect.canonical import InboundRecord
from connector.sandbox.dispatch_connect import events as ev
from connector.sandbox.dispatch_connect.rules import RecordError, Rules, ack_external_id, natural_key

__all__ = ["RecordError", "RecordStore", "json_copy", "key_organization", "strip_invalid_contacts"]

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE_CHARS_RE = re.compile(r"^\+?[\d\s().\-]+$")


def valid_email(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL_RE.match(value.strip()))


def valid_phone(value: Any) -> bool:
    if not isinstance(value, str) or not _PHONE_CHARS_RE.match(value.strip()):
        return False
    return 10 <= sum(ch.isdigit() for ch in value) <= 15


_T = TypeVar("_T")
#: Types whose `ui_options` the playbook sends beside header and record (DNM Match's offer).
SIBLING_UI_OPTIONS_TYPES = frozenset({"offer"})


def json_copy(value: _T) -> _T:
    """Deep copy of JSON-shaped data (dicts, lists, scalars). copy.deepcopy's memo bookkeeping made it the
    emulator's largest cost, and the emulator shares a process (and its GIL) with the code under test."""
    data: Any = value
    if type(data) is dict:
        return cast(_T, {key: json_copy(item) for key, item in data.items()})
    if type(data) is list:
        return cast(_T, [json_copy(item) for item in data])
    return value


def _strip_contact_fields(record: dict[str, Any], where: str, warnings: list[str]) -> None:
    if "email" in record and record["email"] not in (None, "") and not valid_email(record["email"]):
        warnings.append(f"{where}email stripped (invalid)")
        del record["email"]
    phone = record.get("phone_number")
    if phone not in (None, "") and not valid_phone(phone):
        warnings.append(f"{where}phone_number stripped (invalid)")
        del record["phone_number"]
    numbers = record.get("phone_numbers")
    if isinstance(numbers, list):
        kept = [n for n in numbers if isinstance(n, dict) and valid_phone(n.get("number"))]
        if len(kept) != len(numbers):
            warnings.append(f"{where}phone_numbers: {len(numbers) - len(kept)} invalid stripped")
        record["phone_numbers"] = kept
    for contact in record.get("contacts") or []:
        methods = contact.get("contact_methods") if isinstance(contact, dict) else None
        if isinstance(methods, list):
            contact["contact_methods"] = [
                m
                for m in methods
                if not isinstance(m, dict)
                or (m.get("method") == "email" and valid_email(m.get("value")))
                or (m.get("method") == "phone" and valid_phone(m.get("value")))
                or m.get("method") not in ("email", "phone")
            ]


def strip_invalid_contacts(record: dict[str, Any]) -> list[str]:
    """Remove invalid e-mails and phone numbers in place (the playbook's leniency); say what went."""
    warnings: list[str] = []
    _strip_contact_fields(record, "", warnings)
    for nested in ("customer", "organization"):
        if isinstance(record.get(nested), dict):
            _strip_contact_fields(record[nested], f"{nested}.", warnings)
    return warnings


def _has_contact(record: dict[str, Any]) -> bool:
    return bool(record.get("email") or record.get("phone_number") or record.get("phone_numbers"))


def key_organization(public_key: str) -> dict[str, Any] | None:
    """The organization an `organization|<id>|<name>` key belongs to; None for any other key (enterprise)."""
    kind, _, rest = public_key.partition("|")
    dispatch_id, _, name = rest.partition("|")
    if kind != "organization" or not dispatch_id:
        return None
    return {"id": int(dispatch_id) if dispatch_id.isdigit() else dispatch_id, "name": name}


class RecordStore:
    """All canonical records by type and key, plus each job's provider history. Thread-safe.

    `key_organization` is the organization of the account's key (records that name none are its own)."""

    def __init__(self, clock: Callable[[], float], key_organization: dict[str, Any] | None = None) -> None:
        self.clock = clock
        self.rules = Rules(self.find, key_organization)
        self.lock = threading.RLock()
        self._ids = itertools.count(10001)
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.job_assignments: dict[str, list[dict[str, Any]]] = {}
        self.warnings: list[str] = []

    def next_id(self) -> int:
        return next(self._ids)

    def table(self, record_type: str) -> dict[str, dict[str, Any]]:
        return self.tables.setdefault(record_type, {})

    def snapshot(self, record_type: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return json_copy(self.tables.get(record_type, {}))

    def find(self, record_type: str, external_id: Any = None, dispatch_id: Any = None) -> Any:
        """(key, record) by external id, else by Dispatch id; (None, None) when absent."""
        table = self.table(record_type)
        if external_id not in (None, "") and str(external_id) in table:
            return str(external_id), table[str(external_id)]
        if dispatch_id not in (None, ""):
            for key, record in table.items():
                if str(record.get("id")) == str(dispatch_id):
                    return key, record
        return None, None

    def organization_for(self, external_org_id: Any) -> dict[str, Any] | None:
        """The provider of a job created on the Dispatch side (control.create_job), made when unknown; records
        arriving through agent/in must name an existing one instead (rules.py)."""
        if external_org_id in (None, ""):
            return None
        _, org = self.find("organization", external_org_id)
        if org is None:
            org = {"id": self.next_id(), "external_id": str(external_org_id)}
            self.table("organization")[str(external_org_id)] = org
        return dict(org)

    # -- apply -----------------------------------------------------------------------------------

    def apply(self, item: InboundRecord, msg_id: Any) -> ev.Event:
        """Apply one record; return its `ack` event, or its `err` event when Dispatch would refuse it."""
        record = json_copy(item.record)
        external_id = ack_external_id(item.record_type, record)
        with self.lock:
            self.warnings.extend(
                f"{item.record_type} {external_id}: {w}" for w in strip_invalid_contacts(record)
            )
            try:
                if item.header.get("action") == "delete":
                    stored = self._delete(item.record_type, record)
                else:
                    stored = self._apply(item.record_type, record, item.attachment, item.siblings)
            except RecordError as exc:
                message = f"Problem writing {item.record_type} ({exc})"
                return ev.err(item.record_type, external_id, msg_id, message)
        org_id = stored["id"] if item.record_type == "organization" else stored.get("organization_id")
        ack_id = stored.get("external_id") or ack_external_id(item.record_type, stored)
        return ev.ack(stored["id"], ack_id, msg_id, item.record_type, org_id)

    def _delete(self, record_type: str, record: dict[str, Any]) -> dict[str, Any]:
        """`"action": "delete"` in the header (the playbook's way to cancel a calendar event)."""
        key, existing = self.find(record_type, natural_key(record_type, record), record.get("id"))
        if existing is None or key is None:
            raise RecordError({"id": [f"{record_type} {natural_key(record_type, record)} not found"]})
        return self.table(record_type).pop(key)

    def _apply(
        self,
        record_type: str,
        record: dict[str, Any],
        attachment: str | None = None,
        siblings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upsert one record. An offer's sibling `ui_options` (DNM Match) is kept on the offer, where a job's
        own `ui_options` is (the offered event reads it there); other unknown siblings are ignored."""
        natural = natural_key(record_type, record)
        key, existing = self.find(record_type, natural, record.get("id"))
        if existing is None and record.get("id") not in (None, "") and not natural:
            raise RecordError({"id": [f"{record_type} {record['id']} not found"]})
        merged = {**(existing or {}), **record}
        if attachment is not None:
            merged["attachment"] = attachment
        ui_options = (siblings or {}).get("ui_options")
        if record_type in SIBLING_UI_OPTIONS_TYPES and isinstance(ui_options, dict):
            merged["ui_options"] = json_copy(ui_options)
        self._validate(record_type, merged, existing is None)
        self.rules.check(record_type, merged, attachment)
        if record_type == "job":
            self._link_customer(merged)
            if existing is not None:
                merged = self._reassign_if_needed(existing, merged, record)
        if existing is None or "id" not in merged:
            merged["id"] = self.next_id()
        if record_type == "job":
            merged.setdefault("status", "offered")
            self._track_assignment(merged)
        if key is None:
            key = natural or f"#{merged['id']}"
        self.table(record_type)[key] = merged
        return merged

    def _validate(self, record_type: str, merged: dict[str, Any], is_new: bool) -> None:
        if record_type == "job":
            address = merged.get("address")
            if isinstance(address, dict) or is_new:
                address = address if isinstance(address, dict) else {}
                if not address.get("state") and not address.get("postal_code"):
                    raise RecordError({"address": ["is not complete: both state and zip are missing"]})
            status = merged.get("status")
            if status is not None and status not in ev.JOB_STATUSES:
                raise RecordError(
                    {
                        "status": ["is not included in the list"],
                        "workflow": ["Job status is not in given workflow"],
                    }
                )
        if record_type == "user" and not _has_contact(merged):
            raise RecordError({"contact": ["missing email and phone number - at least one required"]})

    def _link_customer(self, job: dict[str, Any]) -> None:
        customer = job.get("customer")
        if isinstance(customer, dict) and customer.get("external_id"):
            _, existing = self.find("customer", customer["external_id"])
            stored = {**(existing or {}), **customer}
            stored.setdefault("id", self.next_id())
            if job.get("external_organization_id"):
                stored.setdefault("external_organization_id", job["external_organization_id"])
            self.table("customer")[str(customer["external_id"])] = stored
            job["external_customer_id"] = customer["external_id"]

    def _reassign_if_needed(
        self, old: dict[str, Any], new: dict[str, Any], sent: dict[str, Any]
    ) -> dict[str, Any]:
        """A new external_organization_id cancels the job for the old provider and creates it anew."""
        before = old.get("external_organization_id")
        after = new.get("external_organization_id")
        if before in (None, "") or after in (None, "") or before == after:
            return new
        for assignment in self.job_assignments.get(str(old.get("external_id")), []):
            if assignment["id"] == old["id"]:
                assignment["status"] = "canceled"
        replacement = {k: v for k, v in new.items() if k != "id"}
        replacement["status"] = sent.get("status") or "offered"
        return replacement

    def _track_assignment(self, job: dict[str, Any]) -> None:
        history = self.job_assignments.setdefault(str(job.get("external_id") or f"#{job['id']}"), [])
        for assignment in history:
            if assignment["id"] == job["id"]:
                assignment["status"] = job.get("status")
                return
        history.append(
            {
                "id": job["id"],
                "external_organization_id": job.get("external_organization_id"),
                "organization_id": job.get("organization_id"),
                "status": job.get("status"),
            }
        )

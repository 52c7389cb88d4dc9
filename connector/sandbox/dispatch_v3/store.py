"""Records held by the Dispatch v3 emulator: jobs, appointments, customers, service providers.

One id sequence serves every kind, so a client that sends a job id where an appointment id belongs gets a 404
instead of someone else's record. Times are whole seconds rendered `2017-01-01T05:00:00Z`, the seed's format;
that format sorts as text in time order, which the list endpoints rely on.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Record = dict[str, Any]

#: The job's wire fields, in the contract's order.
JOB_FIELDS = (
    "id", "external_ids", "status", "status_message", "title", "description", "service_type", "workflow",
    "orchestration", "service_provider_id", "primary_contact_id", "created_at", "updated_at",
)  # fmt: skip


def iso(seconds: float) -> str:
    """ISO 8601 UTC with `Z`, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_iso(text: Any) -> float:
    """Seconds since the epoch; a time without an offset is UTC. ValueError when `text` is not ISO 8601."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not an ISO 8601 time")
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def appointment_times(start: float, duration: int) -> dict[str, Any]:
    """The appointment's time fields: `time` + `duration` as booked, `start_time`/`end_time` the same slot."""
    return {
        "time": iso(start),
        "duration": duration,
        "start_time": iso(start),
        "end_time": iso(start + duration),
    }


class V3Store:
    """Every record by id, plus the Work Orders received. Callers hold `lock` across read-modify-write."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self._ids = itertools.count(1001)
        self.jobs: dict[int, Record] = {}
        self.appointments: dict[int, Record] = {}
        self.customers: dict[int, Record] = {}
        self.providers: dict[int, Record] = {}
        self.work_orders: list[Record] = []

    def next_id(self) -> int:
        return next(self._ids)

    def now(self) -> str:
        return iso(self.clock())

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def touch(self, record: Record) -> None:
        record["updated_at"] = self.now()

    # -- lookups ---------------------------------------------------------------------------------

    def job(self, ref: Any) -> Record:
        """A job by Dispatch id, else by external id (the newest job holding it); KeyError when absent."""
        with self.lock:
            job_id = _as_id(ref)
            if job_id is not None and job_id in self.jobs:
                return self.jobs[job_id]
            for job in reversed(self.jobs.values()):
                if str(ref) in job["external_ids"]:
                    return job
        raise KeyError(f"no job {ref!r}")

    def appointment(self, ref: Any) -> Record:
        appointment_id = _as_id(ref)
        with self.lock:
            if appointment_id is not None and appointment_id in self.appointments:
                return self.appointments[appointment_id]
        raise KeyError(f"no appointment {ref!r}")

    def job_appointments(self, job_id: int, statuses: tuple[str, ...] | None = None) -> list[Record]:
        """The job's appointments, oldest first, optionally only those in `statuses`."""
        with self.lock:
            return [
                a
                for a in self.appointments.values()
                if a["job_id"] == job_id and (statuses is None or a["status"] in statuses)
            ]

    def snapshot(self, table: dict[int, Record]) -> list[Record]:
        with self.lock:
            return copy.deepcopy(list(table.values()))

    # -- work orders -----------------------------------------------------------------------------

    def create_work_order(self, doc: Record, status: str) -> dict[str, int | None]:
        """Create what a (valid, normalized) Work Order describes; the four ids of the 201 answer."""
        window = first_window(doc.get("appointment_windows"))  # ValueError before anything is created
        with self.lock:
            providers = [
                self.match_provider(p) for p in doc.get("service_providers") or [] if isinstance(p, dict)
            ]
            contact = primary_contact(doc.get("contacts"))
            customer = self.match_customer(contact) if contact is not None else None
            now = self.now()
            job: Record = {
                "id": self.next_id(),
                "external_ids": [str(x) for x in doc.get("external_ids") or []],
                "status": status,
                "status_message": None,
                "title": doc.get("title"),
                "description": doc.get("description"),
                "service_type": doc.get("service_type"),
                "workflow": doc.get("workflow"),
                "orchestration": doc.get("orchestration"),
                "service_provider_id": providers[0]["id"] if providers else None,
                "primary_contact_id": customer["id"] if customer else None,
                "created_at": now,
                "updated_at": now,
            }
            self.jobs[job["id"]] = job
            appointment = None
            if window is not None:  # `draft`: the provider has not picked a time in the windows yet
                appointment = self.add_appointment(job["id"], "draft", window[0], window[1])
            self.work_orders.append({"job_id": job["id"], "document": copy.deepcopy(doc)})
        return {
            "service_provider_id": job["service_provider_id"],
            "primary_contact_id": job["primary_contact_id"],
            "job_id": job["id"],
            "appointment_id": appointment["id"] if appointment else None,
        }

    def add_appointment(self, job_id: int, status: str, start: float, duration: int) -> Record:
        with self.lock:
            appointment: Record = {"id": self.next_id(), "job_id": job_id, "status": status}
            appointment["status_message"] = None
            appointment.update(appointment_times(start, duration))
            appointment["updated_at"] = self.now()
            self.appointments[appointment["id"]] = appointment
        return appointment

    def match_provider(self, wanted: Record) -> Record:
        """The seed's order: Dispatch `id`, then any of `external_ids`, then name + address + email + phone
        (all four given and equal); a new provider from the data given otherwise."""
        provider_id = _as_id(wanted.get("id"))
        if provider_id is not None and provider_id in self.providers:
            return self.providers[provider_id]
        external_ids = list(dict.fromkeys(str(x) for x in wanted.get("external_ids") or []))
        for provider in self.providers.values():
            if set(external_ids) & set(provider["external_ids"]):
                return provider
        keys = ("name", "address", "email", "phone_number")
        if all(wanted.get(k) not in (None, "", {}) for k in keys):
            for provider in self.providers.values():
                if all(provider.get(k) == wanted.get(k) for k in keys):
                    return provider
        created: Record = {"id": self.next_id(), **{k: copy.deepcopy(wanted.get(k)) for k in keys}}
        created["external_ids"] = external_ids
        self.providers[created["id"]] = created
        return created

    def match_customer(self, contact: Record) -> Record:
        """The primary contact as a customer: an existing one sharing an external id, else a new one."""
        external_ids = [str(x) for x in contact.get("external_ids") or []]
        for customer in self.customers.values():
            if set(external_ids) & set(customer["external_ids"]):
                return customer
        created = {k: copy.deepcopy(v) for k, v in contact.items() if k != "primary"}
        created.update(id=self.next_id(), external_ids=external_ids)
        self.customers[created["id"]] = created
        return created


def primary_contact(contacts: Any) -> Record | None:
    """The contact marked primary (the validator insists on exactly one), else the first."""
    if not isinstance(contacts, list):
        return None
    people = [c for c in contacts if isinstance(c, dict)]
    return next((c for c in people if c.get("primary") is True), people[0] if people else None)


def first_window(windows: Any) -> tuple[float, int] | None:
    """(start, duration in seconds) of the first appointment window; ValueError when its times are not ISO."""
    if not isinstance(windows, list) or not windows or not isinstance(windows[0], dict):
        return None
    start = parse_iso(windows[0].get("start_time"))
    end = parse_iso(windows[0].get("end_time"))
    return start, max(0, int(end - start))


def _as_id(ref: Any) -> int | None:
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref
    if isinstance(ref, str) and ref.strip().isdigit():
        return int(ref)
    return None

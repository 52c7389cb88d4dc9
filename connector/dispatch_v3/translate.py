"""What the status reconciler read, in the engine's words: a v3 job or appointment as a ReportedEvent.

v3 speaks the shared job and appointment statuses (docs/wire-formats.md), so the status table is the
identity; only the shapes differ from Dispatch Connect's: `external_ids` lists, `job_id` on appointments,
`time` + `duration` for a window that has no `start_time`/`end_time`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.errors import MalformedDelivery
from connector.ports import Report, ReportedEvent
from connector.text import storable

JOB_STATUSES = {
    "offered": "offered",
    "unscheduled": "unscheduled",
    "scheduled": "scheduled",
    "enroute": "enroute",
    "started": "started",
    "paused": "paused",
    "complete": "complete",
    "canceled": "canceled",
    "rejected": "rejected",
}
APPOINTMENT_STATUSES = {s: s for s in ("draft", "scheduled", "enroute", "started", "complete", "canceled")}


def translate_item(system: str, payload: Any) -> Iterator[Report]:
    if not isinstance(payload, Mapping) or payload.get("type") not in ("job", "appointment"):
        raise MalformedDelivery("a Dispatch v3 delivery is {'type': 'job'|'appointment', ...}")
    kind = str(payload["type"])
    item = payload.get(kind)
    if not isinstance(item, Mapping) or item.get("id") is None:
        raise MalformedDelivery(f"a Dispatch v3 {kind} delivery has no {kind} object with an id")
    item = storable(dict(item))
    yield _job(system, item) if kind == "job" else _appointment(system, item)


def _job(system: str, job: dict[str, Any]) -> ReportedEvent:
    external_ids = [str(x) for x in job.get("external_ids") or [] if isinstance(x, str | int)]
    status = JOB_STATUSES.get(str(job.get("status")), str(job.get("status") or "")) or None
    return ReportedEvent(
        system,
        "job",
        external_id=external_ids[0] if external_ids else None,
        remote_id=str(job["id"]),
        status=status,
        updated_at=parse_time(job.get("updated_at")),
        reason=_text(job.get("status_message")),
        attributes=job,
    )


def _appointment(system: str, appointment: dict[str, Any]) -> ReportedEvent:
    start = parse_time(appointment.get("start_time")) or parse_time(appointment.get("time"))
    end = parse_time(appointment.get("end_time"))
    if end is None and start is not None and isinstance(appointment.get("duration"), int | float):
        end = start + timedelta(seconds=float(appointment["duration"]))
    status = str(appointment.get("status") or "")
    return ReportedEvent(
        system,
        "appointment",
        external_id=None,
        remote_id=str(appointment["id"]),
        status=APPOINTMENT_STATUSES.get(status, status) or None,
        updated_at=parse_time(appointment.get("updated_at")),
        reason=_text(appointment.get("status_message")),
        parent_remote_id=_text(appointment.get("job_id")),
        window_start=start,
        window_end=end,
        attributes=appointment,
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

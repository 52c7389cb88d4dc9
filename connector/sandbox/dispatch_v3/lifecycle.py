"""Status changes of jobs and appointments, checked by the shared state machines (`statemachines`).

The client's PATCHes and the field actions go through the same checks (`request_change`, the strict
policy), so the emulator refuses what the project's own rules refuse. Where the contract's statuses and the
shared machines differ, the emulator bridges them:

- A job's `enroute` and `started` (the contract's field statuses) are not states of the shared job machine;
  they are read as its `scheduled` (so `started -> complete` or `-> canceled` is allowed) and are only ever
  set by the job's appointment moving, never by a PATCH (which the machine refuses as an unknown status).
- An appointment's `draft` (created from a work order's windows) is read as "not yet booked": it may become
  `scheduled` (the machine's initial state) or `canceled`, nothing else.
- Booking an appointment for an `offered` job accepts it on the provider's behalf first (`offered ->
  unscheduled -> scheduled`), as the seed's "Accept on behalf of Service Provider" describes.

Every check runs before anything is written, so a refusal leaves job and appointment as they were.
"""

from __future__ import annotations

from datetime import datetime

from connector.sandbox.dispatch_v3.store import Record, V3Store, appointment_times, parse_iso
from statemachines import EntityState, StateMachineError, TransitionRefused, request_change

#: Contract job statuses that the shared job machine knows as `scheduled`.
JOB_FIELD_STATES = ("enroute", "started")
#: Appointments that still hold a booked visit.
BOOKED = ("scheduled", "enroute", "started")
#: Appointments a job's cancellation or rejection cancels with it.
OPEN = ("draft", *BOOKED)


def _job_machine_state(status: str) -> str:
    return "scheduled" if status in JOB_FIELD_STATES else status


def job_target(job: Record, target: str, at: datetime) -> str | None:
    """The job's status after a change to `target`, None when it stays; StateMachineError when refused."""
    entity = EntityState(state=_job_machine_state(job["status"]))
    result = request_change("job", entity, target, at=at)
    return None if result.from_state == result.to_state else target


def schedule_target(job: Record, at: datetime) -> str | None:
    """`scheduled`, accepting an offered job first; None when the job is already scheduled (or on the way)."""
    entity = EntityState(state=_job_machine_state(job["status"]))
    if entity.state == "scheduled":
        return None
    if entity.state == "offered":
        request_change("job", entity, "unscheduled", at=at)
    request_change("job", entity, "scheduled", at=at)
    return "scheduled"


def appointment_target(appointment: Record, target: str, at: datetime) -> str | None:
    """The appointment's status after a change to `target`, None when it stays; raises when refused."""
    current = appointment["status"]
    if current == "draft" and target in ("draft", "canceled"):
        return None if target == "draft" else "canceled"
    entity = EntityState(state=None if current == "draft" else current)
    try:
        result = request_change("appointment", entity, target, at=at)
    except TransitionRefused as exc:
        if current == "draft":  # the machine would say "(new record)": name the status the client sees
            raise TransitionRefused("appointment", current, target, ("scheduled", "canceled")) from exc
        raise
    return None if result.from_state == result.to_state else target


def set_status(store: V3Store, record: Record, status: str, message: str | None = None) -> None:
    record["status"] = status
    record["status_message"] = message or None
    store.touch(record)


def change_job(store: V3Store, job: Record, target: str, reason: str | None = None) -> bool:
    """Move a job; canceling or rejecting it cancels its open appointments. False when nothing changed."""
    with store.lock:
        new = job_target(job, target, store.at())
        if new is None:
            return False
        set_status(store, job, new, reason)
        if new in ("canceled", "rejected"):
            for appointment in store.job_appointments(job["id"], OPEN):
                set_status(store, appointment, "canceled", f"job {new}")
        return True


def change_appointment(store: V3Store, appointment: Record, target: str, reason: str | None = None) -> bool:
    """Move an appointment and, with it, its job. False when nothing changed."""
    with store.lock:
        at = store.at()
        new = appointment_target(appointment, target, at)
        if new is None:
            return False
        job = store.jobs[appointment["job_id"]]
        job_new = _job_follows(store, job, appointment, new, at)
        set_status(store, appointment, new, reason)
        if job_new is not None:
            set_status(store, job, job_new)
        return True


def _job_follows(store: V3Store, job: Record, appointment: Record, new: str, at: datetime) -> str | None:
    """What the job becomes when one of its appointments enters `new` (raises only for `scheduled`).

    Booked: the job is scheduled. On the way or started: the job shows it, if it is scheduled. Complete: the
    job is complete when no other appointment is still booked. Canceled: the job stays as it is.
    """
    if new == "scheduled":
        return schedule_target(job, at)
    if new in JOB_FIELD_STATES:
        in_field = _job_machine_state(job["status"]) == "scheduled" and job["status"] != new
        return new if in_field else None
    if new == "complete":
        others = [a for a in store.job_appointments(job["id"], BOOKED) if a["id"] != appointment["id"]]
        if others:
            return None
        try:
            return job_target(job, "complete", at)
        except StateMachineError:
            return None
    return None


def schedule_job(store: V3Store, job: Record) -> bool:
    """Schedule the job (accepting it first when offered); False when it already is."""
    with store.lock:
        new = schedule_target(job, store.at())
        if new is not None:
            set_status(store, job, new)
        return new is not None


def book_appointment(store: V3Store, job: Record, status: str, start: float, duration: int) -> Record:
    """A new appointment (`scheduled` or `draft`); a scheduled one schedules its job."""
    with store.lock:
        job_new = schedule_target(job, store.at()) if status == "scheduled" else None
        appointment = store.add_appointment(job["id"], status, start, duration)
        if job_new is not None:
            set_status(store, job, job_new)
        return appointment


def reschedule(store: V3Store, appointment: Record, start: float | None, duration: int | None) -> bool:
    """New time and/or duration for an appointment; False when both are as they were."""
    with store.lock:
        old_start = parse_iso(appointment["time"])
        times = appointment_times(
            old_start if start is None else start,
            appointment["duration"] if duration is None else duration,
        )
        if all(appointment[k] == v for k, v in times.items()):
            return False
        appointment.update(times)
        store.touch(appointment)
        return True

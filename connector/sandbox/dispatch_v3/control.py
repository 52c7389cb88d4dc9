"""The field's side of the Dispatch v3 emulator: what providers and technicians do to a job.

`FieldControl` is mixed into `DispatchV3Emulator`; every action is also `POST /control/<name>` with a JSON
object of keyword arguments (`CONTROL_METHODS` maps the name to the method: `start` is `start_work`, because
the emulator's own `start()` starts the server). `job` is a Dispatch job id or an external id. The actions
pass the same state-machine checks as the API's PATCHes (see `lifecycle.py`); a refused one raises
`StateMachineError` or `FieldRefused` (the control API answers 409). Each returns the changed record as the
API shows it.
"""

from __future__ import annotations

import copy

from connector.sandbox.dispatch_v3 import lifecycle
from connector.sandbox.dispatch_v3.store import Record, V3Store, parse_iso

#: Control action name -> method name.
CONTROL_METHODS = {
    "accept": "accept",
    "schedule": "schedule",
    "enroute": "enroute",
    "start": "start_work",
    "complete": "complete",
    "cancel": "cancel",
    "reject": "reject",
    # seeding the look-ups (lookups.LookupControl)
    "add_technician": "add_technician",
    "book_technician": "book_technician",
    "add_provider": "add_provider",
}


class FieldRefused(Exception):
    """A field action that makes no sense for the job as it is (e.g. start with no booked appointment)."""


class FieldControl:
    """Field actions over `store`; the host class provides it."""

    store: V3Store

    def accept(self, job: int | str) -> Record:
        """The provider accepts the offered job (`unscheduled`)."""
        return self._job_change(job, "unscheduled")

    def reject(self, job: int | str, reason: str = "") -> Record:
        return self._job_change(job, "rejected", reason)

    def cancel(self, job: int | str, reason: str = "") -> Record:
        """Cancels the job and its open appointments."""
        return self._job_change(job, "canceled", reason)

    def schedule(self, job: int | str, start_time: str | None = None, duration_s: int = 3600) -> Record:
        """Book the job's visit: its draft or booked appointment gets the time, or a new one is created.

        `start_time` defaults to the appointment's own time, else now. The job becomes `scheduled` (an offered
        job is accepted first). Returns the appointment.
        """
        if isinstance(duration_s, bool) or not isinstance(duration_s, int) or duration_s <= 0:
            raise ValueError("duration_s must be a positive integer")
        start = parse_iso(start_time) if start_time is not None else None
        store = self.store
        with store.lock:
            record = store.job(job)
            lifecycle.schedule_target(record, store.at())  # refuses before anything changes
            pending = store.job_appointments(record["id"], ("draft", "scheduled"))
            if not pending:
                when = start if start is not None else store.clock()
                appointment = lifecycle.book_appointment(store, record, "scheduled", when, duration_s)
            else:
                appointment = pending[-1]
                lifecycle.change_appointment(store, appointment, "scheduled")
                lifecycle.reschedule(store, appointment, start, duration_s)
                lifecycle.schedule_job(store, record)
            return copy.deepcopy(appointment)

    def enroute(self, job: int | str) -> Record:
        """The technician is on the way to the job's booked appointment; returns the appointment."""
        return self._visit(job, "enroute")

    def start_work(self, job: int | str) -> Record:
        """Work starts: the appointment and the job are `started`; returns the appointment."""
        return self._visit(job, "started")

    def complete(self, job: int | str) -> Record:
        """The booked appointment (if any) and the job are complete; returns the job."""
        store = self.store
        with store.lock:
            record = store.job(job)
            lifecycle.job_target(record, "complete", store.at())  # refuses before anything changes
            booked = store.job_appointments(record["id"], lifecycle.BOOKED)
            if booked:
                lifecycle.change_appointment(store, booked[-1], "complete")
            lifecycle.change_job(store, record, "complete")
            return copy.deepcopy(record)

    # -- helpers ---------------------------------------------------------------------------------

    def _job_change(self, job: int | str, target: str, reason: str = "") -> Record:
        if not isinstance(reason, str):
            raise ValueError("reason must be a string")
        with self.store.lock:
            record = self.store.job(job)
            lifecycle.change_job(self.store, record, target, reason)
            return copy.deepcopy(record)

    def _visit(self, job: int | str, target: str) -> Record:
        with self.store.lock:
            record = self.store.job(job)
            booked = self.store.job_appointments(record["id"], lifecycle.BOOKED)
            if not booked:
                raise FieldRefused(f"job {record['id']} has no booked appointment; schedule it first")
            lifecycle.change_appointment(self.store, booked[-1], target)
            return copy.deepcopy(booked[-1])

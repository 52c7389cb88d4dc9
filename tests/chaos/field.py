"""The scripted field technician of the chaos round trip (tests/chaos/scenario.py): plays accept ->
schedule -> (pause) -> complete on every job once Dispatch has it, through the Dispatch emulator's control
API."""

from __future__ import annotations

import threading
from typing import Any

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator

PLAIN = ("accept", "schedule", "complete")
PAUSING = ("accept", "schedule", "pause", "complete")
FINAL_STATUS, FINAL_REASON, PAUSE_REASON = "complete", "ready_for_billing", "waiting_for_parts"


class FieldPlayer:
    """Plays each job's steps through the Dispatch control API once the job exists there.

    Every fourth work order is paused (waiting for parts) before it is completed. Job and appointment
    events are only ever emitted by this player (Dispatch echoes nothing but ack/err), so wrapping
    `emit` attributes every field message ID to its work order and step.
    """

    def __init__(self, dispatch: DispatchEmulator, orders: list[str], *, min_gap_s: float = 1.5) -> None:
        self.dispatch = dispatch
        self.min_gap_s = min_gap_s
        self.plan = {wo: PAUSING if i % 4 == 0 else PLAIN for i, wo in enumerate(orders)}
        self.index = {wo: i for i, wo in enumerate(orders)}
        self.next_step = dict.fromkeys(orders, 0)
        self.last_at: dict[str, float] = {}
        self.present: set[str] = set()
        self.field_messages: dict[str, tuple[str, str]] = {}  # message ID -> (work order, step)
        self._emitted: list[str] = []
        self._lock = threading.Lock()
        original = dispatch.emit

        def emit(put_type: str, data: dict[str, Any], action_id: str | None = None) -> str:
            message_id = original(put_type, data, action_id)
            if put_type in ("job", "appointment"):
                self._emitted.append(message_id)
            return message_id

        dispatch.emit = emit  # type: ignore[method-assign]

    @property
    def finished(self) -> bool:
        return all(self.next_step[wo] >= len(steps) for wo, steps in self.plan.items())

    def steps_left(self) -> int:
        return sum(len(steps) - self.next_step[wo] for wo, steps in self.plan.items())

    def _refresh_present(self) -> None:
        if len(self.present) < len(self.plan):
            jobs = self.dispatch.records("job")
            self.present.update(wo for wo in self.plan if wo in jobs)

    def play(self, wo: str) -> None:
        step = self.plan[wo][self.next_step[wo]]
        d, i = self.dispatch, self.index[wo]
        before = len(self._emitted)
        if step == "accept":
            d.accept_job(wo)
        elif step == "schedule":
            day = 1 + i % 28
            d.schedule_appointment(wo, f"2026-12-{day:02d}T09:00:00+0000", f"2026-12-{day:02d}T11:00:00+0000")
        elif step == "pause":
            d.pause_job(wo, PAUSE_REASON)
        else:
            d.complete_job(wo, FINAL_REASON)
        for message_id in self._emitted[before:]:
            self.field_messages[message_id] = (wo, step)
        self.next_step[wo] += 1
        self.last_at[wo] = d.clock()

    def tick(self) -> int:
        """Play the next step of every job that exists and whose last event is `min_gap_s` clock-seconds
        old (distinct, ordered timestamps per job). Returns the number of steps played."""
        with self._lock:
            self._refresh_present()
            now, played = self.dispatch.clock(), 0
            for wo in sorted(self.present, key=self.index.__getitem__):
                if (
                    self.next_step[wo] < len(self.plan[wo])
                    and now - self.last_at.get(wo, -1e18) >= self.min_gap_s
                ):
                    self.play(wo)
                    played += 1
            return played

    def play_step_everywhere(self, step_no: int) -> int:
        """Fault suite: step `step_no` of every job at once (all jobs must exist)."""
        with self._lock:
            self._refresh_present()
            played = 0
            for wo in self.plan:
                if wo in self.present and self.next_step[wo] == step_no and step_no < len(self.plan[wo]):
                    self.play(wo)
                    played += 1
            return played

    def expected(self, wo: str) -> dict[str, Any]:
        return {"Dispatch_Status__c": FINAL_STATUS, "Dispatch_Status_Reason__c": FINAL_REASON}


class PlayerThread(threading.Thread):
    def __init__(self, player: FieldPlayer, interval_s: float = 0.1) -> None:
        super().__init__(name="field-player", daemon=True)
        self.player, self.interval_s = player, interval_s
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.player.tick()
                self.stopping.wait(self.interval_s)
        except BaseException as exc:  # surfaced by the caller
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

"""The fault suite's in-process driver: the shared round trip, with the engine's functions called in a loop
instead of the daemon, and Dispatch's clock set per field step so every run has identical event times.

With `streaming`, a StreamListener (CRM change events) is stepped in the loop before the publish job, and the
publish job does what the daemon's does while events stream: the watermark cycle only when the listener says
it is due (its first run, or while the stream is down), else just a re-send of pending batches. Office edits
(a work order's Description, every `EDIT_EVERY`th order before each field step) are then carried to Dispatch
by the events, or, when a fault stopped the stream, by the listener's fallback and bridging cycles."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from connector.crm import RetryPolicy, connect_salesforce
from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient
from connector.mapping import load_mapping
from connector.sandbox.dispatch_connect.queue import QueueFaults
from connector.sandbox.server import Faults
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import publish_changes
from sync.outbound.streaming import StreamListener
from sync.settings import load_settings
from sync.store.models import SyncLog
from sync.writeback.queue import flush_writebacks
from tests.chaos.field import FieldPlayer
from tests.chaos.scenario import (
    PASSWORD,
    PUBLIC_KEY,
    SECRET,
    START,
    TOKEN,
    USERNAME,
    Assessment,
    FakeClock,
    World,
    assess,
    crm_state,
    world,
)

PHASE_S = 100_000.0  # clock distance between field steps; cycles in between advance it 31 s each
VISIBILITY_STEP_S = 31.0  # > the emulator's 30 s visibility timeout: a lost delivery comes back next cycle
EDIT_EVERY = 3  # streaming runs: every third work order's Description is edited before each field step
STREAM_ROUNDS = (
    2  # long-poll rounds per loop: the first takes the events, the second (window closed) publishes
)


@dataclass
class FaultRun:
    state: dict[int, dict[str, Any]]
    assessment: Assessment
    cycles: int
    errors: dict[str, int] = field(default_factory=dict)
    sf_counts: dict[str, int] = field(default_factory=dict)
    dispatch_counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    stream: dict[str, Any] = field(default_factory=dict)  # the listener's health() at the end (streaming)
    edits_missing: list[str] = field(default_factory=list)  # office edits Dispatch's job does not show


def _context(w: World) -> SyncContext:
    settings = load_settings(
        database_url=w.database_url,
        dispatch_base_url=w.dispatch.base_url,
        dispatch_public_key=PUBLIC_KEY,
        dispatch_secret=SECRET,
        lookback_s=300,
        batch_size=25,
        max_attempts=5,
    )
    client = DispatchConnectClient(w.dispatch.base_url, PUBLIC_KEY, SECRET, backoff_s=0.01, max_attempts=4)
    crm = connect_salesforce(
        w.sf.base_url,
        username=USERNAME,
        password=PASSWORD,
        security_token=TOKEN,
        session=w.sf.session(),
        retry=RetryPolicy(attempts=5, initial_s=0.01, max_s=0.05),
    )
    return SyncContext(
        settings=settings,
        engine=w.engine,
        mapping=load_mapping(),
        backends={"dispatch_connect": from_client(client, acks=settings.value("dispatch_acks"))},
        crm_gateway=crm,
    )


class Driver:
    def __init__(self, w: World, clock: FakeClock, *, streaming: bool = False) -> None:
        self.w, self.clock = w, clock
        self.ctx = _context(w)
        self.cycles = 0
        self.errors: dict[str, int] = {}
        self.listener_clock = FakeClock(0.0)  # the listener's monotonic clock: its window, its safety net
        self.backoffs: list[float] = []  # the listener's waits, recorded instead of slept
        self.listener = (
            StreamListener(self.ctx, clock=self.listener_clock, wait=self.backoffs.append, idle_wait_s=0.02)
            if streaming
            else None
        )

    def _step(self, name: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # the daemon logs and retries at the next interval; so does this loop
            self._count(name, exc)

    def _count(self, name: str, exc: Exception) -> None:
        key = f"{name}:{type(exc).__name__}"
        self.errors[key] = self.errors.get(key, 0) + 1

    def _stream(self, listener: StreamListener) -> None:
        """Long-poll rounds with the window closed between them; a failed publish is handled as the
        listener's own thread handles it (StreamListener.run): events kept, backoff, tried again."""
        for _ in range(STREAM_ROUNDS):
            try:
                listener.step()
            except Exception as exc:
                self._count("stream", exc)
                listener._publish_failed(exc)
            self.listener_clock.advance(self.ctx.settings.stream_coalesce_ms / 1000)

    def _publish(self) -> None:
        """The daemon's publish job (sync/service/daemon.py run_job): with events streaming, the watermark
        cycle only when the listener says it is due, else a re-send of what a failed send left pending."""
        if self.listener is None or self.listener.cycle_due():
            publish_changes(self.ctx)
        else:
            publish_changes(self.ctx, only={})

    def cycle(self) -> None:
        ctx = self.ctx
        if self.listener is not None:
            self._stream(self.listener)
        self._step("publish", self._publish)
        self.w.dispatch.wait_idle(10)
        self._step("poll", lambda: drain_pull_channels(ctx))
        self._step("process", lambda: process_inbox(ctx))
        self._step("writeback", lambda: flush_writebacks(ctx.engine, ctx.crm))
        self.clock.advance(VISIBILITY_STEP_S)
        self.cycles += 1


def fault_run(
    tmp: Path,
    records: int,
    *,
    faulty: bool,
    request_limit: bool = True,
    streaming: bool = False,
    stream_faults: dict[str, Any] | None = None,
    seed: int = 11,
    timeout_s: float = 60.0,
    max_cycles: int = 1000,
    inspect: Any = None,
) -> FaultRun:
    """One run. `faulty` turns on every fault; `request_limit=False` leaves out REQUEST_LIMIT_EXCEEDED and
    the locked rows (the faults that put write-back rows into backoff); `streaming` steps a StreamListener
    in the loop and makes office edits (with gap events and a dropped subscription among them);
    `stream_faults` (FaultPlan fields) gives the streaming endpoints a plan of their own instead of '*'.
    Stops when converged (office edits in Dispatch included), or when settled (nothing pending anywhere,
    queue empty: nothing will change any more), or at `timeout_s`."""
    t0 = time.monotonic()
    clock = FakeClock()
    with world(
        tmp,
        records,
        clock=clock,
        sf_faults=Faults(seed=seed),
        dispatch_faults=Faults(seed=seed + 1),
        queue_faults=QueueFaults(seed=seed + 2),
    ) as w:
        player = FieldPlayer(w.dispatch, w.orders, min_gap_s=0)
        driver = Driver(w, clock, streaming=streaming)
        edits: dict[str, str] = {}
        if faulty:
            for faults in (w.sf.faults, w.dispatch.faults):
                faults.set("*", error_rate=0.2, error_status=503, drop_rate=0.05, latency_s=0.005)
            for kind in ("handshake", "subscribe", "connect"):
                if stream_faults is not None:
                    w.sf.faults.set(f"streaming_{kind}", **stream_faults)
            w.dispatch.set_queue_faults(duplicate_rate=0.3, shuffle_rate=0.5)
        while len(w.dispatch.records("job")) < records and driver.cycles < max_cycles:
            driver.cycle()
        for step in range(4):
            if faulty and request_limit and step == 0:
                w.sf.lock_records(w.orders[: max(3, records // 6)], times=3)
            if faulty and request_limit and step == 1:
                w.sf.fail_next_with_request_limit(12)
            if faulty and step == 2:
                w.sf.expire_sessions()
            if streaming:
                _office_edits(w, step, edits)
            clock.now = START + (step + 1) * PHASE_S
            player.play_step_everywhere(step)
            for _ in range(2):
                driver.cycle()
        a = assess(w, player)
        deadline = time.monotonic() + timeout_s
        while (
            not (a.converged and not _edits_missing(w, edits))
            and driver.cycles < max_cycles
            and time.monotonic() < deadline
        ):
            if not a.stuck and w.dispatch.queue_depth() == 0 and not _pending_edits(driver):
                break  # settled: nothing left to retry or deliver, the CRM state is final
            driver.cycle()
            a = assess(w, player)
        if inspect is not None:
            inspect(w)
        stream: dict[str, Any] = {}
        if driver.listener is not None:
            stream = {**driver.listener.health(), "backoffs": len(driver.backoffs), "gap_rows": _gap_rows(w)}
            stream["rounds_to_resume"] = _resume(driver, driver.listener)
            stream["final_state"] = driver.listener.state
            driver.listener.stop()
        return FaultRun(
            crm_state(w),
            a,
            driver.cycles,
            driver.errors,
            w.sf.counts,
            w.dispatch.counts,
            time.monotonic() - t0,
            stream,
            _edits_missing(w, edits),
        )


def _office_edits(w: World, step: int, edits: dict[str, str]) -> None:
    """Before field step `step`: the office edits every EDIT_EVERY-th work order's Description. The stream's
    own mishaps come with them in every streaming run: the step-1 edits' first two changes come as gap events
    (Salesforce could not build them), and at step 3 Salesforce forgets every streaming client first (a
    server-side timeout: the next connect is answered '403::Unknown client')."""
    if step == 1:
        w.sf.streaming.inject_gaps(2)
    if step == 3:
        w.sf.streaming.drop_clients()
    for wo in w.orders[::EDIT_EVERY]:
        edits[wo] = f"Trips under load; office note {step}"
        w.sf.update("WorkOrder", wo, {"Description": edits[wo]})


def _resume(driver: Driver, listener: StreamListener, limit: int = 10) -> int:
    """The run may end right after a fault stopped the stream: with the faults gone, the listener must come
    back to events by itself (it never dies on a fault). Loops of rounds it took (0: it was streaming)."""
    driver.w.sf.faults.clear()
    loops = 0
    while listener.state != "streaming" and loops < limit:
        driver._stream(listener)
        loops += 1
    return loops


def _gap_rows(w: World) -> int:
    """Warning rows the listener wrote for gap events it covered with a polling cycle."""
    with Session(w.engine) as session:
        rows = session.exec(select(SyncLog.message).where(col(SyncLog.level) == "warning")).all()
    return sum("sent a gap event" in (text or "") for text in rows)


def _pending_edits(driver: Driver) -> bool:
    """Events the listener holds (a window or a failed publish) still move Dispatch: not settled yet."""
    return driver.listener is not None and bool(driver.listener.health()["buffered_events"])


def _edits_missing(w: World, edits: dict[str, str]) -> list[str]:
    w.dispatch.wait_idle(10)
    jobs = w.dispatch.records("job")
    return [
        f"{wo}: Dispatch has {jobs.get(wo, {}).get('description')!r}, the CRM {text!r}"
        for wo, text in edits.items()
        if jobs.get(wo, {}).get("description") != text
    ]

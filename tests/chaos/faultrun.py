"""The fault suite's in-process driver: the shared round trip, with the engine's functions called in a loop
instead of the daemon, and Dispatch's clock set per field step so every run has identical event times."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from sync.settings import load_settings
from sync.writeback.queue import flush_writebacks
from tests.chaos.scenario import (
    PASSWORD,
    PUBLIC_KEY,
    SECRET,
    START,
    TOKEN,
    USERNAME,
    Assessment,
    FakeClock,
    FieldPlayer,
    World,
    assess,
    crm_state,
    world,
)

PHASE_S = 100_000.0  # clock distance between field steps; cycles in between advance it 31 s each
VISIBILITY_STEP_S = 31.0  # > the emulator's 30 s visibility timeout: a lost delivery comes back next cycle


@dataclass
class FaultRun:
    state: dict[int, dict[str, Any]]
    assessment: Assessment
    cycles: int
    errors: dict[str, int] = field(default_factory=dict)
    sf_counts: dict[str, int] = field(default_factory=dict)
    dispatch_counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


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
    def __init__(self, w: World, clock: FakeClock) -> None:
        self.w, self.clock = w, clock
        self.ctx = _context(w)
        self.cycles = 0
        self.errors: dict[str, int] = {}

    def _step(self, name: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # the daemon logs and retries at the next interval; so does this loop
            key = f"{name}:{type(exc).__name__}"
            self.errors[key] = self.errors.get(key, 0) + 1

    def cycle(self) -> None:
        ctx = self.ctx
        self._step("publish", lambda: publish_changes(ctx))
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
    seed: int = 11,
    timeout_s: float = 60.0,
    max_cycles: int = 1000,
    inspect: Any = None,
) -> FaultRun:
    """One run. `faulty` turns on every fault; `request_limit=False` leaves out REQUEST_LIMIT_EXCEEDED and
    the locked rows (the faults that put write-back rows into backoff). Stops when converged, or when
    settled (nothing pending anywhere, queue empty: nothing will change any more), or at `timeout_s`."""
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
        driver = Driver(w, clock)
        if faulty:
            for faults in (w.sf.faults, w.dispatch.faults):
                faults.set("*", error_rate=0.2, error_status=503, drop_rate=0.05, latency_s=0.005)
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
            clock.now = START + (step + 1) * PHASE_S
            player.play_step_everywhere(step)
            for _ in range(2):
                driver.cycle()
        a = assess(w, player)
        deadline = time.monotonic() + timeout_s
        while not a.converged and driver.cycles < max_cycles and time.monotonic() < deadline:
            if not a.stuck and w.dispatch.queue_depth() == 0:
                break  # settled: nothing left to retry or deliver, the CRM state is final
            driver.cycle()
            a = assess(w, player)
        if inspect is not None:
            inspect(w)
        return FaultRun(
            crm_state(w),
            a,
            driver.cycles,
            driver.errors,
            w.sf.counts,
            w.dispatch.counts,
            time.monotonic() - t0,
        )

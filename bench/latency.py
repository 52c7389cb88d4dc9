"""Benchmark: end-to-end latency of the running daemon, CRM -> Dispatch and Dispatch -> CRM (issue 20 item 4).

    python bench/latency.py [--quick] [--json PATH]

Real wall time: both emulators run in this process on loopback with real clocks (not the harness's frozen
BenchClock), 20 ms latency injected on every endpoint of both, and the daemon (`Daemon(ctx).start()`, role
"all") runs with its default settings except the URLs, the secrets and, per phase, `streaming`. The mapping is
the bundled one cut to its WorkOrder object (tests/bench_rig.py's workorder_only_mapping, as every benchmark
here): a polling cycle then costs one query instead of one per object, which favours the polling baseline.
Set-up, not measured and without latency: the flagged work orders are published and their acks written back.

(a) CRM -> Dispatch. Admin edits (the Salesforce emulator's control API over HTTPS, so the change is the
admin's, as a person's edit in the org would be) put a unique token in the Subject of a distinct flagged work
order each, at Poisson arrivals. Per edit: the wall time its PATCH returned (committed) and the wall time
the first `agent/in` request carrying that token reached the Dispatch emulator (the emulator's `receive`,
wrapped by this script: its only instrumentation, the emulators' code is unchanged). Latency = arrival -
commit. Streaming phase (`streaming: on`): `edits` edits at 5/s (--quick 60 at 6/s), after one warm-up edit
(not counted) has gone through, so the subscription is live. Polling phase, the baseline, in the same run
(`streaming: off`, default 60 s publish interval): to bound the run, fewer edits (120) spread evenly at
random over two publish intervals (120 s); each waits for the next cycle, so expect p95 near the interval.
With --quick the polling phase uses a 10 s publish interval (20 edits over 20 s) and says so
(polling_publish_interval_s): a 60 s interval cannot fit a run well under a minute.

(b) Dispatch -> CRM, with the streaming daemon of (a) still running: `events` field events through the
Dispatch emulator's control API in-process (as bench/poller.py does), in three rounds 1 s apart (every job
accepted, then every appointment scheduled, then every job completed; distinct event times keep a job's
events in order). Per event: the wall time it was queued, and the wall time the CRM field it drives was
first written by the connector (accepted -> Dispatch_Accepted_At__c, scheduled ->
Dispatch_Appointment_Start__c, completed -> Dispatch_Completed_At__c), seen by wrapping the Salesforce
emulator store's `update` (in-process, no polling). sf_calls_per_1000_events: the Salesforce emulator's own
count of REST calls (logins and streaming long-polls excluded, reported apart) from the first event queued
until the daemon is quiet again (nothing queued in Dispatch, in the inbox or in the write-back queue), so
calls the events cause after their fields are written (sync-log mirror) count too.

When the settings have no `streaming` key (the listener has not landed), the streaming phase runs the
daemon's defaults and reports streaming_available = false. Assertions: none about time.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Put the repository root, not this folder, first on sys.path (as the other benchmarks do).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import requests
from sqlmodel import col, func, select

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import publish_changes
from sync.service.daemon import Daemon
from sync.settings import Settings
from sync.store.db import session_scope
from sync.store.models import InboxMessage, WriteBack
from sync.writeback.queue import flush_writebacks
from tests import bench_rig as _harness

LATENCY_S = 0.020
TOKEN_RE = re.compile(rb"LAT\d{7}")
STEPS = (
    ("accept", "Dispatch_Accepted_At__c"),
    ("schedule", "Dispatch_Appointment_Start__c"),
    ("complete", "Dispatch_Completed_At__c"),
)
STREAM_KINDS = ("cometd", "streaming", "handshake", "connect", "subscribe")  # not REST API calls


@dataclass(frozen=True)
class Sizes:
    edits: int
    edit_rate_per_s: float
    polling_edits: int
    polling_interval_s: float | None  # None: the default publish interval
    events: int


FULL = Sizes(edits=500, edit_rate_per_s=5.0, polling_edits=120, polling_interval_s=None, events=500)
QUICK = Sizes(edits=60, edit_rate_per_s=6.0, polling_edits=20, polling_interval_s=10.0, events=60)


# --- observers (wrap one method of a running emulator instance) ------------------------------------------
class AgentInArrivals:
    """When each edit token first reached Dispatch's `agent/in` (after the injected latency and the signature
    check: where the emulator takes the body)."""

    def __init__(self, dispatch: DispatchEmulator) -> None:
        self.first: dict[bytes, float] = {}
        self.requests = 0
        self.unreadable = 0
        self.changed = threading.Condition()
        original = dispatch.receive

        def receive(body: bytes, **kwargs: Any) -> None:
            arrived = time.monotonic()
            original(body, **kwargs)
            self._note(body, arrived)

        dispatch.receive = receive  # type: ignore[method-assign]

    def _note(self, body: bytes, arrived: float) -> None:
        try:
            text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        except (OSError, EOFError):
            text = b""
            self.unreadable += 1
        with self.changed:
            self.requests += 1
            for token in TOKEN_RE.findall(text):
                self.first.setdefault(token, arrived)
            self.changed.notify_all()

    def wait_for(self, tokens: list[bytes], deadline: float) -> None:
        with self.changed:
            while any(t not in self.first for t in tokens) and time.monotonic() < deadline:
                self.changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))


class CrmWrites:
    """When each (record id, field) of `fields` was first written to the Salesforce emulator's store."""

    def __init__(self, sf: SalesforceEmulator, fields: set[str]) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.changed = threading.Condition()
        original = sf.store.update

        def update(object_name: str, record_id: str, values: Any, user_id: str | None) -> None:
            original(object_name, record_id, values, user_id)
            written = time.monotonic()
            hits = [name for name in values if name in fields]
            if hits:
                with self.changed:
                    for name in hits:
                        self.first.setdefault((record_id, name), written)
                    self.changed.notify_all()

        sf.store.update = update  # type: ignore[method-assign]

    def wait_for(self, keys: list[tuple[str, str]], deadline: float) -> None:
        with self.changed:
            while any(k not in self.first for k in keys) and time.monotonic() < deadline:
                self.changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))


# --- set-up --------------------------------------------------------------------------------------------
@dataclass
class Bench:
    sf: SalesforceEmulator
    dispatch: DispatchEmulator
    folder: Path
    mapping_file: Path
    admin: requests.Session
    arrivals: AgentInArrivals
    writes: CrmWrites

    def context(self, **overrides: Any) -> SyncContext:
        return _harness.make_context(
            self.folder,
            self.sf.base_url,
            self.sf.session(),
            self.dispatch.base_url,
            self.mapping_file,
            **overrides,
        )

    def sf_calls(self) -> dict[str, int]:
        return {k: v for k, v in self.sf.counts.items() if k not in ("login", "token")}


@contextmanager
def bench(work_orders: int) -> Iterator[tuple[Bench, list[str]]]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        SalesforceEmulator(_harness.FIXTURE) as sf,
        DispatchEmulator(_harness.PUBLIC_KEY, _harness.SECRET) as dispatch,
    ):
        folder = Path(tmp)
        provider, contacts = _harness.seed_org(sf, max(10, work_orders // 10))
        ids = sf.insert_many("WorkOrder", _harness.work_order_rows(provider, contacts, work_orders))
        b = Bench(
            sf,
            dispatch,
            folder,
            _harness.workorder_only_mapping(folder),
            sf.session(),
            AgentInArrivals(dispatch),
            CrmWrites(sf, {field for _, field in STEPS}),
        )
        setup = b.context()
        try:
            publish_changes(setup)
            settle(setup, dispatch)
        finally:
            setup.engine.dispose()
        yield b, ids


def settle(ctx: SyncContext, dispatch: DispatchEmulator) -> None:
    """Set-up only: apply, drain, process and flush until nothing is left (no daemon running)."""
    dispatch.wait_idle(120)
    while True:
        received = drain_pull_channels(ctx).received
        processed = process_inbox(ctx).processed
        written = flush_writebacks(ctx.engine, ctx.crm, batch_size=200).records_written
        if received == processed == written == 0:
            return


def wait_quiet(ctx: SyncContext, dispatch: DispatchEmulator, timeout_s: float) -> bool:
    """True once nothing is left: Dispatch applied and drained, inbox processed, write-backs flushed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dispatch.wait_idle(0.1) and dispatch.queue_depth() == 0:
            with session_scope(ctx.engine) as session:
                unprocessed = session.exec(
                    select(func.count()).select_from(InboxMessage).where(col(InboxMessage.status) == "new")
                ).one()
                pending = session.exec(
                    select(func.count()).select_from(WriteBack).where(col(WriteBack.status) == "pending")
                ).one()
            if unprocessed == 0 and pending == 0:
                return True
        time.sleep(0.1)  # a poll for quiet between phases, not a measurement
    return False


@contextmanager
def running(ctx: SyncContext) -> Iterator[Daemon]:
    daemon = Daemon(ctx)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        ctx.engine.dispose()


# --- (a) CRM edits -------------------------------------------------------------------------------------
class Edits:
    """Numbered admin edits, each one token in the Subject of one work order."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.n = 0

    def edit(self, record_id: str) -> tuple[bytes, float]:
        self.n += 1
        token = f"LAT{self.n:07d}"
        url = f"{self.b.sf.base_url}/control/records/WorkOrder/{record_id}"
        answer = self.b.admin.patch(url, json={"Subject": f"Replace breaker {token}"}, timeout=30)
        committed = time.monotonic()
        if answer.status_code != 204:
            raise SystemExit(
                f"admin edit of WorkOrder {record_id} answered {answer.status_code}: {answer.text}"
            )
        return token.encode(), committed

    def run(self, ids: list[str], arrivals: Callable[[], float], wait_s: float) -> tuple[list[float], int]:
        """Edits at the given inter-arrival times; latencies of those seen, and how many never arrived."""
        commits: dict[bytes, float] = {}
        due = time.monotonic()
        for record_id in ids:
            due += arrivals()
            time.sleep(max(0.0, due - time.monotonic()))  # pacing the load, not measuring
            token, committed = self.edit(record_id)
            commits[token] = committed
        self.b.arrivals.wait_for(list(commits), time.monotonic() + wait_s)
        seen = self.b.arrivals.first
        latencies = [seen[t] - c for t, c in commits.items() if t in seen]
        return latencies, len(commits) - len(latencies)

    def warm_up(self, record_id: str, wait_s: float) -> float | None:
        token, committed = self.edit(record_id)
        self.b.arrivals.wait_for([token], time.monotonic() + wait_s)
        arrived = self.b.arrivals.first.get(token)
        return None if arrived is None else arrived - committed


# --- (b) field events ----------------------------------------------------------------------------------
def field_events(b: Bench, jobs: list[str], events: int, wait_s: float) -> tuple[list[float], int]:
    queued: dict[tuple[str, str], float] = {}
    for i, (step, field) in enumerate(STEPS):
        if i:
            time.sleep(1.0)  # distinct event times per round (Dispatch stamps whole seconds)
        for wo in jobs:
            if len(queued) == events:
                break
            if step == "accept":
                b.dispatch.accept_job(wo)
            elif step == "schedule":
                b.dispatch.schedule_appointment(wo, "2026-12-01T15:00:00Z", "2026-12-01T17:00:00Z")
            else:
                b.dispatch.complete_job(wo, "ready_for_billing")
            queued[(wo, field)] = time.monotonic()
    b.writes.wait_for(list(queued), time.monotonic() + wait_s)
    seen = b.writes.first
    latencies = [seen[k] - t for k, t in queued.items() if k in seen]
    return latencies, len(queued) - len(latencies)


# --- figures -------------------------------------------------------------------------------------------
def pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 edits, 60 events, a 10 s polling interval")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    rng = random.Random(20)
    streaming = "streaming" in Settings.model_fields
    stream_opts: dict[str, Any] = {"streaming": "on"} if streaming else {}
    poll_opts: dict[str, Any] = {"streaming": "off"} if streaming else {}
    if size.polling_interval_s:
        poll_opts["publish_interval_s"] = size.polling_interval_s
    jobs = math.ceil(size.events / len(STEPS))
    figures: dict[str, Any] = {}

    with bench(1 + size.edits + size.polling_edits) as (b, ids):
        warm_id, stream_ids, poll_ids = ids[0], ids[1 : 1 + size.edits], ids[1 + size.edits :]
        _harness.set_latency(b.sf, b.dispatch, LATENCY_S)
        edits = Edits(b)

        ctx = b.context(**stream_opts)
        with running(ctx):
            warm = edits.warm_up(warm_id, wait_s=20 if streaming else ctx.settings.publish_interval_s + 20)
            started = time.monotonic()
            stream, stream_missing = edits.run(
                stream_ids, lambda: rng.expovariate(size.edit_rate_per_s), wait_s=30
            )
            stream_wall = time.monotonic() - started
            wait_quiet(ctx, b.dispatch, 120)

            before = b.sf_calls()
            started = time.monotonic()
            field, field_missing = field_events(b, stream_ids[:jobs], size.events, wait_s=120)
            field_wall = time.monotonic() - started
            quiet = wait_quiet(ctx, b.dispatch, 120)
            after = b.sf_calls()

        ctx = b.context(**poll_opts)
        interval = ctx.settings.publish_interval_s
        with running(ctx):
            time.sleep(1.0)  # let the daemon's first (start-up) cycle pass: edits land between cycles
            spread = 2 * interval / len(poll_ids)
            polling, polling_missing = edits.run(
                poll_ids, lambda: rng.uniform(0, 2 * spread), wait_s=interval + 30
            )

    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    calls = {k: v for k, v in calls.items() if v}
    rest_calls = sum(v for k, v in calls.items() if k not in STREAM_KINDS)
    stream_p95 = pct(stream, 95)
    figures.update(
        {
            "edits": len(stream_ids),
            "events": size.events,
            "latency_ms": LATENCY_S * 1000,
            "crm_to_dispatch_p50_s": pct(stream, 50),
            "crm_to_dispatch_p95_s": stream_p95,
            "polling_crm_to_dispatch_p95_s": pct(polling, 95),
            "dispatch_to_crm_p50_s": pct(field, 50),
            "dispatch_to_crm_p95_s": pct(field, 95),
            "sf_calls_per_1000_events": round(rest_calls * 1000 / size.events, 2),
            # extra figures
            "streaming_available": streaming,
            "speedup_p95": round(pct(polling, 95) / stream_p95, 1) if stream_p95 and polling else None,
            "crm_to_dispatch_p99_s": pct(stream, 99),
            "crm_to_dispatch_max_s": round(max(stream), 3) if stream else None,
            "crm_to_dispatch_missing": stream_missing,
            "edits_wall_s": round(stream_wall, 1),
            "warm_up_edit_s": None if warm is None else round(warm, 3),
            "polling_edits": len(poll_ids),
            "polling_publish_interval_s": interval,
            "polling_crm_to_dispatch_p50_s": pct(polling, 50),
            "polling_crm_to_dispatch_missing": polling_missing,
            "dispatch_to_crm_p99_s": pct(field, 99),
            "dispatch_to_crm_max_s": round(max(field), 3) if field else None,
            "dispatch_to_crm_missing": field_missing,
            "events_wall_s": round(field_wall, 1),
            "events_quiet_after": quiet,
            "sf_calls": rest_calls,
            "sf_calls_by_kind": ",".join(f"{k}={v}" for k, v in sorted(calls.items())),
            "agent_in_requests": b.arrivals.requests,
            "agent_in_unreadable": b.arrivals.unreadable,
        }
    )
    _harness.report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

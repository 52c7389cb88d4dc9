"""Benchmark: end-to-end latency of the running daemon, CRM -> Dispatch and Dispatch -> CRM (issue 20 item 4).

    python bench/latency.py [--quick] [--json PATH]

Wall time: both emulators in this process on loopback with real clocks, 20 ms latency on every endpoint of
both; the daemon (`Daemon(ctx).start()`, role "all") at its default settings but the URLs, secrets and, per
phase, `streaming`. Mapping: the bundled one cut to WorkOrder (workorder_only_mapping, as every benchmark
here; one query per polling cycle, which favours the polling baseline). Set-up (no latency, not timed):
the flagged work orders are published and their acks written back. Instrumentation: the script wraps a few
methods of the running emulator instances (the emulators' code is unchanged).

(a) CRM -> Dispatch. Admin edits (the Salesforce emulator's control API over HTTPS, so the change is the
admin's) put a unique token in the Subject of a distinct work order each. Latency = the wall time the first
`agent/in` carrying the token reached Dispatch's `receive` - the wall time the edit's PATCH returned.
Streaming phase (`streaming: on`): `edits` edits, Poisson arrivals at 5/s (--quick: 60 at 6/s), after one
uncounted warm-up edit went through. Polling phase, the baseline, same run (`streaming: off`, default 60 s
interval): to bound the run, 120 edits at random over two intervals (120 s), so expect p95 near 60 s;
--quick: a 5 s interval, 20 edits over 10 s (polling_publish_interval_s says which).

(b) Dispatch -> CRM, the streaming daemon still running: `events` field events through the Dispatch
emulator's control API (as bench/poller.py), three rounds 1 s apart (accept every job, schedule, complete;
distinct event times keep each job's events in order). Latency = the first write of the CRM field the event
drives (accepted -> Dispatch_Accepted_At__c, scheduled -> Dispatch_Appointment_Start__c, completed ->
Dispatch_Completed_At__c; the Salesforce store's `update`) - the time it was queued.
sf_calls_per_1000_events: the Salesforce emulator's count of REST calls (logins and streaming long polls
left out, the latter listed in sf_calls_by_kind) from the first event until the daemon is quiet (nothing in
Dispatch's queue, the inbox or the write-back queue). Today's figure, same run, full size only (~25 s more):
the same on other jobs with wakeups_off() (the fixed intervals, as before issue 20),
fixed_interval_dispatch_to_crm_*; null with --quick. No assertion about time.
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Put the repository root, not this folder, first on sys.path (as the other benchmarks do).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from sqlmodel import col, func, select

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound import streaming
from sync.outbound.publisher import publish_changes
from sync.service.daemon import Daemon
from sync.store.db import session_scope
from sync.store.models import InboxMessage, WriteBack
from sync.writeback.queue import flush_writebacks
from tests import bench_rig as _harness

LATENCY_S = 0.020
TOKEN_RE = re.compile(rb"LAT\d{7}")
STEPS: tuple[tuple[str, Callable[[DispatchEmulator, str], object]], ...] = (  # CRM field, technician's step
    ("Dispatch_Accepted_At__c", lambda d, wo: d.accept_job(wo)),
    (
        "Dispatch_Appointment_Start__c",
        lambda d, wo: d.schedule_appointment(wo, "2026-12-01T15:00:00Z", "2026-12-01T17:00:00Z"),
    ),
    ("Dispatch_Completed_At__c", lambda d, wo: d.complete_job(wo, "ready_for_billing")),
)


@dataclass(frozen=True)
class Sizes:
    edits: int
    edit_rate_per_s: float
    polling_edits: int
    polling_interval_s: float | None  # None: the default publish interval
    events: int


FULL = Sizes(edits=500, edit_rate_per_s=5.0, polling_edits=120, polling_interval_s=None, events=500)
QUICK = Sizes(edits=60, edit_rate_per_s=6.0, polling_edits=20, polling_interval_s=5.0, events=60)


# --- observers: each wraps one method of a running emulator instance (the emulators' code is unchanged) ---
class FirstSeen:
    """When each key was first seen (time.monotonic), and a wait for a set of keys."""

    def __init__(self) -> None:
        self.first: dict[Any, float] = {}
        self.changed = threading.Condition()

    def note(self, keys: Iterable[Any], at: float) -> None:
        with self.changed:
            for key in keys:
                self.first.setdefault(key, at)
            self.changed.notify_all()

    def wait_for(self, keys: list[Any], deadline: float) -> None:
        with self.changed:
            while any(k not in self.first for k in keys) and time.monotonic() < deadline:
                self.changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))


class AgentInArrivals(FirstSeen):
    """Edit tokens by the first `agent/in` request carrying them, timed where the emulator takes the body
    (after the injected latency and the signature check)."""

    def __init__(self, dispatch: DispatchEmulator) -> None:
        super().__init__()
        self.requests = self.unreadable = 0
        original = dispatch.receive

        def receive(body: bytes, **kwargs: Any) -> None:
            arrived = time.monotonic()
            original(body, **kwargs)
            try:
                text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            except (OSError, EOFError):
                text, self.unreadable = b"", self.unreadable + 1
            with self.changed:
                self.requests += 1
            self.note(TOKEN_RE.findall(text), arrived)

        dispatch.receive = receive  # type: ignore[method-assign]


class CrmWrites(FirstSeen):
    """(record id, field) of `fields` by the first write to the Salesforce emulator's store."""

    def __init__(self, sf: SalesforceEmulator, fields: set[str]) -> None:
        super().__init__()
        original = sf.store.update

        def update(object_name: str, record_id: str, values: Any, user_id: str | None) -> None:
            original(object_name, record_id, values, user_id)
            self.note([(record_id, name) for name in values if name in fields], time.monotonic())

        sf.store.update = update  # type: ignore[method-assign]


class AgentOutDeliveries(FirstSeen):
    """Field-event message ids by their first delivery to the poller (`agent/out`), and every id queued in
    order: splits (b) into waiting to be polled and the rest (store, process, write back)."""

    def __init__(self, dispatch: DispatchEmulator) -> None:
        super().__init__()
        self.put: list[str] = []
        queue = dispatch.queue
        original_put, original_receive = queue.put, queue.receive

        def put(msg_type: str, payload: dict[str, Any]) -> str:
            message_id = original_put(msg_type, payload)
            self.put.append(message_id)  # list.append is atomic under the GIL
            return message_id

        def receive(max_messages: int) -> list[dict[str, Any]]:
            page = original_receive(max_messages)
            self.note([envelope["Message"]["ID"] for envelope in page], time.monotonic())
            return page

        queue.put = put  # type: ignore[method-assign]
        queue.receive = receive  # type: ignore[method-assign]


class StreamPublishes:
    """When the streaming listener started publishing each record id (sync.outbound.streaming's module-level
    publish_changes, wrapped): splits (a) into change event + coalescing window, and query + send."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        original = streaming.publish_changes

        def publish(ctx: SyncContext, *args: Any, only: Any = None, **kwargs: Any) -> Any:
            started = time.monotonic()
            for ids in (only or {}).values():
                for record_id in ids:
                    self.first.setdefault(record_id, started)
            return original(ctx, *args, only=only, **kwargs)

        streaming.publish_changes = publish  # type: ignore[assignment]


# --- set-up --------------------------------------------------------------------------------------------
class Bench:
    """Both emulators (real clocks), the observers, and contexts on one store in `folder`."""

    def __init__(self, sf: SalesforceEmulator, dispatch: DispatchEmulator, folder: Path) -> None:
        self.sf, self.dispatch, self.folder = sf, dispatch, folder
        self.mapping_file = _harness.workorder_only_mapping(folder)
        self.admin = sf.session()
        self.arrivals = AgentInArrivals(dispatch)
        self.writes = CrmWrites(sf, {field for field, _ in STEPS})
        self.deliveries = AgentOutDeliveries(dispatch)
        self.publishes = StreamPublishes()

    def context(self, **overrides: Any) -> SyncContext:
        sf, url = self.sf, self.dispatch.base_url
        return _harness.make_context(
            self.folder, sf.base_url, sf.session(), url, self.mapping_file, **overrides
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
        provider, contacts = _harness.seed_org(sf, max(10, work_orders // 10))
        ids = sf.insert_many("WorkOrder", _harness.work_order_rows(provider, contacts, work_orders))
        b = Bench(sf, dispatch, Path(tmp))
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


@contextmanager
def wakeups_off() -> Iterator[bool]:
    """The fixed intervals of before issue 20: jobs started inside run without waking each other (as under
    `run --once`). False when the daemon has no wake-ups to switch off."""
    from sync.service import daemon as module

    original = getattr(module, "waking_through", None)
    if original is None:
        yield False
        return
    module.waking_through = lambda _wake: original(None)
    try:
        yield True
    finally:
        module.waking_through = original


# --- (a) CRM edits -------------------------------------------------------------------------------------
@dataclass
class EditRun:
    latencies: list[float]  # committed -> first agent/in carrying the edit
    to_publish: list[float]  # committed -> the listener's publish of the record started (streaming only)
    publish_to_agent_in: list[float]
    missing: int


class Edits:
    """Numbered admin edits, each one token in the Subject of one work order."""

    def __init__(self, b: Bench) -> None:
        self.b, self.n = b, 0

    def edit(self, record_id: str) -> tuple[bytes, float]:
        self.n += 1
        token = f"LAT{self.n:07d}"
        url = f"{self.b.sf.base_url}/control/records/WorkOrder/{record_id}"
        answer = self.b.admin.patch(url, json={"Subject": f"Replace breaker {token}"}, timeout=30)
        committed = time.monotonic()
        if answer.status_code != 204:
            raise SystemExit(f"admin edit of WorkOrder {record_id}: HTTP {answer.status_code} {answer.text}")
        return token.encode(), committed

    def run(self, ids: list[str], arrivals: Callable[[], float], wait_s: float) -> EditRun:
        """Edits at the given inter-arrival times, then a wait of up to `wait_s` for the last to arrive."""
        commits: dict[bytes, tuple[str, float]] = {}
        due = time.monotonic()
        for record_id in ids:
            due += arrivals()
            time.sleep(max(0.0, due - time.monotonic()))  # pacing the load, not measuring
            token, committed = self.edit(record_id)
            commits[token] = (record_id, committed)
        self.b.arrivals.wait_for(list(commits), time.monotonic() + wait_s)
        seen, published = self.b.arrivals.first, self.b.publishes.first
        run = EditRun([], [], [], len(commits))
        for token, (record_id, committed) in commits.items():
            if token not in seen:
                continue
            run.missing -= 1
            run.latencies.append(seen[token] - committed)
            if record_id in published:
                run.to_publish.append(published[record_id] - committed)
                run.publish_to_agent_in.append(seen[token] - published[record_id])
        return run


# --- (b) field events ----------------------------------------------------------------------------------
@dataclass
class FieldRun:
    latencies: list[float]  # queued -> CRM field written
    polled: list[float]  # queued -> every message of the event handed to the poller
    polled_to_crm: list[float]  # that -> the CRM field written (store, process, flush)
    missing: int
    drain_s: float = 0.0  # first event queued -> last of its messages handed to the poller


def field_events(b: Bench, jobs: list[str], events: int, wait_s: float) -> FieldRun:
    queued: dict[tuple[str, str], float] = {}
    messages: dict[tuple[str, str], list[str]] = {}
    for i, (field, step) in enumerate(STEPS):
        if i:
            time.sleep(1.0)  # distinct event times per round (Dispatch stamps whole seconds)
        for wo in jobs:
            if len(queued) == events:
                break
            mark = len(b.deliveries.put)
            step(b.dispatch, wo)
            queued[(wo, field)] = time.monotonic()
            messages[(wo, field)] = b.deliveries.put[mark:]
    b.writes.wait_for(list(queued), time.monotonic() + wait_s)
    seen, delivered = b.writes.first, b.deliveries.first
    latencies = [seen[k] - t for k, t in queued.items() if k in seen]
    run = FieldRun(latencies, [], [], len(queued) - len(latencies))
    for key, at in queued.items():
        if messages[key] and all(m in delivered for m in messages[key]):
            polled = max(delivered[m] for m in messages[key])
            run.polled.append(polled - at)
            if key in seen:
                run.polled_to_crm.append(seen[key] - polled)
            run.drain_s = max(run.drain_s, polled - min(queued.values()))
    return run


# --- figures -------------------------------------------------------------------------------------------
def pct(values: list[float], p: int) -> float | None:
    """The p-th percentile (100: the maximum), in seconds to the millisecond; None without values."""
    if not values:
        return None
    if p >= 100 or len(values) == 1:
        return round(max(values), 3) if p >= 100 else round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 3)


def rest_calls(after: dict[str, int], before: dict[str, int]) -> int:
    """REST API calls between two counts; streaming long polls are not REST calls (nor charged as such)."""
    return sum(v - before.get(k, 0) for k, v in after.items() if not k.startswith("streaming_"))


def spread(values: list[float], prefix: str, ps: tuple[int, ...] = (50, 95)) -> dict[str, float | None]:
    return {f"{prefix}_{'max' if p == 100 else f'p{p}'}_s": pct(values, p) for p in ps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 edits, 60 events, a 5 s polling interval")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    rng = random.Random(20)
    poll_opts: dict[str, Any] = {"streaming": "off"}
    if size.polling_interval_s:
        poll_opts["publish_interval_s"] = size.polling_interval_s
    jobs = math.ceil(size.events / len(STEPS))

    with bench(1 + size.edits + size.polling_edits) as (b, ids):
        warm_id, stream_ids, poll_ids = ids[0], ids[1 : 1 + size.edits], ids[1 + size.edits :]
        _harness.set_latency(b.sf, b.dispatch, LATENCY_S)
        edits = Edits(b)

        ctx = b.context(streaming="on")
        with running(ctx) as daemon:
            listening = getattr(daemon, "listener", None) is not None
            wait_s = 20 if listening else ctx.settings.publish_interval_s + 20
            warm = edits.run([warm_id], lambda: 0.0, wait_s)  # the pipeline is live before the clock runs
            started = time.monotonic()
            stream = edits.run(stream_ids, lambda: rng.expovariate(size.edit_rate_per_s), wait_s=30)
            stream_wall = time.monotonic() - started
            wait_quiet(ctx, b.dispatch, 120)

            before, dispatch_before = b.sf_calls(), b.dispatch.counts
            started = time.monotonic()
            field = field_events(b, stream_ids[:jobs], size.events, wait_s=120)
            field_wall = time.monotonic() - started
            quiet = wait_quiet(ctx, b.dispatch, 120)
            after, dispatch_after = b.sf_calls(), b.dispatch.counts

        fixed, fixed_calls = None, 0
        if not args.quick:  # the fixed intervals (poll 15 s, process 5 s, flush 10 s) take ~20 s more
            with wakeups_off() as switched, running(b.context(streaming="on")) as daemon:
                mark = b.sf_calls()
                fixed_jobs = stream_ids[jobs : 2 * jobs]
                fixed = field_events(b, fixed_jobs, size.events, wait_s=120) if switched else None
                wait_quiet(daemon.ctx, b.dispatch, 120)
                fixed_calls = rest_calls(b.sf_calls(), mark)

        ctx = b.context(**poll_opts)
        interval = ctx.settings.publish_interval_s
        with running(ctx):
            time.sleep(1.0)  # let the daemon's start-up cycle pass: the edits land between cycles
            gap = 2 * interval / len(poll_ids)  # mean gap: the edits span two publish intervals
            polling = edits.run(poll_ids, lambda: rng.uniform(0, 2 * gap), wait_s=interval + 30)

    calls = {k: v for k in after if (v := after.get(k, 0) - before.get(k, 0))}
    sf_calls = rest_calls(after, before)
    stream_p95, polling_p95 = pct(stream.latencies, 95), pct(polling.latencies, 95)
    figures: dict[str, Any] = {
        "edits": len(stream_ids),
        "events": size.events,
        "latency_ms": LATENCY_S * 1000,
        **spread(stream.latencies, "crm_to_dispatch"),
        "polling_crm_to_dispatch_p95_s": polling_p95,
        **spread(field.latencies, "dispatch_to_crm"),
        "sf_calls_per_1000_events": round(sf_calls * 1000 / size.events, 2),
        # extra figures
        "streaming_available": listening,
        "p95_polling_over_streaming": round(polling_p95 / stream_p95, 1)
        if stream_p95 and polling_p95
        else None,
        **spread(stream.latencies, "crm_to_dispatch", (99, 100)),
        "crm_to_dispatch_missing": stream.missing,
        **spread(stream.to_publish, "commit_to_stream_publish"),
        **spread(stream.publish_to_agent_in, "stream_publish_to_agent_in"),
        "edits_wall_s": round(stream_wall, 1),
        "warm_up_edit_s": pct(warm.latencies, 50),
        "polling_edits": len(poll_ids),
        "polling_publish_interval_s": interval,
        "polling_crm_to_dispatch_p50_s": pct(polling.latencies, 50),
        "polling_crm_to_dispatch_missing": polling.missing,
        **spread(field.latencies, "dispatch_to_crm", (99, 100)),
        "dispatch_to_crm_missing": field.missing,
        **spread(field.polled, "dispatch_to_polled"),
        **spread(field.polled_to_crm, "polled_to_crm"),
        **spread(fixed.latencies if fixed else [], "fixed_interval_dispatch_to_crm"),
        "fixed_interval_dispatch_to_crm_missing": fixed.missing if fixed else None,
        "fixed_interval_sf_calls_per_1000_events": round(fixed_calls * 1000 / size.events, 2)
        if fixed
        else None,
        "events_wall_s": round(field_wall, 1),
        "events_drain_s": round(field.drain_s, 3),
        **{
            f"events_{k.replace('agent/', 'agent_')}_requests": dispatch_after.get(k, 0)
            - dispatch_before.get(k, 0)
            for k in ("agent/out", "agent/ack")
        },
        "events_quiet_after": quiet,
        "sf_calls": sf_calls,
        "sf_calls_by_kind": ",".join(f"{k}={v}" for k, v in sorted(calls.items())),
        "agent_in_requests": b.arrivals.requests,
        "agent_in_unreadable": b.arrivals.unreadable,
    }
    _harness.report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

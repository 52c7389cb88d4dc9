"""Benchmark: Dispatch -> CRM, draining field events and writing them back, versus a naive one-at-a-time loop.

    python bench/poller.py [--quick] [--json PATH]

Default: 5,000 queued events (--quick: 500), 5 ms latency injected on both emulators. Both emulators run in
a process of their own (as in bench/publisher.py: Dispatch and Salesforce are remote services, and their
request handling must not compete with the engine for this process's GIL); the technicians' actions go
through that process (PollerHost). Set-up (no latency, not timed): flagged work orders are published so
every job has its CRM link, and the ack events of that publish are drained, processed and flushed. Then the
control API plays the technicians: accept, schedule an appointment, complete ('ready_for_billing'),
round-robin across jobs, so one job's events are spread through the queue.

Efficient path (first set of jobs): the daemon as `dispatch-connector run` runs it (tests/bench_daemon.py:
a started Daemon with its poll, process and writeback jobs): the poller drains and wakes the processor after
every stored page, the processor wakes the write-back flush, which waits for full Collections calls, so the
stages overlap. drain_per_s: events / time until the inbox held all of them; e2e_per_s: events / time until
every message was applied and no write-back was pending. sf_calls_per_1000_events is the Salesforce
emulator's own count of REST calls for that path.

Naive path, same run, a separate, equally sized batch of events on a second set of jobs: poll one message,
store and process it (the engine's own store_delivery/process_message), write its record back with one
sObject update, ack, repeat. Same clients, same latency. speedup = e2e_per_s / naive_e2e_per_s.

Sequential path (extra figures), a third set of jobs: the stages one after the other, as this benchmark ran
the engine before the wake-ups (drain everything, then process everything, then flush):
sequential_e2e_per_s, and overlap_gain = e2e_per_s / sequential_e2e_per_s.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import AbstractContextManager
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

# This script is named like the module it measures, and Python puts the script's folder first on sys.path:
# swap it for the repository root before the first-party imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from sqlmodel import col, select

from sync.inbound.inbox import store_delivery
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox, process_message
from sync.outbound.publisher import publish_changes
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import WriteBack
from sync.writeback.queue import flush_writebacks
from tests import bench_rig as _harness
from tests.bench_daemon import inbound_daemon, run_until_landed

LATENCY_S = 0.005
STEPS = ("accept", "schedule", "complete")


class PollerHost(_harness.EmulatorHost):
    """The emulators' process, plus the technicians' actions this benchmark plays."""

    def field_events(self, jobs: list[str], events: int) -> int:
        """Exactly `events` field events, one step at a time across all jobs; returns how many were queued."""
        before = self.dispatch.counts.get("events", 0)
        emitted = 0
        for step in STEPS:
            self.clock.advance(60)
            for wo in jobs:
                if emitted == events:
                    break
                if step == "accept":
                    self.dispatch.accept_job(wo)
                elif step == "schedule":
                    self.dispatch.schedule_appointment(wo, "2026-12-01T15:00:00Z", "2026-12-01T17:00:00Z")
                else:
                    self.dispatch.complete_job(wo, "ready_for_billing")
                emitted += 1
        _harness._freeze_heap()
        return self.dispatch.counts.get("events", 0) - before

    def completed(self, ids: list[str]) -> int:
        return sum(1 for i in ids if self.sf.get("WorkOrder", i).get("Dispatch_Status__c") == "complete")


class _Manager(BaseManager):
    pass


_Manager.register("PollerHost", PollerHost)


def poller_rig(contacts: int) -> AbstractContextManager[_harness.RemoteRig]:
    """tests/bench_rig.remote_rig with PollerHost: the emulators in a spawned process, the engine here."""
    return _harness.remote_rig(contacts, manager_class=_Manager, host_name="PollerHost")


def sequential(r: _harness.Rig) -> float:
    """The stages one after the other: drain everything, process everything, flush everything."""
    started = time.perf_counter()
    while drain_pull_channels(r.ctx).received:
        pass
    while process_inbox(r.ctx).processed > 0:
        pass
    while flush_writebacks(r.ctx.engine, r.ctx.crm, batch_size=200).records_written:
        pass
    return time.perf_counter() - started


def naive(r: _harness.Rig) -> tuple[float, int]:
    """Poll 1, store and process it, write its record back with one sObject update, ack, repeat."""
    channel, crm, engine = r.ctx.backend("dispatch_connect").pull_channels[0], r.ctx.crm, r.ctx.engine
    handled = 0
    started = time.perf_counter()
    while (page := channel.fetch(1)).deliveries:
        for message in page.deliveries:
            with session_scope(engine) as session:
                store_delivery(session, message)
            process_message(r.ctx, message.id)
            with session_scope(engine) as session:
                rows = session.exec(
                    select(WriteBack).where(
                        col(WriteBack.source) == message.id, col(WriteBack.status) == "pending"
                    )
                ).all()
                merged: dict[tuple[str, str], dict[str, Any]] = {}
                for row in rows:
                    merged.setdefault((row.crm_object, str(row.crm_id)), {}).update(row.fields or {})
                for (crm_object, crm_id), fields in merged.items():
                    getattr(crm.sf, crm_object).update(crm_id, fields)
                for row in rows:
                    row.status, row.flushed_at = "done", utcnow()
                    session.add(row)
            channel.settle(message)
            handled += 1
    return time.perf_counter() - started, handled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 events")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    events = 500 if args.quick else 5_000
    jobs = math.ceil(events / len(STEPS))

    with poller_rig(contacts=max(10, jobs // 10)) as r:
        ids = r.insert_work_orders(3 * jobs)
        publish_changes(r.ctx)
        _harness.settle(r)
        set_a, set_b, set_c = ids[:jobs], ids[jobs : 2 * jobs], ids[2 * jobs :]
        host = r.host

        queued = host.field_events(set_a, events)
        daemon = inbound_daemon(r.ctx)
        r.set_latency(LATENCY_S)
        r.sf.reset_counts()
        run = run_until_landed(r.ctx, daemon, queued)
        sf_calls = r.sf_calls()
        sf_counts = r.sf.counts
        r.set_latency(0)
        complete_a = host.completed(set_a)

        naive_queued = host.field_events(set_b, events)
        r.set_latency(LATENCY_S)
        r.sf.reset_counts()
        naive_s, naive_handled = naive(r)
        naive_calls = r.sf_calls()
        r.set_latency(0)
        complete_b = host.completed(set_b)

        sequential_queued = host.field_events(set_c, events)
        r.set_latency(LATENCY_S)
        r.sf.reset_counts()
        sequential_s = sequential(r)
        sequential_calls = r.sf_calls()
        r.set_latency(0)
        complete_c = host.completed(set_c)

    e2e_per_s = queued / run.done_s
    naive_per_s = naive_handled / naive_s
    sequential_per_s = sequential_queued / sequential_s
    figures: dict[str, Any] = {
        "events": queued,
        "latency_ms": LATENCY_S * 1000,
        "drain_per_s": round(queued / run.received_s, 1),
        "e2e_per_s": round(e2e_per_s, 1),
        "naive_e2e_per_s": round(naive_per_s, 1),
        "speedup": round(e2e_per_s / naive_per_s, 2),
        "sf_calls_per_1000_events": round(sf_calls * 1000 / queued, 2),
        # extra figures
        "jobs_per_set": jobs,
        "drain_s": round(run.received_s, 3),
        "e2e_s": round(run.done_s, 3),
        "naive_s": round(naive_s, 3),
        "received": run.received,
        "job_runs": ",".join(f"{name}={n}" for name, n in sorted(run.runs.items())),
        "sf_calls": sf_calls,
        "sf_calls_by_kind": ",".join(f"{k}={v}" for k, v in sorted(sf_counts.items())),
        "jobs_complete_in_crm": complete_a,
        "naive_events": naive_queued,
        "naive_handled": naive_handled,
        "naive_sf_calls": naive_calls,
        "naive_jobs_complete_in_crm": complete_b,
        "sequential_e2e_per_s": round(sequential_per_s, 1),
        "sequential_s": round(sequential_s, 3),
        "sequential_sf_calls_per_1000_events": round(sequential_calls * 1000 / sequential_queued, 2),
        "sequential_jobs_complete_in_crm": complete_c,
        "overlap_gain": round(e2e_per_s / sequential_per_s, 2),
        "peak_rss_mb": _harness.peak_rss_mb(),
    }
    _harness.report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

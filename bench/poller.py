"""Benchmark: Dispatch -> CRM, draining field events and writing them back, versus a naive one-at-a-time loop.

    python bench/poller.py [--quick] [--json PATH]

Default: 5,000 queued events (--quick: 500), 5 ms latency injected on both emulators. Set-up (no latency,
not timed): flagged work orders are published so every job has its CRM link, and the ack events of that
publish are drained, processed and flushed. Then the control API plays the technicians: accept, schedule
an appointment, complete ('ready_for_billing'), round-robin across jobs, so one job's events are spread
through the queue.

Efficient path (first set of jobs): drain_pull_channels (timed alone: drain_per_s), then process_inbox
and flush_writebacks until the CRM emulator holds every update (e2e_per_s). sf_calls_per_1000_events is
the Salesforce emulator's own count of REST calls for that path.

Naive path, same run, a separate, equally sized batch of events on a second set of jobs: poll one message,
store and process it (the engine's own store_delivery/process_message), write its record back with one
sObject update, ack, repeat. Same clients, same latency. speedup = e2e_per_s / naive_e2e_per_s.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
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

LATENCY_S = 0.005
STEPS = ("accept", "schedule", "complete")


def generate_events(r: _harness.Rig, jobs: list[str], events: int) -> int:
    """Exactly `events` field events, one step at a time across all jobs; returns how many were emitted."""
    before = r.dispatch.counts.get("events", 0)
    emitted = 0
    for step in STEPS:
        r.clock.advance(60)
        for wo in jobs:
            if emitted == events:
                break
            if step == "accept":
                r.dispatch.accept_job(wo)
            elif step == "schedule":
                r.dispatch.schedule_appointment(wo, "2026-12-01T15:00:00Z", "2026-12-01T17:00:00Z")
            else:
                r.dispatch.complete_job(wo, "ready_for_billing")
            emitted += 1
    return r.dispatch.counts.get("events", 0) - before


def efficient(r: _harness.Rig) -> tuple[float, float, dict[str, int]]:
    started = time.perf_counter()
    received = 0
    while (polled := drain_pull_channels(r.ctx)).received:
        received += polled.received
    drain_s = time.perf_counter() - started
    processed = 0
    while (done := process_inbox(r.ctx).processed) > 0:
        processed += done
    written = calls = 0
    while (flushed := flush_writebacks(r.ctx.engine, r.ctx.crm, batch_size=200)).records_written:
        written += flushed.records_written
        calls += flushed.calls
    e2e_s = time.perf_counter() - started
    return drain_s, e2e_s, {"received": received, "processed": processed, "written": written}


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


def completed(r: _harness.Rig, ids: list[str]) -> int:
    return sum(1 for i in ids if r.sf.get("WorkOrder", i).get("Dispatch_Status__c") == "complete")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 events")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    events = 500 if args.quick else 5_000
    jobs = math.ceil(events / len(STEPS))

    with _harness.rig(contacts=max(10, jobs // 10)) as r:
        ids = r.insert_work_orders(2 * jobs)
        publish_changes(r.ctx)
        _harness.settle(r)
        set_a, set_b = ids[:jobs], ids[jobs:]

        queued = generate_events(r, set_a, events)
        r.set_latency(LATENCY_S)
        r.sf.reset_counts()
        drain_s, e2e_s, done = efficient(r)
        sf_calls = r.sf_calls()
        sf_counts = r.sf.counts
        r.set_latency(0)
        complete_a = completed(r, set_a)

        naive_queued = generate_events(r, set_b, events)
        r.set_latency(LATENCY_S)
        r.sf.reset_counts()
        naive_s, naive_handled = naive(r)
        naive_calls = r.sf_calls()
        r.set_latency(0)
        complete_b = completed(r, set_b)

    e2e_per_s = queued / e2e_s
    naive_per_s = naive_handled / naive_s
    figures: dict[str, Any] = {
        "events": queued,
        "latency_ms": LATENCY_S * 1000,
        "drain_per_s": round(queued / drain_s, 1),
        "e2e_per_s": round(e2e_per_s, 1),
        "naive_e2e_per_s": round(naive_per_s, 1),
        "speedup": round(e2e_per_s / naive_per_s, 2),
        "sf_calls_per_1000_events": round(sf_calls * 1000 / queued, 2),
        # extra figures
        "jobs_per_set": jobs,
        "drain_s": round(drain_s, 3),
        "e2e_s": round(e2e_s, 3),
        "naive_s": round(naive_s, 3),
        "received": done["received"],
        "processed": done["processed"],
        "records_written": done["written"],
        "sf_calls": sf_calls,
        "sf_calls_by_kind": ",".join(f"{k}={v}" for k, v in sorted(sf_counts.items())),
        "jobs_complete_in_crm": complete_a,
        "naive_events": naive_queued,
        "naive_handled": naive_handled,
        "naive_sf_calls": naive_calls,
        "naive_jobs_complete_in_crm": complete_b,
        "peak_rss_mb": _harness.peak_rss_mb(),
    }
    _harness.report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

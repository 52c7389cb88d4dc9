"""Benchmark: sending work orders to Dispatch v3, and finding out what changed in the field.

    python bench/dispatch_v3.py [--quick] [--json PATH]

Default: 1,000 changed work orders at 20 ms emulator latency; --quick: 100. The v3 API takes one work order
per request, so the engine's destination (connector/dispatch_v3/backend.py) sends `concurrency` (8) at a
time after looking their external ids up (one list request per 100). The naive path, same run, same
documents, a fresh emulator: one `POST /v3/workorder` after another with the same client. Then the status
reconciler: jobs created a minute apart and all still open, 1% of them change in the field; the next drain's
list requests are reported as `reconcile_calls_per_1000_open` (calls x 1000 / open jobs; v3 has no webhooks:
the alternative is one GET per open job).

Keys (../shared/BENCHMARKS.md): workorders, latency_ms, wall_s, naive_wall_s, speedup, requests,
token_requests, reconcile_calls_per_1000_open; plus lookup_requests, naive_requests, reconcile_changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Python puts the script's folder first on sys.path: swap it for the repository root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from connector.dispatch_v3.backend import DispatchV3Settings, StatusReconciler, WorkOrderDestination
from connector.dispatch_v3.client import DispatchV3Client
from connector.sandbox.dispatch_v3 import DispatchV3Emulator

CLIENT_ID, CLIENT_SECRET = "bench", "bench-secret"
BATCH = 200  # the outbox's batch size
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def work_order(n: int) -> dict[str, Any]:
    return {
        "record_type": "work_order",
        "record": {
            "external_id": f"WO-{n:06d}",
            "title": f"Service call {n}",
            "workflow": "service",
            "orchestration": "direct",
            "status": "offered",
            "location": {"street_1": f"{n} Main St", "city": "Boston", "state": "MA", "postal_code": "02115"},
            "contacts": [
                {
                    "first_name": "Jane",
                    "last_name": f"Doe {n}",
                    "primary": True,
                    "contact_methods": [
                        {"method": "email", "value": f"jane{n}@example.com", "preferred": True}
                    ],
                }
            ],
            "service_providers": [{"name": "Spark Electric", "external_ids": ["PROV-1"]}],
        },
    }


def client_for(emulator: DispatchV3Emulator) -> DispatchV3Client:
    return DispatchV3Client(emulator.base_url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.05)


def total(counts: Any) -> int:
    return sum(dict(counts).values())


def engine_run(records: list[dict[str, Any]], latency_s: float) -> dict[str, Any]:
    clock = Clock()
    with DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET, clock=clock, latency_s=latency_s) as v3:
        client = client_for(v3)
        settings = DispatchV3Settings(base_url=v3.base_url, client_id=CLIENT_ID)  # type: ignore[call-arg]
        destination = WorkOrderDestination("dispatch_v3", client, settings)
        started = time.perf_counter()
        results = []
        for start in range(0, len(records), BATCH):
            results.extend(destination.send(records[start : start + BATCH], message_id=f"batch-{start}"))
        wall = time.perf_counter() - started
        assert all(r.ok for r in results) and len(v3.jobs()) == len(records), "engine run lost work orders"
        counts = dict(v3.counts)
    return {
        "wall_s": round(wall, 3),
        "requests": total(counts),
        "lookup_requests": counts.get("jobs.list", 0),
        "token_requests": client.token_requests,
    }


def reconcile_run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Open jobs created over the past hours (a minute apart), one drain to catch up, then 1% of them
    change in the field: the list requests of the next drain are counted."""
    from connector.dispatch_v3.backend import work_order_document

    clock = Clock()
    with DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET, clock=clock) as v3:
        client = client_for(v3)
        for record in records:
            clock.now += 60
            client.create_work_order(work_order_document(record["record"]))
        settings = DispatchV3Settings(  # type: ignore[call-arg]
            base_url=v3.base_url, client_id=CLIENT_ID, reconcile_lookback_s=10 * 86400
        )
        reconciler = StatusReconciler("dispatch_v3", client, settings)
        reconciler.since = dict.fromkeys(reconciler.LISTS, datetime.fromtimestamp(T0 - 60, UTC))
        _drain(reconciler)
        changed = max(1, len(records) // 100)
        clock.now += 60
        for job in v3.jobs()[:changed]:
            v3.accept(job["id"])
        before = total(v3.counts)
        seen = _drain(reconciler)
        calls = total(v3.counts) - before
    assert seen >= changed, f"the reconciler saw {seen} of {changed} changes"
    return {
        "reconcile_open": len(records),
        "reconcile_changed": changed,
        "reconcile_calls": calls,
        "reconcile_calls_per_1000_open": round(calls * 1000 / len(records), 2),
    }


def _drain(reconciler: StatusReconciler) -> int:
    seen = 0
    while True:
        page = reconciler.fetch(reconciler.page_size)
        seen += len(page.deliveries)
        if not page.full:
            return seen


def naive_run(records: list[dict[str, Any]], latency_s: float) -> dict[str, Any]:
    from connector.dispatch_v3.backend import work_order_document

    with DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET, clock=Clock(), latency_s=latency_s) as v3:
        client = client_for(v3)
        started = time.perf_counter()
        for record in records:
            client.create_work_order(work_order_document(record["record"]))
        wall = time.perf_counter() - started
        assert len(v3.jobs()) == len(records), "naive run lost work orders"
        return {"naive_wall_s": round(wall, 3), "naive_requests": total(v3.counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 work orders instead of 1,000")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    count, latency_s = (100 if args.quick else 1000), 0.020
    records = [work_order(n) for n in range(count)]
    engine = engine_run(records, latency_s)
    naive = naive_run(records, latency_s)
    reconcile = reconcile_run(records)
    figures = {
        "workorders": count,
        "latency_ms": latency_s * 1000,
        "wall_s": engine["wall_s"],
        "naive_wall_s": naive["naive_wall_s"],
        "speedup": round(naive["naive_wall_s"] / engine["wall_s"], 2),
        **{k: v for k, v in engine.items() if k != "wall_s"},
        **{k: v for k, v in naive.items() if k != "naive_wall_s"},
        **reconcile,
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

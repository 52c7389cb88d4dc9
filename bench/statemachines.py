"""Benchmark: applying Dispatch-reported events through the shared state machines.

    python bench/statemachines.py [--quick] [--json PATH]

Default: 100,000 events across 10,000 records; --quick: 10,000 across 1,000. Records are a
realistic mix (jobs offered -> unscheduled -> scheduled -> complete with pauses and follow-up
appointments, appointments, estimates, invoices), ten events each including redeliveries, with
about 10% of records receiving two events out of order. Events arrive interleaved across records.

Fast path: `statemachines.apply_reported` (one Machine per kind, built at import; lenient policy,
milestone stamping, no database). Naive path, same run, same events, same semantics: a
`transitions.Machine` (library defaults) built around a fresh model for every event, then
triggered. Reports the BENCHMARKS.md keys: events, records, events_per_s, naive_events_per_s,
speedup, peak_rss_mb; plus naive_lean_events_per_s / lean_speedup, the same naive path with
`auto_transitions=False` (a stronger baseline), and final_state_mismatches (fast vs naive: 0).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# This script is named like the package it measures, and Python puts the script's folder first on
# sys.path: swap it for the repository root so `import statemachines` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from transitions import Machine, MachineError

from statemachines import EntityState, apply_reported, event_table
from statemachines.tables import TABLES

EVENTS_PER_RECORD = 10
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
Event = tuple[int, str, str, datetime, str | None]  # record, kind, status, updated_at, reason


def _job(rng: random.Random) -> list[tuple[str, str | None]]:
    steps: list[tuple[str, str | None]] = [("offered", None), ("unscheduled", None)]
    steps.append(("scheduled", None))
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):  # waiting for parts, no show, ...
        steps.append(("paused", rng.choice(["no_show", "waiting_for_parts"])))
        steps.append(("scheduled", None))
    steps.append(("complete", "ready_for_billing"))
    if rng.random() < 0.1:  # follow-up appointment after completion
        steps += [("scheduled", None), ("complete", "ready_for_billing")]
    if rng.random() < 0.05:
        steps = [("offered", None), ("rejected", "no_availability")]
    return steps


def _appointment(rng: random.Random) -> list[tuple[str, str | None]]:
    steps: list[tuple[str, str | None]] = [("scheduled", None)]
    for _ in range(rng.randrange(4)):
        steps.append(("scheduled", "rescheduled"))  # new window, same status
    if rng.random() < 0.1:
        return [*steps, ("canceled", "customer_canceled")]
    return [*steps, ("enroute", None), ("started", None), ("complete", None)]


def _estimate(rng: random.Random) -> list[tuple[str, str | None]]:
    return [("draft", None), ("sent", None), (rng.choice(["won", "lost"]), None)]


def _invoice(rng: random.Random) -> list[tuple[str, str | None]]:
    return [("draft", None), ("balance_outstanding", None), ("paid", None)]


GENERATORS = [("job", _job, 60), ("appointment", _appointment, 25)]
GENERATORS += [("estimate", _estimate, 10), ("invoice", _invoice, 5)]


def make_events(records: int, seed: int = 7) -> list[Event]:
    """Ten events per record, interleaved round-robin across records (arrival order)."""
    rng = random.Random(seed)
    kinds = [g[0] for g in GENERATORS]
    weights = [g[2] for g in GENERATORS]
    makers = {g[0]: g[1] for g in GENERATORS}
    per_record: list[list[Event]] = []
    for record in range(records):
        kind = rng.choices(kinds, weights)[0]
        steps = makers[kind](rng)[:EVENTS_PER_RECORD]
        start = T0 + timedelta(seconds=rng.randrange(86_400))
        seq: list[Event] = [
            (record, kind, status, start + timedelta(minutes=15 * i), reason)
            for i, (status, reason) in enumerate(steps)
        ]
        while len(seq) < EVENTS_PER_RECORD:  # Dispatch redelivers a message right after itself
            j = rng.randrange(len(seq))
            seq.insert(j + 1, seq[j])
        if rng.random() < 0.1:  # two events arrive out of order
            i = rng.randrange(len(seq) - 1)
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
        per_record.append(seq)
    return [seq[step] for step in range(EVENTS_PER_RECORD) for seq in per_record]


def run_fast(events: list[Event], records: int) -> tuple[float, list[EntityState]]:
    holders = [EntityState() for _ in range(records)]
    started = time.perf_counter()
    for record, kind, status, updated_at, reason in events:
        apply_reported(kind, holders[record], status, updated_at=updated_at, reason=reason)
    return time.perf_counter() - started, holders


class _NaiveModel:
    def __init__(self) -> None:
        self.state: str | None = None


def run_naive(
    events: list[Event], records: int, *, auto_transitions: bool = True
) -> tuple[float, list[EntityState]]:
    """What one writes without the shared-machine pattern: for every event, a Machine (library
    defaults unless told otherwise) around a fresh model, then the trigger."""
    holders = [EntityState() for _ in range(records)]
    tables = {kind: TABLES[kind] for kind in TABLES}
    triggers = {kind: event_table(kind) for kind in TABLES}
    started = time.perf_counter()
    for record, kind, status, updated_at, reason in events:
        table = tables[kind]
        holder = holders[record]
        model = _NaiveModel()
        Machine(
            model=model,
            states=list(table.states),
            transitions=[{"trigger": t, "source": list(s), "dest": d} for t, s, d in table.transitions],
            initial=holder.state or status,
            auto_transitions=auto_transitions,
        )
        if holder.updated_at is not None and updated_at < holder.updated_at:
            continue
        if holder.updated_at == updated_at and holder.state == status:
            continue
        previous = holder.state
        if previous is not None and previous != status:
            try:
                model.trigger(triggers[kind][status])  # type: ignore[attr-defined]
            except MachineError:
                model.state = status
        else:
            model.state = status
        holder.state = model.state
        holder.status_message = reason or None
        holder.updated_at = updated_at
        milestone = table.milestones.get(status)
        if milestone is not None and previous != status:
            holder.milestones[milestone] = updated_at
    return time.perf_counter() - started, holders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 events across 1,000 records")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    records = 1_000 if args.quick else 10_000
    events = make_events(records)
    fast_s, fast = run_fast(events, records)
    naive_s, naive = run_naive(events, records)
    lean_s, _ = run_naive(events, records, auto_transitions=False)
    mismatched = sum(1 for a, b in zip(fast, naive, strict=True) if a.state != b.state)
    figures = {
        "events": len(events),
        "records": records,
        "events_per_s": round(len(events) / fast_s, 1),
        "naive_events_per_s": round(len(events) / naive_s, 1),
        "speedup": round(naive_s / fast_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "naive_lean_events_per_s": round(len(events) / lean_s, 1),
        "lean_speedup": round(lean_s / fast_s, 2),
        "fast_s": round(fast_s, 3),
        "naive_s": round(naive_s, 3),
        "final_state_mismatches": mismatched,
    }
    width = max(len(k) for k in figures)
    print(f"{'figure':<{width}}  value")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the publisher with work-order line items (issue 19 item 3), beside today's plain mapping.

    python bench/publisher_lines.py [--quick] [--json PATH]

Default: 10,000 flagged work orders with 5 line items each (50,000 WorkOrderLineItem rows), 1,000 changed
(--quick: 1,000 / 100). Both emulators run in a process of their own (tests/bench_rig.py remote_rig), on one
injected clock. WorkOrderLineItem is declared through the Salesforce emulator's API (define_object, the
lookup WorkOrderId carrying the child relationship WorkOrderLineItems), not in the fixture.

The "lines" mapping is the default one cut down to WorkOrder (as bench/publisher.py) plus the line items as
a child relationship, one billing_item per line (`each:`) and one billing_document (the estimate) whose
`lines` list names them, as tests/e2e/test_child_records.py does: per work order organization, customer,
5 billing items, 1 billing document, 1 job. The "plain" mapping is that default cut, without children:
today's figures, measured in the same run on a second pair of emulators.

Every cycle confirms on HTTP 200 (DISPATCH_ACKS=false), as the naive path does, so `cycle_sf_calls`
counts the cycle's reads and its confirmation write-back (sObject Collections) calls. Sequence per mapping:

  T0       insert the work orders (and line items); first load; confirmation flush
  +30m     echo cycle (reads the confirmations' write-backs, publishes nothing); +30m idle cycle
  then     REPEATS (3) measured cycles, each after an echo cycle: `changed` work orders get one line item
           changed each (plain: their Description), 2 ms latency on both emulators, publish + flush timed;
           `wall_s` is the median. After each, a slice of the naive path (lines only): per changed work
           order one SOQL by Id with the subquery, one signed agent/in POST of its canonical records, one
           sObject update of Dispatch_Last_Synced__c, same clients, same latency; `naive_wall_s` is the sum.
  lines    one more measured cycle where the `changed` work orders changed on the parent itself
           (`parent_change_cycle_sf_calls`).

Order check: the Dispatch emulator's host records, in the order Dispatch applied them, every record of the
measured cycles with the message id of its request (tests/bench_rig.py EmulatorHost.dispatch_log_*). The
first lines cycle's requests are printed; every cycle must have its records in the destination's dependency
order across its requests, every reference (organization, customer, job, billing items) to a record of
the same change set must come in an earlier position, and nothing may be refused: otherwise the benchmark
exits non-zero naming what came out of order. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from connector.crm import format_soql
from connector.dispatch_connect.canonical import RECORD_TYPES
from connector.mapping import build_records, load_mapping, soql_select
from sync.outbound.outbox import PublishReport
from sync.outbound.publisher import publish_changes
from sync.writeback.queue import flush_writebacks
from tests import bench_rig as _harness
from tests.e2e.test_child_records import LINE_ITEM_FIELDS, LINE_ITEMS, LINE_RECORDS

LATENCY_S = 0.002
BATCH_SIZE = 200
LINES_PER_RECORD = 5
REPEATS = 3
CHILDREN = {"WorkOrderLineItems": LINE_ITEMS}
# (field of a record, record type it names) per record type: what must be applied before it
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "customer": (("external_organization_id", "organization"),),
    "billing_item": (("external_organization_id", "organization"),),
    "job": (("external_organization_id", "organization"), ("external_customer_id", "customer")),
    "billing_document": (("external_job_id", "job"), ("lines.external_billing_item_id", "billing_item")),
}
Applied = list[tuple[Any, str, dict[str, Any], str]]


@dataclass
class Measured:
    report: PublishReport
    sf_calls: int
    sf_calls_by_kind: str
    agent_in: int
    wall_s: float
    applied: Applied


def lines_mapping(r: _harness.RemoteRig) -> Path:
    """The rig's WorkOrder-only mapping plus line items; the estimate and billing items before the job."""
    data = yaml.safe_load(Path(r.ctx.settings.mapping_file).read_text(encoding="utf-8"))
    work_order = data["objects"]["WorkOrder"]
    work_order["children"] = CHILDREN
    job = work_order["records"].pop()  # the job stays last: the primary record
    work_order["records"] += [*LINE_RECORDS, job]
    path = r.tmp / "lines.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def insert_line_items(r: _harness.RemoteRig, work_orders: list[str]) -> list[list[str]]:
    """LINES_PER_RECORD line items per work order; returns their ids per work order."""
    r.host.sf_define_object("WorkOrderLineItem", LINE_ITEM_FIELDS, "1WL")
    per_order: list[list[str]] = []
    for start in range(0, len(work_orders), 2000):
        chunk = work_orders[start : start + 2000]
        rows = [
            {
                "WorkOrderId": wo,
                "LineItemNumber": f"{n:02d}",
                "Description": f"Part {n}",
                "Quantity": 1.0,
                "UnitPrice": 10.0 + n,
                "Status": "New",
            }
            for wo in chunk
            for n in range(1, LINES_PER_RECORD + 1)
        ]
        ids = list(r.host.sf_insert_many("WorkOrderLineItem", rows))
        per_order += [ids[i : i + LINES_PER_RECORD] for i in range(0, len(ids), LINES_PER_RECORD)]
    return per_order


def cycle(r: _harness.Rig) -> tuple[PublishReport, int]:
    """One unmeasured cycle with its confirmation flush; returns its report and SF calls."""
    r.sf.reset_counts()
    report = publish_changes(r.ctx)
    flush(r)
    return report, r.sf_calls()


def flush(r: _harness.Rig) -> None:
    while flush_writebacks(
        r.ctx.engine, r.ctx.crm, batch_size=r.ctx.settings.writeback_batch_size
    ).records_written:
        pass


def measured_cycle(r: _harness.RemoteRig, change: Callable[[], None]) -> Measured:
    """After an echo cycle (the last write-backs), `change`, then publish + confirmation flush, timed."""
    r.clock.advance(1800)
    cycle(r)
    r.dispatch.wait_idle(600)
    r.clock.advance(1800)
    change()
    r.host.dispatch_log_start()
    r.set_latency(LATENCY_S)
    r.sf.reset_counts()
    in_before = r.dispatch.counts.get("agent/in", 0)
    try:
        started = time.perf_counter()
        report = publish_changes(r.ctx)
        flush(r)
        wall = time.perf_counter() - started
    finally:
        r.set_latency(0)
    calls, agent_in = r.sf_calls(), r.dispatch.counts.get("agent/in", 0) - in_before
    kinds = ",".join(f"{k}={v}" for k, v in sorted(r.sf.counts.items()) if k not in ("login", "token"))
    return Measured(report, calls, kinds, agent_in, wall, list(r.host.dispatch_log_take()))


def naive_publish(r: _harness.Rig, ids: list[str]) -> float:
    """Per record: one SOQL by Id (with the subquery), one agent/in POST, one sObject update."""
    spec = r.ctx.mapping.objects["WorkOrder"]
    select = soql_select(spec, "WorkOrder")
    crm, client = r.ctx.crm, r.ctx.backends["dispatch_connect"].client
    r.set_latency(LATENCY_S)
    try:
        started = time.perf_counter()
        for crm_id in ids:
            row = crm.query_all(format_soql(f"{select} WHERE Id = {{}}", crm_id))[0]
            client.send_records(build_records(spec, row), message_id=str(uuid.uuid4()))
            crm.sf.WorkOrder.update(crm_id, {"Dispatch_Last_Synced__c": datetime.now(UTC).isoformat()})
        return time.perf_counter() - started
    finally:
        r.set_latency(0)


def _lookup(record: dict[str, Any], path: str) -> list[str]:
    """The ids a record names at `path` (`lines.x`: each line's x)."""
    head, _, rest = path.partition(".")
    value = record.get(head)
    if rest:
        return [str(item[rest]) for item in value or [] if isinstance(item, dict) and item.get(rest)]
    return [str(value)] if value not in (None, "") else []


def order_problems(applied: Applied, message_ids: list[str]) -> tuple[list[str], int]:
    """What breaks dependency order in one change set as Dispatch applied it; and how many references were
    met by a record of an earlier request (the order holding across batch boundaries)."""
    problems: list[str] = []
    rank = {name: index for index, name in enumerate(RECORD_TYPES)}
    in_set = {(record_type, str(record.get("external_id"))) for _, record_type, record, _ in applied}
    seen: dict[tuple[str, str], Any] = {}
    last, across = -1, 0
    for position, (msg_id, record_type, record, result) in enumerate(applied):
        key = (record_type, str(record.get("external_id")))
        if result != "ack":
            problems.append(f"#{position} {record_type} {key[1]}: refused by Dispatch ({result})")
        if rank.get(record_type, len(rank)) < last:
            problems.append(f"#{position} {record_type} {key[1]} after a {RECORD_TYPES[last]}")
        last = max(last, rank.get(record_type, len(rank)))
        for path, named_type in REFERENCES.get(record_type, ()):
            for named in _lookup(record, path):
                if (named_type, named) not in in_set:
                    continue
                if (named_type, named) not in seen:
                    problems.append(f"#{position} {record_type} {key[1]} before the {named_type} {named}")
                elif seen[(named_type, named)] != msg_id:
                    across += 1
        seen.setdefault(key, msg_id)
    requests = list(dict.fromkeys(msg_id for msg_id, *_ in applied))
    if requests != [m for m in message_ids if m in set(requests)] or set(requests) != set(message_ids):
        problems.append(
            f"requests applied {len(requests)} not the cycle's {len(message_ids)} batches in order"
        )
    return problems, across


def print_requests(label: str, applied: Applied) -> None:
    """The change set as Dispatch applied it: one line per request, its record types in order."""
    print(f"{label}: requests as the Dispatch emulator applied them (record types in order)")
    groups: dict[Any, Counter[str]] = {}
    for msg_id, record_type, _, _ in applied:
        groups.setdefault(msg_id, Counter())[record_type] += 1
    for index, (msg_id, types) in enumerate(groups.items(), 1):
        listed = ", ".join(f"{name} {n}" for name, n in types.items())
        print(f"  {index:3d}  {str(msg_id)[:8]}  {sum(types.values()):4d} records: {listed}")


def check_change_set(label: str, m: Measured, failures: list[str]) -> tuple[bool, int]:
    """(agent/in requests == ceil(records / batch size), references met across requests); order problems
    go into `failures`."""
    problems, across = order_problems(m.applied, m.report.batches_created)
    failures += [f"{label}: {p}" for p in problems[:20]]
    expected = math.ceil(m.report.canonical_records / BATCH_SIZE)
    return m.agent_in == expected == len(m.report.batches_created), across


def first_cycles(r: _harness.RemoteRig) -> dict[str, Any]:
    """First load (+ flush), the echo cycle and an idle cycle; their figures."""
    started = time.perf_counter()
    first, first_calls = cycle(r)
    first_s = time.perf_counter() - started
    r.dispatch.wait_idle(1800)
    r.clock.advance(1800)
    echo, echo_calls = cycle(r)
    r.clock.advance(1800)
    idle, idle_calls = cycle(r)
    return {
        "idle_cycle_sf_calls": idle_calls,
        "idle_cycle_published": idle.changed,
        "echo_cycle_sf_calls": echo_calls,
        "echo_cycle_rows_read": echo.read,
        "echo_cycle_published": echo.changed,
        "first_load_canonical_records": first.canonical_records,
        "first_load_agent_in_requests": r.dispatch.counts.get("agent/in", 0),
        "first_load_sf_calls": first_calls,
        "first_load_s": round(first_s, 2),
    }


def run_lines(flagged: int, changed: int, repeats: int) -> tuple[dict[str, Any], list[str]]:
    """The lines mapping: first cycles, `repeats` line-change cycles with naive slices, a parent change."""
    failures: list[str] = []
    overrides: dict[str, Any] = {"batch_size": BATCH_SIZE, "lookback_s": 300, "dispatch_acks": False}
    with _harness.remote_rig(contacts=max(10, flagged // 10), **overrides) as r:
        ids = r.insert_work_orders(flagged)
        lines = insert_line_items(r, ids)
        r.ctx.mapping = load_mapping(lines_mapping(r))
        figures = first_cycles(r)
        step = flagged // changed
        runs: list[Measured] = []
        naive_s, naive_calls, naive_in = 0.0, 0, 0
        first_orders: list[str] = []
        for run in range(repeats):
            chosen = list(range(run, flagged, step))[:changed]
            items = [lines[i][run % LINES_PER_RECORD] for i in chosen]

            def change(items: list[str] = items, run: int = run) -> None:
                r.sf.update_many("WorkOrderLineItem", items, {"Quantity": float(run + 2)})

            runs.append(measured_cycle(r, change))
            first_orders = first_orders or [ids[i] for i in chosen]
            r.dispatch.wait_idle(600)
            r.sf.reset_counts()
            in_before = r.dispatch.counts.get("agent/in", 0)
            naive_s += naive_publish(r, first_orders[run::repeats])
            naive_calls += r.sf_calls()
            naive_in += r.dispatch.counts.get("agent/in", 0) - in_before
        r.dispatch.wait_idle(600)

        def parent_change() -> None:
            r.sf.update_many("WorkOrder", first_orders, {"Description": "Trips under load; customer called"})

        parent = measured_cycle(r, parent_change)
    print_requests("lines, first line-change cycle", runs[0].applied)
    checks = [check_change_set(f"line-change cycle {i + 1}", m, failures) for i, m in enumerate(runs)]
    parent_ok, parent_across = check_change_set("parent-change cycle", parent, failures)
    wall = statistics.median(m.wall_s for m in runs)
    m = runs[0]
    figures = {
        "flagged_records": flagged,
        "line_items_per_record": LINES_PER_RECORD,
        "changed_records": m.report.changed,
        "idle_cycle_sf_calls": figures.pop("idle_cycle_sf_calls"),
        "cycle_sf_calls": m.sf_calls,
        "parent_change_cycle_sf_calls": parent.sf_calls,
        "canonical_records": m.report.canonical_records,
        "batch_size": BATCH_SIZE,
        "agent_in_requests": m.agent_in,
        "wall_s": round(wall, 3),
        "naive_wall_s": round(naive_s, 3),
        "speedup": round(naive_s / wall, 2),
        "latency_ms": LATENCY_S * 1000,
        "expected_agent_in_requests": math.ceil(m.report.canonical_records / BATCH_SIZE),
        "agent_in_is_ceil_records_over_batch": all(ok for ok, _ in checks) and parent_ok,
        "order_check": "ok" if not failures else f"{len(failures)} problems",
        "references_met_across_requests": checks[0][1],
        "cycle_rows_read": m.report.read,
        "cycle_sf_calls_runs": ",".join(str(x.sf_calls) for x in runs),
        "cycle_sf_calls_by_kind": m.sf_calls_by_kind,
        "parent_change_cycle_sf_calls_by_kind": parent.sf_calls_by_kind,
        "wall_s_runs": ",".join(f"{x.wall_s:.3f}" for x in runs),
        "parent_change_changed_records": parent.report.changed,
        "parent_change_canonical_records": parent.report.canonical_records,
        "parent_change_agent_in_requests": parent.agent_in,
        "parent_change_references_met_across_requests": parent_across,
        "parent_change_wall_s": round(parent.wall_s, 3),
        "naive_records": len(first_orders),
        "naive_sf_calls": naive_calls,
        "naive_agent_in_requests": naive_in,
        **figures,
    }
    return figures, failures


def run_plain(flagged: int, changed: int, repeats: int) -> tuple[dict[str, Any], list[str]]:
    """Today's mapping (no children), the same sizes: parent changes only (a line item is not mapped)."""
    failures: list[str] = []
    overrides: dict[str, Any] = {"batch_size": BATCH_SIZE, "lookback_s": 300, "dispatch_acks": False}
    with _harness.remote_rig(contacts=max(10, flagged // 10), **overrides) as r:
        ids = r.insert_work_orders(flagged)
        first = first_cycles(r)
        runs: list[Measured] = []
        for run in range(repeats):
            orders = ids[run :: flagged // changed][:changed]

            def change(orders: list[str] = orders, run: int = run) -> None:
                r.sf.update_many("WorkOrder", orders, {"Description": f"Visit {run + 2} needed"})

            runs.append(measured_cycle(r, change))
    checks = [check_change_set(f"plain cycle {i + 1}", m, failures) for i, m in enumerate(runs)]
    m = runs[0]
    return {
        "plain_idle_cycle_sf_calls": first["idle_cycle_sf_calls"],
        "plain_cycle_sf_calls": m.sf_calls,
        "plain_agent_in_requests": m.agent_in,
        "plain_wall_s": round(statistics.median(x.wall_s for x in runs), 3),
        "plain_canonical_records": m.report.canonical_records,
        "plain_changed_records": m.report.changed,
        "plain_agent_in_is_ceil_records_over_batch": all(ok for ok, _ in checks),
        "plain_wall_s_runs": ",".join(f"{x.wall_s:.3f}" for x in runs),
        "plain_cycle_sf_calls_by_kind": m.sf_calls_by_kind,
        "plain_echo_cycle_sf_calls": first["echo_cycle_sf_calls"],
        "plain_first_load_agent_in_requests": first["first_load_agent_in_requests"],
        "plain_first_load_s": first["first_load_s"],
    }, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 flagged / 100 changed")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    flagged, changed = (1_000, 100) if args.quick else (10_000, 1_000)
    started = time.perf_counter()
    figures, failures = run_lines(flagged, changed, REPEATS)
    plain, plain_failures = run_plain(flagged, changed, REPEATS)
    figures.update(plain)
    figures["bench_s"] = round(time.perf_counter() - started, 1)
    figures["peak_rss_mb_main"] = _harness.peak_rss_mb()
    _harness.report(figures, args.json)
    if failures or plain_failures:
        print("DEPENDENCY ORDER BROKEN (from the Dispatch emulator's record of applied requests):")
        for line in failures + plain_failures:
            print(f"  {line}")
        return 1
    print("order check: every change set applied in dependency order across its requests, nothing refused")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

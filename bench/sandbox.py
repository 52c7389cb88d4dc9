"""Benchmark: raw throughput of the two emulators through the real clients (no engine, no latency).

    python bench/sandbox.py [--quick] [--json PATH]

poll_ack_roundtrips_per_s: messages taken off the Dispatch emulator's queue one at a time, each with one
signed POST agent/out (maxNumberOfMessages=1) and one signed POST agent/ack, by the real
DispatchConnectClient; the queue is pre-filled through the control API (calendar events). Default 3,000
messages, --quick 500.

soql_pages_per_s: full reads of a WorkOrder query through the CRM gateway's query_iter (query +
query_more, following nextRecordsUrl) at the emulator's page size (2,000); pages are the query and
query_more calls the emulator counted. Default 20,000 records read 3 times, --quick 4,000 read 3 times.

Baseline in the same run (naive_*): a trivial loopback round trip, a POST answered by an empty WSGI app on
the same threaded werkzeug server the emulators use (plain HTTP, like the Dispatch emulator), through a
keep-alive requests.Session. poll_ack_vs_loopback is (2 trivial round trips) / (one poll+ack pair): how
close the Dispatch emulator's two signed calls come to the floor of two bare HTTP calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# This script is named like the module it measures, and Python puts the script's folder first on sys.path:
# swap it for the repository root before the first-party imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import requests

from connector.sandbox.server import EmulatorServer
from tests import bench_rig as _harness

QUERY_REPEATS = 3


def _empty_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"[]"]


def loopback_roundtrips_per_s(n: int) -> float:
    server = EmulatorServer(_empty_app)
    url = server.start() + "/agent/out"
    try:
        with requests.Session() as session:
            session.trust_env = False
            session.post(url, data=b"{}").raise_for_status()
            started = time.perf_counter()
            for _ in range(n):
                session.post(url, data=b'{"maxNumberOfMessages":1}')
            return n / (time.perf_counter() - started)
    finally:
        server.stop()


def poll_ack(r: _harness.Rig, n: int) -> tuple[float, int, dict[str, int]]:
    for i in range(n):
        r.dispatch.calendar_event(f"Bench {i}", "2026-12-01T15:00:00Z", "2026-12-01T16:00:00Z")
    client = r.new_client()
    before = r.dispatch.counts
    done = 0
    started = time.perf_counter()
    while True:
        page = client.poll(1)
        if not page:
            break
        for message in page:
            client.ack(message.receipt, message.procedure_id)
            done += 1
    elapsed = time.perf_counter() - started
    after = r.dispatch.counts
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("agent/out", "agent/ack", "acks")}
    return elapsed, done, delta


def soql_pages(r: _harness.Rig, n: int) -> tuple[float, int, int]:
    r.insert_work_orders(n)
    soql = "SELECT Id, Subject, Status, City, SystemModstamp FROM WorkOrder ORDER BY SystemModstamp"
    crm = r.ctx.crm
    r.sf.reset_counts()
    rows = 0
    started = time.perf_counter()
    for _ in range(QUERY_REPEATS):
        rows += sum(1 for _ in crm.query_iter(soql))
    elapsed = time.perf_counter() - started
    counts = r.sf.counts
    return elapsed, counts.get("query", 0) + counts.get("query_more", 0), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 messages, 4,000 records")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    messages, records = (500, 4_000) if args.quick else (3_000, 20_000)

    naive = loopback_roundtrips_per_s(messages * 2)
    with _harness.rig(contacts=10) as r:
        pa_s, done, pa_counts = poll_ack(r, messages)
        q_s, pages, rows = soql_pages(r, records)
        page_size = r.sf.app.page_size
    pair_per_s = done / pa_s
    figures: dict[str, Any] = {
        "poll_ack_roundtrips_per_s": round(pair_per_s, 1),
        "soql_pages_per_s": round(pages / q_s, 2),
        "naive_loopback_roundtrips_per_s": round(naive, 1),
        "poll_ack_vs_loopback": round(pair_per_s / (naive / 2), 3),
        "messages": done,
        "agent_out_requests": pa_counts["agent/out"],
        "agent_ack_requests": pa_counts["agent/ack"],
        "acks_accepted": pa_counts["acks"],
        "poll_ack_http_requests_per_s": round((pa_counts["agent/out"] + pa_counts["agent/ack"]) / pa_s, 1),
        "soql_records": records,
        "soql_page_size": page_size,
        "soql_pages": pages,
        "soql_rows_read": rows,
        "soql_records_per_s": round(rows / q_s, 1),
        "peak_rss_mb": _harness.peak_rss_mb(),
    }
    _harness.report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

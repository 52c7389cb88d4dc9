"""Benchmark: crash safety of the daemon. SIGKILL it at seeded random moments of a full round trip.

    python bench/chaos.py [--quick] [--json PATH]

Default: 2,000 flagged work orders, 20 kills (--quick: 200 records, 5 kills), one run. The daemon
(`python -m sync.service.cli run`, 0.2 s intervals, SQLite store in a temp dir) publishes; a scripted field
technician plays accept -> schedule -> (pause) -> complete on every job through the Dispatch emulator's
control API as soon as it exists; the daemon drains, processes and writes back. After each kill the
daemon is restarted at once; the poller/publisher leases the dead process left in the SQLite store are not
touched (the restarted daemon takes them over by itself).

Figures: lost (work orders missing from Dispatch or not at their final CRM state, field events never
stored), duplicated (a message's transition applied twice, a job with the same content in two batches,
two Dispatch jobs for one work order, CRM records created by the connector), stuck (inbox new/dead,
outbox pending, write-back pending/failed, records unconfirmed, steps never played), converge_s_max
(seconds from the last restart to convergence; -1 when a run never converged).

Baseline in the same run: the same round trip with no kill (`baseline_roundtrip_s`, first start to
convergence); `roundtrip_s` is the same figure for the killed run (max over runs) and `crash_overhead` their
ratio. `--no-baseline` skips it (the baseline figures are then -1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from tests.chaos.scenario import crash_run

SIZES = {"quick": (200, 5, 1), "default": (2000, 20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 records, 5 kills")
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument("--no-baseline", action="store_true", help="skip the no-kill baseline run")
    parser.add_argument("--progress", action="store_true", help="print convergence progress to stderr")
    args = parser.parse_args(argv)
    records, kills, runs = SIZES["quick" if args.quick else "default"]
    runs = args.runs or runs
    figures: dict[str, float | int | str] = {
        "runs": runs, "records": records, "kills": kills * runs,
        "lost": 0, "duplicated": 0, "stuck": 0, "converge_s_max": 0.0,
        "roundtrip_s": 0.0, "baseline_roundtrip_s": -1.0, "crash_overhead": -1.0,
        "field_messages": 0, "inbox_messages": 0, "wall_s": 0.0,
    }  # fmt: skip
    t0 = time.monotonic()
    details: list[str] = []
    timeout = max(180.0, records * 0.4)
    progress = (lambda m: print(m, file=sys.stderr, flush=True)) if args.progress else None
    for n in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
            run = crash_run(
                Path(tmp), records, kills, seed=args.seed + n, converge_timeout=timeout, progress=progress
            )
        figures["lost"] = int(figures["lost"]) + run.lost
        figures["duplicated"] = int(figures["duplicated"]) + run.duplicated
        figures["stuck"] = int(figures["stuck"]) + run.stuck
        figures["field_messages"] = int(figures["field_messages"]) + run.assessment.counts["field_messages"]
        figures["inbox_messages"] = int(figures["inbox_messages"]) + run.assessment.counts["inbox"]
        converge = -1.0 if run.converge_s is None else round(run.converge_s, 2)
        if converge < 0 or float(figures["converge_s_max"]) < 0:
            figures["converge_s_max"] = -1.0
        else:
            figures["converge_s_max"] = max(float(figures["converge_s_max"]), converge)
        roundtrip = -1.0 if run.roundtrip_s is None else round(run.roundtrip_s, 2)
        figures["roundtrip_s"] = -1.0 if roundtrip < 0 else max(float(figures["roundtrip_s"]), roundtrip)
        if run.assessment.summary() != "ok":
            details.append(f"run {n}: {run.assessment.summary()}")
    if not args.no_baseline:
        with tempfile.TemporaryDirectory(prefix="bench-chaos-base-") as tmp:
            base = crash_run(
                Path(tmp), records, 0, seed=args.seed, converge_timeout=timeout, progress=progress
            )
        if base.roundtrip_s is not None:
            figures["baseline_roundtrip_s"] = round(base.roundtrip_s, 2)
            if float(figures["roundtrip_s"]) > 0:
                figures["crash_overhead"] = round(float(figures["roundtrip_s"]) / base.roundtrip_s, 2)
        if base.assessment.summary() != "ok":
            details.append(f"baseline: {base.assessment.summary()}")
    figures["wall_s"] = round(time.monotonic() - t0, 1)
    width = max(len(k) for k in figures)
    print(f"{'figure':<{width}}  value")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    for line in details:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Crash suite: SIGKILL the daemon at seeded random moments of the round trip, restart it, let it converge.

Nothing may be lost, applied twice or left stuck (see tests/chaos/scenario.py for what each means).
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos.scenario import crash_run

RECORDS, KILLS, SEED = 150, 5, 7


def test_kill9_five_times_loses_doubles_and_sticks_nothing(tmp_path: Path) -> None:
    run = crash_run(tmp_path, RECORDS, KILLS, seed=SEED, converge_timeout=90, batch_size=40)
    print(f"crash run: {run.records} records, {run.kills} kills, converge {run.converge_s} s, "
          f"leases cleared {run.leases_cleared}, wall {run.wall_s:.1f} s, {run.assessment.counts}")
    assert run.assessment.summary() == "ok"
    assert run.converge_s is not None

"""Crash suite: SIGKILL the daemon at seeded random moments of the round trip, restart it, let it converge.

Nothing may be lost, applied twice or left stuck (see tests/chaos/scenario.py for what each means).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from sync.store.models import Lease
from tests.chaos.scenario import (
    DaemonProcess,
    FastClock,
    FieldPlayer,
    PlayerThread,
    World,
    crash_run,
    wait_converged,
    world,
)

RECORDS, KILLS, SEED = 150, 5, 7


def test_kill9_five_times_loses_doubles_and_sticks_nothing(tmp_path: Path) -> None:
    run = crash_run(tmp_path, RECORDS, KILLS, seed=SEED, converge_timeout=90, batch_size=40)
    print(
        f"crash run: {run.records} records, {run.kills} kills, converge {run.converge_s} s, "
        f"wall {run.wall_s:.1f} s, {run.assessment.counts}"
    )
    assert run.assessment.summary() == "ok"
    assert run.converge_s is not None


def test_restart_after_kill9_takes_over_the_poller_lease(tmp_path: Path) -> None:
    with world(tmp_path, 5, clock=FastClock()) as w:
        player = FieldPlayer(w.dispatch, w.orders)
        field = PlayerThread(player)
        w.dispatch.set_faults("agent/out", latency_s=0.3)  # each poll holds the lease for >= 0.3 s
        daemon = DaemonProcess(w, tmp_path)
        daemon.start()
        field.start()
        try:
            daemon.wait_ready()
            deadline = time.monotonic() + 30
            while len(w.dispatch.records("job")) < len(w.orders):  # published: only the poller is at stake
                assert time.monotonic() < deadline, "jobs never reached Dispatch"
                time.sleep(0.05)
            while not _in_poll(w, daemon):
                assert time.monotonic() < deadline, "never saw the daemon inside a poll"
                time.sleep(0.01)
            daemon.kill9()
            if not _poller_holders(w):
                pytest.skip("the poll ended between the check and the kill: nothing to test")
            w.dispatch.set_faults(clear=True)
            daemon.start()
            daemon.wait_ready()
            a, seconds = wait_converged(w, player, timeout=20)
            assert seconds is not None, a.summary()
        finally:
            field.stop()
            daemon.stop()


def _poller_holders(w: World) -> list[str]:
    with Session(w.engine) as s:
        return [lease.holder for lease in s.exec(select(Lease).where(Lease.name == "poller")).all()]


def _in_poll(w: World, daemon: DaemonProcess) -> bool:
    assert daemon.proc is not None
    return any(f":{daemon.proc.pid}:" in h for h in _poller_holders(w))

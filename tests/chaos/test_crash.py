"""Crash suite: SIGKILL the daemon at seeded random moments of the round trip, restart it, let it converge.

Nothing may be lost, applied twice or left stuck (see tests/chaos/scenario.py for what each means).

The daemon runs with STREAMING=on (issue 20 item 5), and the office edits work orders throughout the kills:
between the watermark cycle each start runs and the next one 300 s later, change events are what carries an
edit to Dispatch, so a SIGKILL can land inside a coalescing window or a publish. Every last edit must be in
Dispatch, and the store's positions must show the daemon consumed every event (tests/chaos/office.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from connector.mapping import load_mapping
from sync.outbound.streaming import stream_channels
from sync.store.models import Lease
from tests.chaos.field import FieldPlayer, PlayerThread
from tests.chaos.office import KillMoment, kill_moment
from tests.chaos.scenario import (
    DaemonProcess,
    FastClock,
    World,
    crash_run,
    wait_converged,
    world,
)

RECORDS, KILLS, SEED = 150, 5, 7


def test_kill9_five_times_loses_doubles_and_sticks_nothing(tmp_path: Path) -> None:
    run = crash_run(tmp_path, RECORDS, KILLS, seed=SEED, converge_timeout=90, batch_size=40, office=True)
    print(
        f"crash run: {run.records} records, {run.kills} kills, {run.edits} edited, converge "
        f"{run.converge_s} s, wall {run.wall_s:.1f} s, {run.assessment.counts}, stream {run.stream}"
    )
    assert run.assessment.summary() == "ok"  # every office edit in Dispatch too
    assert run.converge_s is not None
    assert run.edits > 0


def test_kill9_mid_stream_loses_nothing_and_the_daemon_streamed_every_event(tmp_path: Path) -> None:
    """Kills once the daemon streams (its start-up takes about 1.5 s): the killed daemon had published
    windows of events and Salesforce had published events beyond the replay ids it had stored; after the
    last restart nothing is lost, replay ids are stored for every channel in streaming mode up to the
    newest event (write-back echoes included), and the log's windows changed records (the office edits)."""
    kills: list[KillMoment] = []
    run = crash_run(
        tmp_path,
        40,
        2,
        seed=SEED + 1,
        converge_timeout=60,
        kill_window_s=(2.5, 4.0),
        office=True,
        on_kill=lambda w, daemon: kills.append(kill_moment(w, daemon.log_path)),
    )
    print(f"streaming crash run: {run.edits} edited, wall {run.wall_s:.1f} s, kills {kills}, {run.stream}")
    assert run.assessment.summary() == "ok"
    assert any(k.streamed and k.unstored > 0 for k in kills), kills
    assert run.stream is not None
    assert run.stream.problems(set(stream_channels(load_mapping()))) == []


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

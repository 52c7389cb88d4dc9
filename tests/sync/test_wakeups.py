"""Wake-ups (sync.service.wakeups, sync.service.cadence): a job asked to run runs without waiting for its
interval, requests collapse, a job never runs twice at once; the write-back flush they wake still fills
its Collections calls (sync.writeback.queue.flush_wait_s). Threading events and a fake clock, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine

from sync.inbound.poller import POLL_HOT_FOR_S, POLL_HOT_S, StoreTurns, poll_again_in
from sync.inbound.processor import ProcessReport
from sync.service import cadence
from sync.service.wakeups import JobRunner, wake, waking, waking_through
from sync.store.db import make_engine, session_scope, upgrade
from sync.writeback.queue import FLUSH_MAX_WAIT_S, FLUSH_SETTLE_S, enqueue_update, flush_wait_s

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
WAIT = 10  # seconds a test waits for a thread before it fails (never a measured time)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runners() -> Iterator[list[JobRunner]]:
    made: list[JobRunner] = []
    yield made
    for runner in made:
        runner.stop(timeout=WAIT)


def started(runners: list[JobRunner], run: object, **kwargs: object) -> JobRunner:
    runner = JobRunner("job", run, **kwargs)  # type: ignore[arg-type]
    runners.append(runner)
    runner.start()
    return runner


def test_a_wake_runs_the_job_at_once(runners: list[JobRunner]) -> None:
    ran = threading.Event()
    runner = started(runners, ran.set)
    runner.wake()
    assert ran.wait(WAIT)
    assert runner.wait_idle(WAIT) and runner.runs == 1


def test_nothing_runs_unasked(runners: list[JobRunner]) -> None:
    runner = started(runners, lambda: None)
    runner.kick()
    assert runner.wait_idle(WAIT)
    assert runner.runs == 0 and runner.due_in() is None


def test_wakes_during_a_run_collapse_into_one_more_run(runners: list[JobRunner]) -> None:
    inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            inside.set()
            assert release.wait(WAIT)

    runner = started(runners, job)
    runner.wake()
    assert inside.wait(WAIT)
    for _ in range(5):  # the work they announce came after the running one looked: one more run
        runner.wake()
    release.set()
    assert runner.wait_idle(WAIT)
    assert len(calls) == 2 and runner.runs == 2


def test_wakes_before_a_run_are_served_by_that_run(runners: list[JobRunner]) -> None:
    clock = FakeClock()
    runner = started(runners, lambda: None, clock=clock)
    for delay in (10.0, 3.0, 7.0):
        runner.wake(delay)
    assert runner.due_in() == 3.0  # the earliest time asked for
    clock.now += 3.0
    runner.kick()
    assert runner.wait_idle(WAIT)
    assert runner.runs == 1 and runner.due_in() is None


def test_a_delayed_wake_waits_for_its_time(runners: list[JobRunner]) -> None:
    clock = FakeClock()
    runner = started(runners, lambda: None, clock=clock)
    runner.wake(5.0)
    clock.now += 4.0
    runner.kick()
    assert runner.runs == 0 and runner.due_in() == 1.0


def test_never_two_runs_at_once(runners: list[JobRunner]) -> None:
    lock = threading.Lock()
    inside = 0
    most = 0

    def job() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        with lock:
            inside -= 1

    runner = started(runners, job)

    def wake_often() -> None:
        for _ in range(200):
            runner.wake()

    wakers = [threading.Thread(target=wake_often) for _ in range(4)]
    for thread in wakers:
        thread.start()
    for thread in wakers:
        thread.join(WAIT)
    assert runner.wait_idle(WAIT)
    assert most == 1 and 1 <= runner.runs <= 800


def test_stop_waits_for_the_run_in_hand_and_starts_no_other(runners: list[JobRunner]) -> None:
    inside, release, finished = threading.Event(), threading.Event(), threading.Event()

    def job() -> None:
        inside.set()
        assert release.wait(WAIT)
        finished.set()

    runner = started(runners, job)
    runner.wake()
    assert inside.wait(WAIT)
    runner.wake()  # asked, but the runner stops first
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    release.set()
    stopper.join(WAIT)
    assert finished.is_set() and not stopper.is_alive() and runner.runs == 1


def test_wake_outside_a_running_daemon_does_nothing() -> None:
    asked: list[tuple[str, float]] = []
    wake("process")  # no daemon: nobody to ask, no error
    assert not waking()
    with waking_through(lambda name, delay: asked.append((name, delay))):
        assert waking()
        wake("process")
        wake("writeback", 0.25)
    wake("poll")
    assert asked == [("process", 0.0), ("writeback", 0.25)]


def test_poll_cadence() -> None:
    assert poll_again_in(received=3, quiet_for_s=0.0) == 0.0  # messages came: again at once
    assert poll_again_in(received=0, quiet_for_s=1.0) == POLL_HOT_S  # a hot spell
    assert poll_again_in(received=0, quiet_for_s=POLL_HOT_FOR_S + 1) is None  # idle: the interval


def test_processor_wakes_the_flush_and_itself_when_its_batch_was_full() -> None:
    asked: list[str] = []
    with waking_through(lambda name, delay: asked.append(name)):
        cadence.after_process(ProcessReport(processed=0), limit=500)
        assert asked == []
        cadence.after_process(ProcessReport(processed=12), limit=500)
        assert asked == ["writeback"]
        cadence.after_process(ProcessReport(processed=499, failed=1), limit=500)
    assert asked == ["writeback", "writeback", "process"]


def apply(turns: StoreTurns, passed: threading.Event) -> None:
    with turns.applying():
        passed.set()


def test_store_turns_hold_the_processor_while_a_page_is_stored() -> None:
    turns = StoreTurns(wait_s=WAIT)
    passed = threading.Event()
    with turns.storing():
        assert turns.wanted()  # a processor in a group commits what it has
        waiter = threading.Thread(target=lambda: apply(turns, passed))
        waiter.start()
        assert not passed.wait(0.05)  # still storing: the processor waits (a short look, not a timing)
    waiter.join(WAIT)
    assert passed.is_set() and not turns.wanted()


def test_the_poller_waits_for_the_transaction_in_hand() -> None:
    turns = StoreTurns(wait_s=WAIT)
    stored = threading.Event()

    def store() -> None:
        with turns.storing():
            stored.set()

    with turns.applying():
        poller = threading.Thread(target=store)
        poller.start()
        assert not stored.wait(0.05)  # the processor's transaction is still open
    poller.join(WAIT)
    assert stored.is_set()


# --- the write-back flush's settle rule ------------------------------------------------------------------
@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(engine)
    yield engine
    engine.dispose()


def queue_updates(engine: Engine, at: datetime, ids: list[str]) -> None:
    with freeze_time(at), session_scope(engine) as session:
        for crm_id in ids:
            enqueue_update(session, "WorkOrder", crm_id, {"Dispatch_Status__c": "accepted"})


def ids(n: int, start: int = 0) -> list[str]:
    return [f"0WO{i:015d}" for i in range(start, start + n)]


def test_an_empty_queue_flushes_at_once(engine: Engine) -> None:
    assert flush_wait_s(engine, now=T0) == 0.0


def test_a_fresh_burst_waits_for_the_queue_to_settle(engine: Engine) -> None:
    queue_updates(engine, T0, ids(5))
    assert flush_wait_s(engine, now=T0 + timedelta(seconds=0.1)) == pytest.approx(FLUSH_SETTLE_S - 0.1)
    assert flush_wait_s(engine, now=T0 + timedelta(seconds=FLUSH_SETTLE_S)) == 0.0


def test_a_steady_trickle_is_flushed_within_the_max_wait(engine: Engine) -> None:
    step = FLUSH_SETTLE_S / 2
    at = T0
    while at < T0 + timedelta(seconds=FLUSH_MAX_WAIT_S):
        queue_updates(engine, at, ids(1, start=int((at - T0).total_seconds() * 1000)))
        at += timedelta(seconds=step)
    assert flush_wait_s(engine, now=at) == 0.0  # never quiet, but the oldest has waited long enough


def test_a_full_collection_flushes_at_once(engine: Engine) -> None:
    queue_updates(engine, T0, ids(199))
    assert flush_wait_s(engine, now=T0) > 0
    queue_updates(engine, T0, ids(1, start=199))
    assert flush_wait_s(engine, now=T0) == 0.0


def test_rows_of_one_record_count_once(engine: Engine) -> None:
    queue_updates(engine, T0, ids(150))
    queue_updates(engine, T0, ids(150))  # the same records again: 150 records, not 300
    assert flush_wait_s(engine, now=T0) > 0

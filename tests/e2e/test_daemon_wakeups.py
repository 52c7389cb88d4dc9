"""The running daemon's wake-ups over real sockets: with every interval at an hour, a field event and a
publish's acks still reach the CRM (poll -> process -> write-back flush wake each other), store-then-ack
holds (a poll that dies between the commit and the ack loses nothing; the redelivery applies nothing twice),
and the flush they wake still sends Collections of at most 200 records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import publish_changes
from sync.service.daemon import Daemon
from sync.store.db import session_scope
from sync.store.models import InboxMessage
from sync.writeback.queue import enqueue_update, flush_writebacks
from tests.e2e.conftest import Harness, make_context

HOUR = 3600.0
WAIT_S = 30  # how long a test waits for the daemon before it fails (a bound, never a measured time)


@pytest.fixture
def ctx(harness: Harness, tmp_path: Path) -> Iterator[SyncContext]:
    """A context whose jobs would wait an hour for their intervals: only wake-ups move anything."""
    folder = tmp_path / "hourly"
    folder.mkdir()
    context = make_context(
        folder,
        harness.sf,
        harness.dispatch,
        publish_interval_s=HOUR,
        poll_interval_s=HOUR,
        process_interval_s=HOUR,
        writeback_interval_s=HOUR,
    )
    yield context
    context.engine.dispose()


@pytest.fixture
def started(ctx: SyncContext) -> Iterator[Callable[[], Daemon]]:
    daemons: list[Daemon] = []

    def start() -> Daemon:
        daemon = Daemon(ctx)
        daemons.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


def idle(daemon: Daemon) -> bool:
    return all(runner.wait_idle(0) for runner in daemon.runners.values())


def test_publish_acks_reach_the_crm_without_waiting_for_intervals(
    harness: Harness, started: Callable[[], Daemon]
) -> None:
    wo = harness.work_order()
    started()  # publishes at start; the acks come back through poll -> process -> flush wake-ups
    wait_until(lambda: harness.wo(wo)["Dispatch_Last_Synced__c"] is not None, "the ack's confirmation")


def test_a_field_event_reaches_the_crm_after_one_wake(
    harness: Harness, ctx: SyncContext, started: Callable[[], Daemon]
) -> None:
    wo = harness.work_order()
    daemon = started()
    wait_until(lambda: harness.wo(wo)["Dispatch_Last_Synced__c"] is not None, "the publish's confirmation")
    harness.clock.advance(60)
    harness.dispatch.accept_job(wo)
    daemon.wake("poll")  # e.g. a push, or the poll interval's tick; the rest follows from wake-ups
    wait_until(lambda: harness.wo(wo)["Dispatch_Status__c"] == "unscheduled", "the accepted job in the CRM")


def test_a_poll_dying_between_store_and_ack_loses_nothing(
    harness: Harness, ctx: SyncContext, started: Callable[[], Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    wo = harness.work_order()
    publish_changes(ctx)
    harness.dispatch.wait_idle(10)
    channel = ctx.backend("dispatch_connect").pull_channels[0]
    real_settle = channel.settle
    killed: list[str] = []

    def dies_before_acking(message: object) -> None:
        killed.append(getattr(message, "id", "?"))
        raise RuntimeError("process killed")

    monkeypatch.setattr(channel, "settle", dies_before_acking)
    daemon = started()
    wait_until(lambda: harness.wo(wo)["Dispatch_Last_Synced__c"] is not None, "the stored ack applied")
    assert killed  # stored, never acknowledged: still in Dispatch's queue
    monkeypatch.setattr(channel, "settle", real_settle)
    harness.clock.advance(31)  # the visibility timeout: Dispatch delivers them again
    daemon.wake("poll")

    def rows() -> list[InboxMessage]:  # a session per look: an open one would hold SQLite's write lock
        with Session(ctx.engine) as session:
            return list(session.exec(select(InboxMessage).where(col(InboxMessage.message_id).in_(killed))))

    def redelivered() -> bool:
        found = rows()
        return len(found) == len(set(killed)) and all(r.deliveries >= 2 and r.acked_at for r in found)

    wait_until(redelivered, "the redelivery, recognised and acknowledged")
    assert {(r.status, r.attempts) for r in rows()} == {("processed", 1)}  # applied once


def test_the_woken_flush_sends_collections_of_at_most_200(
    harness: Harness, ctx: SyncContext, started: Callable[[], Daemon]
) -> None:
    ids = harness.sf.insert_many("WorkOrder", ({"Subject": f"Job {n}", "Status": "New"} for n in range(450)))
    publish_changes(ctx)  # the flagged provider account, confirmed before the daemon starts
    harness.dispatch.wait_idle(10)
    drain_pull_channels(ctx)
    process_inbox(ctx)
    flush_writebacks(ctx.engine, ctx.crm)
    daemon = started()
    wait_until(lambda: idle(daemon), "the start-up runs")
    before = harness.sf.counts.get("collections", 0)
    with session_scope(ctx.engine) as session:
        for crm_id in ids:
            enqueue_update(session, "WorkOrder", crm_id, {"Dispatch_Status__c": "accepted"})
    daemon.wake("writeback")
    wait_until(lambda: harness.wo(ids[-1])["Dispatch_Status__c"] == "accepted", "the flush")
    wait_until(lambda: idle(daemon), "the flush to finish")
    assert all(harness.wo(i)["Dispatch_Status__c"] == "accepted" for i in ids)
    assert harness.sf.counts.get("collections", 0) - before == 3  # 200 + 200 + 50

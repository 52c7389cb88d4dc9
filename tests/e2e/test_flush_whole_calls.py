"""A flush that goes while the write-back queue still fills sends whole Collections calls and leaves the rest
for when the burst is quiet (sync.writeback.queue flush_timing / whole_calls, sync.service.cadence). Times
on freezegun, writes to the Salesforce emulator over real sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlmodel import col, select

from sync.service import cadence
from sync.service.wakeups import waking_through
from sync.store.db import session_scope
from sync.store.models import WriteBack
from sync.writeback.queue import (
    FLUSH_MAX_WAIT_S,
    FLUSH_SETTLE_S,
    enqueue_update,
    flush_timing,
    flush_writebacks,
)
from tests.e2e.conftest import Harness

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def work_orders(harness: Harness, n: int) -> list[str]:
    return harness.sf.insert_many("WorkOrder", ({"Subject": f"Job {i}", "Status": "New"} for i in range(n)))


def queue(
    harness: Harness, at: datetime, ids: list[str], value: str = "accepted", obj: str = "WorkOrder"
) -> None:
    with freeze_time(at), session_scope(harness.ctx.engine) as session:
        for crm_id in ids:
            field = "Dispatch_Status__c" if obj == "WorkOrder" else "Dispatch_Error__c"
            enqueue_update(session, obj, crm_id, {field: value})


def pending(harness: Harness) -> list[str]:
    with session_scope(harness.ctx.engine) as session:
        query = select(WriteBack.crm_id).where(col(WriteBack.status) == "pending").order_by(col(WriteBack.id))
        return [str(crm_id) for crm_id in session.exec(query)]


def test_a_filling_queue_flushes_now_in_whole_calls_and_the_rest_when_quiet(harness: Harness) -> None:
    queue(harness, T0, [f"0WO{i:015d}" for i in range(230)])
    engine = harness.ctx.engine
    wait, rest_in = flush_timing(engine, now=T0 + timedelta(seconds=0.05))
    assert (wait, rest_in) == (0.0, pytest.approx(FLUSH_SETTLE_S - 0.05))
    assert flush_timing(engine, now=T0 + timedelta(seconds=FLUSH_SETTLE_S)) == (0.0, None)  # quiet: all


def test_an_overdue_queue_flushes_everything(harness: Harness) -> None:
    queue(harness, T0, [f"0WO{i:015d}" for i in range(100)])
    late = T0 + timedelta(seconds=FLUSH_MAX_WAIT_S)
    queue(harness, late, [f"0WO{i:015d}" for i in range(100, 230)])  # still coming, but the oldest waited
    assert flush_timing(harness.ctx.engine, now=late) == (0.0, None)


def test_whole_calls_write_the_oldest_full_calls_and_keep_the_rest(harness: Harness) -> None:
    ids = work_orders(harness, 450)
    queue(harness, T0, ids[:1], value="scheduled")  # an older value of the first record: merged, not split
    queue(harness, T0 + timedelta(seconds=0.01), ids)
    before = harness.sf.counts.get("collections", 0)
    report = flush_writebacks(harness.ctx.engine, harness.ctx.crm, whole_calls=True)
    assert (report.records_written, harness.sf.counts.get("collections", 0) - before) == (400, 2)
    assert all(harness.wo(i)["Dispatch_Status__c"] == "accepted" for i in ids[:400])
    assert pending(harness) == ids[400:]
    assert harness.wo(ids[400])["Dispatch_Status__c"] is None
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)  # quiet now: everything
    assert pending(harness) == []
    assert harness.sf.counts.get("collections", 0) - before == 3


def test_whole_calls_trim_only_an_object_with_a_full_call(harness: Harness) -> None:
    orders = work_orders(harness, 230)
    accounts = harness.sf.insert_many("Account", ({"Name": f"Customer {i}"} for i in range(30)))
    queue(harness, T0, orders)
    queue(harness, T0, accounts, obj="Account")  # short of a call: sent whole, as a flush did before
    before = harness.sf.counts.get("collections", 0)
    report = flush_writebacks(harness.ctx.engine, harness.ctx.crm, whole_calls=True)
    assert (report.records_written, harness.sf.counts.get("collections", 0) - before) == (230, 2)
    assert pending(harness) == orders[200:]
    assert all(harness.sf.get("Account", i)["Dispatch_Error__c"] == "accepted" for i in accounts)


def test_the_daemon_flush_sends_whole_calls_and_asks_for_the_rest(harness: Harness) -> None:
    queue(harness, T0, [f"0WO{i:015d}" for i in range(230)])
    asked: list[tuple[str, float]] = []
    with freeze_time(T0 + timedelta(seconds=0.05)), waking_through(lambda n, d: asked.append((n, d))):
        assert cadence.writeback_wait(harness.ctx) == 0.0
    assert cadence.whole_calls(harness.ctx)
    assert asked == [("writeback", pytest.approx(FLUSH_SETTLE_S - 0.05))]
    with (
        freeze_time(T0 + timedelta(seconds=FLUSH_SETTLE_S)),
        waking_through(lambda n, d: asked.append((n, d))),
    ):
        assert cadence.writeback_wait(harness.ctx) == 0.0
    assert not cadence.whole_calls(harness.ctx)  # the burst is over: everything goes
    assert len(asked) == 1
    assert cadence.writeback_wait(harness.ctx) == 0.0  # outside a daemon: now, everything
    assert not cadence.whole_calls(harness.ctx)

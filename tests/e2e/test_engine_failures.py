"""Write-back, locks, dry run, pending mode and bulk flagging against the emulators."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from connector.mapping import DEFAULT_MAPPING, load_mapping
from sync.errors import UsageError
from sync.inbound.poller import drain_pull_channels
from sync.service.admin import flag_records
from sync.store.locks import LockHeld, single_instance, take_lease
from sync.store.models import OutboxBatch, WriteBack
from sync.writeback.queue import enqueue_update, flush_writebacks
from tests.e2e.conftest import Harness


def test_several_updates_to_one_record_are_coalesced_into_one_call(harness: Harness) -> None:
    wo = harness.work_order()
    with Session(harness.ctx.engine) as session:
        enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status__c": "unscheduled"})
        enqueue_update(
            session,
            "WorkOrder",
            wo,
            {"Dispatch_Status__c": "scheduled", "Dispatch_Status_Reason__c": "booked"},
        )
        session.commit()
    harness.sf.reset_counts()
    report = flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert report.calls == 1 and report.records_written == 1 and report.rows_done == 2
    assert harness.sf.counts.get("collections") == 1
    assert harness.wo(wo)["Dispatch_Status__c"] == "scheduled"


def test_locked_row_is_retried_and_then_written(harness: Harness) -> None:
    wo = harness.work_order()
    harness.sf.lock_records([wo], times=10)  # more than the gateway's own retries
    with Session(harness.ctx.engine) as session:
        enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status__c": "paused"})
        session.commit()
    first = flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert first.records_written == 0
    with Session(harness.ctx.engine) as session:
        row = session.exec(select(WriteBack)).one()
        assert row.status == "pending" and row.attempts >= 1 and row.last_error
        row.next_attempt_at = None
        session.add(row)
        session.commit()
    harness.sf.lock_records([wo], times=0)
    assert flush_writebacks(harness.ctx.engine, harness.ctx.crm).records_written == 1
    assert harness.wo(wo)["Dispatch_Status__c"] == "paused"


def test_expired_session_is_renewed_transparently(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.sf.expire_sessions()
    harness.round_trip()
    assert harness.wo(wo)["Dispatch_Last_Synced__c"] is not None


def test_request_limit_backs_off_and_nothing_is_lost(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.sf.fail_next_with_request_limit(50)
    drain_pull_channels(harness.ctx)
    from sync.inbound.processor import process_inbox

    process_inbox(harness.ctx)
    report = flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert report.records_written == 0 and report.failures
    harness.sf.fail_next_with_request_limit(0)
    with Session(harness.ctx.engine) as session:
        for row in session.exec(select(WriteBack)).all():
            row.next_attempt_at = None
            session.add(row)
        session.commit()
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert harness.wo(wo)["Dispatch_Last_Synced__c"] is not None


def test_only_one_poller_at_a_time_and_a_dead_holder_is_taken_over(harness: Harness) -> None:
    engine = harness.ctx.engine
    assert take_lease(engine, "poller", timedelta(minutes=5), holder="other-host:1")
    with pytest.raises(LockHeld, match="poller"):
        drain_pull_channels(harness.ctx)
    # The other process died: its lease lapsed without renewal.
    assert take_lease(engine, "poller", timedelta(seconds=-1), holder="other-host:1")
    assert drain_pull_channels(harness.ctx).polls == 1
    with single_instance(engine, "poller"):  # and it was released afterwards
        pass


def test_dry_run_sends_and_stores_nothing(harness: Harness) -> None:
    wo = harness.work_order()
    report = harness.publish(dry_run=True)
    jobs = [r for batch in report.payloads for r in batch if r["record_type"] == "job"]
    assert [j["record"]["external_id"] for j in jobs] == [wo]
    assert harness.dispatch.records("job") == {}
    with Session(harness.ctx.engine) as session:
        assert session.exec(select(OutboxBatch)).all() == []
    assert harness.publish().changed == 2  # the real run still sees the change


def test_pending_mode_publishes_flagged_then_clears_the_flag(harness: Harness, tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_MAPPING.read_text())
    data["objects"]["WorkOrder"]["pending"] = {"field": "Dispatch_Pending__c"}
    data["objects"]["WorkOrder"]["select"].append("Dispatch_Pending__c")
    path = tmp_path / "pending.yaml"
    path.write_text(yaml.safe_dump(data))
    harness.ctx.mapping = load_mapping(path)
    waiting = harness.work_order(Dispatch_Pending__c=True)
    idle = harness.work_order(Dispatch_Pending__c=False)
    harness.publish()
    assert waiting in harness.dispatch.records("job") and idle not in harness.dispatch.records("job")
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert harness.wo(waiting)["Dispatch_Pending__c"] is False


def test_bulk_flag_quotes_values_safely(harness: Harness) -> None:
    plain = harness.work_order(Dispatch_Send__c=None, City="Boston")
    tricky = harness.work_order(Dispatch_Send__c=None, City="O'Brien")
    count = flag_records(harness.ctx, "WorkOrder", "City = {city}", params={"city": "O'Brien' OR City != '"})
    assert count == 0  # the injection attempt is one literal value, matching nothing
    assert flag_records(harness.ctx, "WorkOrder", "City = {city}", params={"city": "O'Brien"}) == 1
    assert (
        harness.wo(tricky)["Dispatch_Send__c"] is not None and harness.wo(plain)["Dispatch_Send__c"] is None
    )
    with pytest.raises(UsageError, match="one SOQL condition"):
        flag_records(harness.ctx, "WorkOrder", "City = 'x'; DELETE")


def test_errors_are_mirrored_into_the_crm_log_object(harness: Harness) -> None:
    from sync.service.daemon import Daemon

    wo = harness.work_order(State=None, PostalCode=None)
    daemon = Daemon(harness.ctx)
    daemon.run_once()
    harness.dispatch.wait_idle(10)
    daemon.run_once()
    daemon.run_once()
    logs = [harness.sf.get("Dispatch_Log__c", i) for i in harness.sf.record_ids("Dispatch_Log__c")]
    mine = [row for row in logs if row["Record_Id__c"] == wo]
    assert len(mine) == 1  # mirrored once, however often the job runs
    assert "address" in mine[0]["Error__c"] and mine[0]["Direction__c"] == "out"


def test_an_older_write_back_in_backoff_never_overwrites_a_newer_one(harness: Harness) -> None:
    from datetime import timedelta

    from sync.store.dbtypes import utcnow

    wo = harness.work_order()
    with Session(harness.ctx.engine) as session:
        enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status__c": "scheduled"})
        session.commit()
        older = session.exec(select(WriteBack)).one()
        older.attempts, older.next_attempt_at = 1, utcnow() + timedelta(hours=1)  # failed once, backing off
        session.add(older)
        enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status__c": "complete"})
        session.commit()
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"
    with Session(harness.ctx.engine) as session:
        assert {row.status for row in session.exec(select(WriteBack)).all()} == {"done"}
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"


def test_a_killed_holders_lease_is_taken_over_at_once(harness: Harness) -> None:
    import subprocess
    import sys

    from sync.store.locks import HOLDER

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = HOLDER.split(":")[0]
    assert take_lease(
        harness.ctx.engine, "poller", timedelta(minutes=5), holder=f"{host}:{dead.stdout.strip()}:x"
    )
    assert drain_pull_channels(harness.ctx).polls == 1  # the dead process's lease does not block


def test_concurrent_flush_writes_every_record_once_and_keeps_failures(harness: Harness) -> None:
    """Three Collections calls in flight: every record written in exactly one call; a locked record's rows
    stay pending with their error while the other calls settle theirs."""
    orders = [harness.work_order(Subject=f"Job {n}") for n in range(450)]
    harness.sf.lock_records([orders[7]], times=10)
    with Session(harness.ctx.engine) as session:
        for n, wo in enumerate(orders):
            enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status_Reason__c": f"reason {n}"})
        session.commit()
    harness.sf.reset_counts()
    report = flush_writebacks(harness.ctx.engine, harness.ctx.crm, batch_size=200, concurrency=3)
    assert report.calls == 3 and harness.sf.counts.get("collections", 0) >= 3
    assert report.records_written == 449 and report.rows_done == 449
    assert len(report.failures) == 1 and orders[7] in report.failures[0]
    assert [harness.wo(wo)["Dispatch_Status_Reason__c"] for wo in orders[:3]] == [
        "reason 0",
        "reason 1",
        "reason 2",
    ]
    assert harness.wo(orders[-1])["Dispatch_Status_Reason__c"] == "reason 449"
    with Session(harness.ctx.engine) as session:
        rows = session.exec(select(WriteBack)).all()
    assert {r.crm_id for r in rows if r.status == "pending"} == {orders[7]}
    assert sum(r.status == "done" for r in rows) == 449

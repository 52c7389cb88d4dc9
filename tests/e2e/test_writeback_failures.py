"""Write-backs never fail silently (issue 17 item 3), against the Salesforce emulator over real sockets.

A refused write is a warning row at once (record, field, Salesforce's code and words, when it is tried
again), said once per record and error; Salesforce's named bad fields are split off so the rest of the
record lands; a newer update never waits on, or dies with, an older failing one; failed rows can be
requeued. Time moves with freezegun, never by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlmodel import Session, col, select

from connector.crm import RetryPolicy, SalesforceGateway, connect_salesforce
from connector.mapping import DEFAULT_MAPPING, load_mapping
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.store.db import make_engine, upgrade
from sync.store.models import SyncLog, TrackedRecord, WriteBack
from sync.writeback.queue import (
    enqueue_create,
    enqueue_update,
    flush_writebacks,
    retry_failed_writebacks,
)
from tests.e2e.conftest import PASSWORD, TOKEN, USERNAME, Harness

TYPO = "Dispatch_Status_Reasn__c"
START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    with freeze_time(START) as frozen:
        yield frozen


@pytest.fixture
def crm(harness: Harness) -> SalesforceGateway:
    """A gateway that tries a refused or locked record once (its own retries would hide the queue's)."""
    return connect_salesforce(
        harness.sf.base_url,
        username=USERNAME,
        password=PASSWORD,
        security_token=TOKEN,
        session=harness.sf.session(),
        retry=RetryPolicy(attempts=1, sleep=lambda _s: None),
    )


def enqueue(harness: Harness, record_id: str, **fields: object) -> None:
    with Session(harness.ctx.engine) as session:
        enqueue_update(session, "WorkOrder", record_id, fields)
        session.commit()


def rows(harness: Harness) -> list[WriteBack]:
    with Session(harness.ctx.engine) as session:
        return list(session.exec(select(WriteBack).order_by(col(WriteBack.id))).all())


def log_rows(harness: Harness, level: str) -> list[SyncLog]:
    with Session(harness.ctx.engine) as session:
        query = select(SyncLog).where(col(SyncLog.level) == level).order_by(col(SyncLog.id))
        return list(session.exec(query).all())


def test_first_failure_is_a_warning_at_once_naming_field_error_and_retry_time(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = harness.work_order()
    enqueue(harness, wo, Dispatch_Status__c="scheduled", **{TYPO: "booked"})
    report = flush_writebacks(harness.ctx.engine, crm)
    (warning,) = log_rows(harness, "warning")
    assert warning.crm_record_id == wo and warning.entity == "WorkOrder" and warning.direction == "in"
    assert f"CRM write-back of WorkOrder {wo} failed on field {TYPO}: INVALID_FIELD: No such column" in (
        warning.message
    )
    assert "other fields were written without it" in warning.message
    assert "will retry at 2026-11-30T10:00:02Z (attempt 1 of 8)" in warning.message
    assert warning.details and warning.details["bad_fields"] == [TYPO]
    assert warning.details["errors"][0]["code"] == "INVALID_FIELD"
    assert (report.records_written, report.records_failed, report.rows_pending_retry) == (1, 1, 1)
    assert not report.all_failed and log_rows(harness, "error") == []


def test_the_records_other_fields_land_and_only_the_bad_field_stays_failing(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = harness.work_order()
    enqueue(harness, wo, Dispatch_Status__c="scheduled", **{TYPO: "booked"})
    enqueue(harness, wo, Dispatch_Last_Synced__c="2026-11-30T09:59:00Z")
    flush_writebacks(harness.ctx.engine, crm)
    assert harness.wo(wo)["Dispatch_Status__c"] == "scheduled"
    assert harness.wo(wo)["Dispatch_Last_Synced__c"] is not None
    first, second = rows(harness)
    assert (first.status, first.fields, first.attempts) == ("pending", {TYPO: "booked"}, 1)
    assert first.last_error and "INVALID_FIELD" in first.last_error and wo in first.last_error
    assert second.status == "done"


def test_a_newer_status_lands_and_the_bad_field_gives_up_with_its_error(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = harness.work_order()
    enqueue(harness, wo, Dispatch_Status__c="scheduled", **{TYPO: "booked"})
    flush_writebacks(harness.ctx.engine, crm, max_attempts=3)
    enqueue(harness, wo, Dispatch_Status__c="complete")  # correct, queued after the failure
    flush_writebacks(harness.ctx.engine, crm, max_attempts=3)
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"
    for _ in range(2):
        clock.tick(timedelta(minutes=10))
        flush_writebacks(harness.ctx.engine, crm, max_attempts=3)
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"
    bad = [r for r in rows(harness) if r.status != "done"]
    assert [(r.status, r.fields, r.attempts) for r in bad] == [("failed", {TYPO: "booked"}, 3)]
    assert bad[0].last_error and "No such column 'Dispatch_Status_Reasn__c'" in bad[0].last_error
    (error,) = log_rows(harness, "error")
    assert error.crm_record_id == wo and "gave up after 3 attempts" in error.message and TYPO in error.message
    assert len(log_rows(harness, "warning")) == 1  # the retries did not repeat it


def test_a_mapping_typo_costs_only_its_field_through_the_whole_loop(
    harness: Harness, crm: SalesforceGateway, tmp_path: Path, clock: FrozenDateTimeFactory
) -> None:
    data = yaml.safe_load(DEFAULT_MAPPING.read_text())
    data["objects"]["WorkOrder"]["write_back"]["status_reason"] = TYPO
    (path := tmp_path / "typo.yaml").write_text(yaml.safe_dump(data))
    harness.ctx.mapping = load_mapping(path)
    wo = harness.work_order()
    harness.publish()

    def round_trip() -> None:
        drain_pull_channels(harness.ctx)
        process_inbox(harness.ctx)
        flush_writebacks(harness.ctx.engine, crm)

    round_trip()
    harness.dispatch.accept_job(wo)
    round_trip()
    assert harness.wo(wo)["Dispatch_Status__c"] == "unscheduled"
    harness.dispatch.complete_job(wo, "All done")
    round_trip()
    record = harness.wo(wo)
    assert record["Dispatch_Status__c"] == "complete" and record["Dispatch_Completed_At__c"] is not None
    pending = [r for r in rows(harness) if r.status == "pending"]
    assert [r.fields for r in pending] == [{TYPO: "All done"}]  # the older reason was superseded
    (warning,) = log_rows(harness, "warning")
    assert warning.crm_record_id == wo and TYPO in warning.message


def test_without_a_named_field_newer_rows_are_written_on_their_own(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = harness.work_order()
    enqueue(harness, wo, Dispatch_Status__c="scheduled", Dispatch_Status_Reason__c="booked")
    harness.sf.lock_records([wo], times=1)
    flush_writebacks(harness.ctx.engine, crm)
    (warning,) = log_rows(harness, "warning")
    assert "UNABLE_TO_LOCK_ROW" in warning.message and "will retry at 2026-11-30T10:00:02Z" in warning.message
    enqueue(harness, wo, Dispatch_Status__c="complete")
    report = flush_writebacks(harness.ctx.engine, crm)  # the older row is backing off: not merged in
    assert report.records_written == 1 and harness.wo(wo)["Dispatch_Status__c"] == "complete"
    older, newer = rows(harness)
    assert (older.status, older.fields, older.attempts) == (
        "pending",
        {"Dispatch_Status_Reason__c": "booked"},
        1,
    )
    assert newer.status == "done"
    clock.tick(timedelta(seconds=3))
    flush_writebacks(harness.ctx.engine, crm)
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"  # never overwritten by the older value
    assert harness.wo(wo)["Dispatch_Status_Reason__c"] == "booked"
    assert [r.status for r in rows(harness)] == ["done", "done"]
    assert any("written on attempt 2" in r.message for r in log_rows(harness, "info"))


def test_failed_rows_never_swallow_later_rows(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = harness.work_order()
    enqueue(harness, wo, **{TYPO: "booked"})
    flush_writebacks(harness.ctx.engine, crm, max_attempts=1)
    assert [r.status for r in rows(harness)] == ["failed"]
    assert log_rows(harness, "warning") == [] and len(log_rows(harness, "error")) == 1
    enqueue(harness, wo, Dispatch_Status__c="paused")
    report = flush_writebacks(harness.ctx.engine, crm, max_attempts=1)
    assert report.records_written == 1 and harness.wo(wo)["Dispatch_Status__c"] == "paused"
    assert [r.status for r in rows(harness)] == ["failed", "done"]


def test_a_failed_call_warns_for_every_record_and_reports_that_nothing_landed(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    orders = [harness.work_order(Subject=f"Job {n}") for n in range(3)]
    for wo in orders:
        enqueue(harness, wo, Dispatch_Status__c="paused")
    harness.sf.fail_next_with_request_limit(1)
    report = flush_writebacks(harness.ctx.engine, crm)
    assert report.all_failed and (report.records_failed, report.rows_pending_retry) == (3, 3)
    warnings = log_rows(harness, "warning")
    assert sorted(w.crm_record_id or "" for w in warnings) == sorted(orders)
    assert all("REQUEST_LIMIT_EXCEEDED" in w.message or "limit" in w.message.lower() for w in warnings)
    clock.tick(timedelta(seconds=3))
    report = flush_writebacks(harness.ctx.engine, crm)
    assert report.records_written == 3 and not report.all_failed
    assert {harness.wo(wo)["Dispatch_Status__c"] for wo in orders} == {"paused"}


def test_a_create_refused_for_a_field_is_made_without_it(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    with Session(harness.ctx.engine) as session:
        fields = {"Error__c": "boom", "Record_Id__c": "0WOx", "Bogus__c": "x"}
        enqueue_create(session, "Dispatch_Log__c", "log:1", fields, system=None)
        session.commit()
    flush_writebacks(harness.ctx.engine, crm)
    (created,) = harness.sf.record_ids("Dispatch_Log__c")
    assert harness.sf.get("Dispatch_Log__c", created)["Error__c"] == "boom"
    (row,) = rows(harness)
    assert (row.operation, row.crm_id, row.fields, row.status) == (
        "update",
        created,
        {"Bogus__c": "x"},
        "pending",
    )
    with Session(harness.ctx.engine) as session:
        assert session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == created)).one()


def test_failed_write_backs_are_requeued_and_warned_about_again(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = harness.work_order()
    enqueue(harness, wo, **{TYPO: "booked"})
    with Session(harness.ctx.engine) as session:
        enqueue_update(session, "Account", harness.provider_id, {"Bogus__c": 1})
        session.commit()
    flush_writebacks(harness.ctx.engine, crm, max_attempts=1)
    assert retry_failed_writebacks(harness.ctx.engine, crm_object="WorkOrder") == 1
    by_object = {r.crm_object: r for r in rows(harness)}
    assert by_object["Account"].status == "failed"
    requeued = by_object["WorkOrder"]
    assert (requeued.status, requeued.attempts, requeued.next_attempt_at) == ("pending", 0, START)
    assert any(f"WorkOrder {wo} requeued" in r.message for r in log_rows(harness, "info"))
    flush_writebacks(harness.ctx.engine, crm, max_attempts=2)
    (warning,) = log_rows(harness, "warning")
    assert warning.crm_record_id == wo
    assert retry_failed_writebacks(harness.ctx.engine) == 1  # the Account row, left out before


def test_split_and_generations_behave_alike_on_sqlite_and_postgresql(
    harness: Harness, crm: SalesforceGateway, db_url: str, clock: FrozenDateTimeFactory
) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    try:
        wo = harness.work_order()
        harness.sf.lock_records([wo], times=1)
        with Session(engine) as session:
            fields = {"Dispatch_Status__c": "scheduled", "Dispatch_Status_Reason__c": "booked", TYPO: "x"}
            enqueue_update(session, "WorkOrder", wo, fields)
            session.commit()
        flush_writebacks(engine, crm)  # locked: the whole generation waits
        with Session(engine) as session:
            enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status__c": "complete"})
            session.commit()
        assert flush_writebacks(engine, crm).records_written == 1  # the newer row alone
        clock.tick(timedelta(seconds=3))
        flush_writebacks(engine, crm)  # the older one: split, its bad field left failing
        record = harness.wo(wo)
        assert (record["Dispatch_Status__c"], record["Dispatch_Status_Reason__c"]) == ("complete", "booked")
        with Session(engine) as session:
            left = session.exec(select(WriteBack).where(col(WriteBack.status) == "pending")).all()
        assert [(r.fields, r.attempts) for r in left] == [({TYPO: "x"}, 2)]
    finally:
        engine.dispose()

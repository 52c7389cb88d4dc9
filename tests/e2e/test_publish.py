"""CRM -> Dispatch over real sockets: flag, publish, ack, confirmation written back."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from sync.store.models import OutboxBatch, SyncLog, TrackedRecord, WriteBack
from tests.e2e.conftest import Harness


def test_flagged_work_order_reaches_dispatch_and_is_confirmed(harness: Harness) -> None:
    wo = harness.work_order()
    report = harness.publish()
    assert report.changed == 2  # the work order and the provider account
    job = harness.dispatch.records("job")[wo]
    assert job["title"] == "Replace breaker" and job["status"] == "offered"
    assert job["external_organization_id"] == harness.provider_id
    assert job["external_customer_id"] == f"{harness.provider_id}-{harness.contact_id}"
    customer = harness.dispatch.records("customer")[f"{harness.provider_id}-{harness.contact_id}"]
    assert customer["first_name"] == "Jane"
    assert harness.dispatch.records("organization")[harness.provider_id]["name"] == "Spark Electric"
    assert harness.wo(wo)["Dispatch_Last_Synced__c"] is None  # not before the ack
    harness.round_trip()
    record = harness.wo(wo)
    assert record["Dispatch_Last_Synced__c"] is not None
    assert record["Dispatch_Error__c"] is None


def test_one_request_per_change_set(harness: Harness) -> None:
    for n in range(5):
        harness.work_order(Subject=f"Job {n}")
    report = harness.publish()
    assert report.requests_sent == 1
    assert harness.dispatch.counts.get("agent/in", harness.dispatch.counts.get("agent_in")) == 1


def test_irrelevant_change_publishes_nothing(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.sf.update("WorkOrder", wo, {"Priority": "High"})  # not a mapped field
    assert harness.publish().changed == 0


def test_relevant_change_publishes_again(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.sf.update("WorkOrder", wo, {"Subject": "Replace breaker panel"})
    report = harness.publish()
    assert report.changed == 1
    assert harness.dispatch.records("job")[wo]["title"] == "Replace breaker panel"


def test_write_back_does_not_echo(harness: Harness) -> None:
    harness.work_order()
    harness.publish()
    harness.round_trip()  # writes Dispatch_Last_Synced__c (a SystemModstamp change)
    assert harness.publish().changed == 0


def test_unflagged_record_is_not_published(harness: Harness) -> None:
    wo = harness.work_order(Dispatch_Send__c=None)
    harness.publish()
    assert wo not in harness.dispatch.records("job")


def test_record_with_no_usable_address_gets_error_field_and_log(harness: Harness) -> None:
    wo = harness.work_order(State=None, PostalCode=None)
    harness.publish()
    harness.round_trip()
    error = harness.wo(wo)["Dispatch_Error__c"]
    assert error and "address" in error.lower() and len(error) <= 255
    with harness.ctx.engine.connect() as connection:
        from sqlmodel import Session

        rows = Session(bind=connection).exec(select(SyncLog).where(SyncLog.crm_record_id == wo)).all()
    assert any(r.level == "error" and r.msg_id for r in rows)


def test_reassignment_moves_job_to_new_provider(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    other = harness.sf.insert("Account", {"Name": "FlowRight", "Phone": "+15550122", "Dispatch_Me__c": True})
    harness.sf.update("WorkOrder", wo, {"Dispatch_Service_Provider__c": other})
    harness.publish()
    assert harness.dispatch.records("job")[wo]["external_organization_id"] == other


def test_impossible_cancel_is_refused_before_sending(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.dispatch.accept_job(wo)
    harness.dispatch.complete_job(wo)
    harness.round_trip()
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"
    sent_before = harness.dispatch.counts.get("agent/in")
    harness.sf.update("WorkOrder", wo, {"Status": "Canceled"})
    report = harness.publish()
    assert report.refused == 1 and report.requests_sent == 0
    assert harness.dispatch.counts.get("agent/in") == sent_before
    harness.round_trip()
    assert "cannot go from complete to canceled" in harness.wo(wo)["Dispatch_Error__c"]


def test_dispatch_outage_then_delivered_once(harness: Harness) -> None:
    wo = harness.work_order()
    harness.dispatch.set_faults("agent/in", error_rate=1.0)
    report = harness.publish()
    assert report.requests_sent == 0 and report.send_errors
    harness.dispatch.set_faults(clear=True)
    report = harness.publish()
    assert report.requests_sent == 1
    with harness.ctx.engine.connect() as connection:
        from sqlmodel import Session

        batches = Session(bind=connection).exec(select(OutboxBatch)).all()
    assert len(batches) == 1 and batches[0].attempts == 2
    assert wo in harness.dispatch.records("job")


def test_crash_after_send_resends_same_message_id(harness: Harness) -> None:
    from sqlmodel import Session

    wo = harness.work_order()
    harness.publish()
    with Session(harness.ctx.engine) as session:
        batch = session.exec(select(OutboxBatch)).one()
        batch.status = "pending"  # as if the process died before recording the send
        session.add(batch)
        session.commit()
        message_id = batch.message_id
    report = harness.publish()
    assert report.requests_sent == 1 and report.batches_created == []
    harness.round_trip()
    assert harness.wo(wo)["Dispatch_Last_Synced__c"] is not None
    with Session(harness.ctx.engine) as session:
        assert [b.message_id for b in session.exec(select(OutboxBatch)).all()] == [message_id]


def test_soql_injection_in_record_data_is_harmless(harness: Harness) -> None:
    wo = harness.work_order(Subject="x' OR Name != '' --", Description="<script>alert(1)</script>")
    harness.publish()
    assert harness.dispatch.records("job")[wo]["title"] == "x' OR Name != '' --"


def test_backfill_can_be_interrupted_and_resumed_without_resending(harness: Harness) -> None:
    from sqlmodel import Session

    from sync.outbound.publisher import backfill_all, count_flagged

    orders = [harness.work_order(Subject=f"Job {n}") for n in range(25)]
    assert count_flagged(harness.ctx) == 26  # 25 work orders + the provider account
    seen: list[int] = []

    def interrupt_after_two_chunks(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill_all(harness.ctx, progress=interrupt_after_two_chunks, rows_per_commit=10)
    harness.dispatch.wait_idle(10)
    halfway = len(harness.dispatch.records("job"))
    assert 0 < halfway < 25
    report = backfill_all(harness.ctx, rows_per_commit=10)
    harness.dispatch.wait_idle(10)
    assert sorted(harness.dispatch.records("job")) == sorted(orders)
    with Session(harness.ctx.engine) as session:
        sent_jobs = [
            r["record"]["external_id"]
            for b in session.exec(select(OutboxBatch)).all()
            for r in b.payload
            if r["record_type"] == "job"
        ]
    assert sorted(sent_jobs) == sorted(orders)  # each job in exactly one batch
    assert report.changed == 25 - halfway + 1  # the rest, plus the provider account read last


def test_idle_window_moves_with_the_org_clock(harness: Harness) -> None:
    """After a burst, an idle org is not re-read forever: the lookback window follows Salesforce's clock."""
    from datetime import timedelta

    for n in range(30):
        harness.work_order(Subject=f"Burst {n}")
    harness.publish()
    harness.round_trip()  # confirmations: another burst of SystemModstamps
    assert harness.publish().read > 0  # within the lookback window: re-read (hash-deduped)
    base = harness.sf.store.clock()
    harness.sf.store.clock = lambda: base + timedelta(seconds=harness.ctx.settings.lookback_s + 60)
    harness.publish()  # this read observes the org's clock past the window ...
    idle = harness.publish()  # ... so the next one reads nothing
    assert idle.read == 0 and idle.changed == 0
    late = harness.work_order(Subject="After the burst")
    assert harness.publish().changed == 1 and late in harness.dispatch.records("job")


def _job_status(harness: Harness, wo: str) -> str:
    return str(harness.dispatch.records("job")[wo]["status"])


def test_clearing_the_flag_cancels_the_job(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.sf.update("WorkOrder", wo, {"Dispatch_Send__c": None})
    report = harness.publish()
    assert report.requests_sent == 1 and _job_status(harness, wo) == "canceled"
    assert harness.publish().requests_sent == 0  # the lookback re-reads it: nothing more is sent


def test_deleted_work_order_cancels_its_job_and_is_logged(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    calls_before = harness.sf.counts.get("query", 0)
    harness.sf.store.delete("WorkOrder", wo)
    report = harness.publish()
    queries = harness.sf.counts.get("query", 0) - calls_before
    assert queries == len(harness.ctx.mapping.objects)  # seen by the one query per object, no extra call
    assert report.requests_sent == 1 and _job_status(harness, wo) == "canceled"
    harness.round_trip()  # the ack's confirmation cannot be written to a deleted record: skipped, not retried
    with Session(harness.ctx.engine) as session:
        logs = session.exec(select(SyncLog).where(SyncLog.crm_record_id == wo)).all()
        writebacks = session.exec(select(WriteBack).where(WriteBack.crm_id == wo)).all()
    assert any("was deleted in the CRM; its job is sent canceled" in r.message for r in logs)
    assert not [r for r in logs if r.level == "error"]
    assert {w.status for w in writebacks} <= {"done", "skipped"} and "skipped" in {
        w.status for w in writebacks
    }
    assert harness.publish().requests_sent == 0


def test_deleted_work_order_with_on_delete_ignore_sends_nothing(harness: Harness) -> None:
    spec = harness.ctx.mapping.objects["WorkOrder"]
    harness.ctx.mapping.objects["WorkOrder"] = spec.model_copy(update={"on_delete": "ignore"})
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.sf.store.delete("WorkOrder", wo)
    assert harness.publish().requests_sent == 0
    assert _job_status(harness, wo) == "offered"


def _tracked(harness: Harness, crm_id: str) -> TrackedRecord:
    with Session(harness.ctx.engine) as session:
        return session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == crm_id)).one()


def test_republish_writes_only_the_columns_it_decided(harness: Harness) -> None:
    """Tracked rows are written column by column: the confirmation of the earlier send is kept."""
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    before = _tracked(harness, wo)
    assert before.confirmed_at is not None
    harness.sf.update("WorkOrder", wo, {"Subject": "Replace breaker panel"})
    report = harness.publish()
    after = _tracked(harness, wo)
    assert after.confirmed_at == before.confirmed_at and after.last_error is None
    assert after.fields_hash != before.fields_hash and after.snapshot["Subject"] == "Replace breaker panel"
    assert after.last_message_id == report.batches_created[0] != before.last_message_id


def test_record_read_twice_in_one_unit_is_tracked_once_with_its_newest_values(harness: Harness) -> None:
    """A query can return a record twice (it changed while its cursor was open): one tracked row, newest
    values."""
    from connector.mapping import soql_select
    from sync.outbound.publisher import PublishReport, _decide_rows, _Unit

    wo = harness.work_order()
    harness.publish()
    spec = harness.ctx.mapping.objects["WorkOrder"]
    row = harness.ctx.crm.query_all(f"{soql_select(spec, 'WorkOrder')} WHERE Id = '{wo}'")[0]
    unit = _Unit(harness.ctx, PublishReport(), dry_run=False, built={})
    _decide_rows(unit, "WorkOrder", spec, [{**row, "Subject": "First read"}])
    _decide_rows(unit, "WorkOrder", spec, [{**row, "Subject": "First read"}])  # decided already
    _decide_rows(unit, "WorkOrder", spec, [{**row, "Subject": "Second read"}])
    unit.commit()
    assert unit.report.changed == 2
    with Session(harness.ctx.engine) as session:
        rows = session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == wo)).all()
        batch = session.exec(select(OutboxBatch).where(OutboxBatch.status == "pending")).one()
    assert len(rows) == 1 and rows[0].snapshot["Subject"] == "Second read"
    jobs = [r["record"] for r in batch.payload if r["record_type"] == "job"]
    assert [job["title"] for job in jobs] == ["Second read"]
    assert rows[0].last_message_id == batch.message_id


def test_store_failure_recording_a_sent_batch_raises_and_the_batch_is_resent(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent batches are recorded by a worker thread while the next one is on the wire: when the store
    refuses a record, the cycle still fails loudly and that batch is re-sent, same MessageId, next cycle."""
    from sqlalchemy.exc import OperationalError

    import sync.outbound.outbox as outbox
    from sync.writeback.queue import flush_writebacks

    first, second = harness.work_order(), harness.work_order(Subject="Second visit")
    harness.ctx.backends["dispatch_connect"].settings.acks = False  # the record transaction confirms too
    harness.ctx.settings.batch_size = 1  # several batches, so later ones are on the wire meanwhile
    real, refused = outbox.confirm_batch_on_http_200, []

    def refuse_once(session: Session, mapping: object, message_id: str) -> None:
        if not refused:
            refused.append(message_id)
            raise OperationalError("UPDATE tracked_record", {}, Exception("disk I/O error"))
        real(session, mapping, message_id)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "confirm_batch_on_http_200", refuse_once)
    with pytest.raises(OperationalError, match="disk I/O error"):
        harness.publish()
    with Session(harness.ctx.engine) as session:
        batches = {b.message_id: b for b in session.exec(select(OutboxBatch)).all()}
    assert len(batches) > 2 and batches[refused[0]].status == "pending"  # its record rolled back, not lost

    report = harness.publish()
    assert report.batches_created == [] and report.requests_sent >= 1  # the same batches, nothing new
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    with Session(harness.ctx.engine) as session:
        assert {b.message_id: b.status for b in session.exec(select(OutboxBatch)).all()} == dict.fromkeys(
            batches, "confirmed"
        )
    assert {first, second} <= set(harness.dispatch.records("job"))
    assert all(harness.wo(wo)["Dispatch_Last_Synced__c"] is not None for wo in (first, second))

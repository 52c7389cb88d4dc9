"""Dispatch -> CRM over real sockets: poll (store, then ack), process, write back; failures lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from connector.dispatch_connect.client import OutboundMessage
from connector.dispatch_connect.translate import split_survey_comment
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox, retry_dead
from sync.store.models import EntityStateRow, InboxMessage, SyncLog, TrackedRecord
from tests.e2e.conftest import Harness

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "outbound-samples"


def published_job(harness: Harness) -> str:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    return wo


def step(harness: Harness, action, *args, **kwargs):  # type: ignore[no-untyped-def]
    harness.clock.advance(60)
    result = action(*args, **kwargs)
    harness.round_trip()
    return result


def test_dnm_flow_fills_status_and_milestones(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    step(harness, d.accept_job, wo)
    assert harness.wo(wo)["Dispatch_Status__c"] == "unscheduled"
    assert harness.wo(wo)["Dispatch_Accepted_At__c"] is not None
    appt = step(harness, d.schedule_appointment, wo, "2026-12-01T15:00:00Z", "2026-12-01T17:00:00Z")
    record = harness.wo(wo)
    assert record["Dispatch_Status__c"] == "scheduled"
    assert (
        record["Dispatch_Appointment_Start__c"] is not None and record["Dispatch_Scheduled_At__c"] is not None
    )
    step(harness, d.enroute_appointment, appt)
    step(harness, d.start_appointment, appt)
    step(harness, d.complete_job, wo, "All done")
    record = harness.wo(wo)
    assert record["Dispatch_Status__c"] == "complete"
    assert record["Dispatch_Status_Reason__c"] == "All done"
    for field in ("Dispatch_En_Route_At__c", "Dispatch_Started_At__c", "Dispatch_Completed_At__c"):
        assert record[field] is not None, field
    assert record["Last_Updated_from_Dispatch__c"] is not None


def test_pause_with_reason_and_follow_up_after_complete(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    step(harness, d.accept_job, wo)
    step(harness, d.pause_job, wo, "Waiting for parts")
    assert harness.wo(wo)["Dispatch_Status__c"] == "paused"
    assert harness.wo(wo)["Dispatch_Status_Reason__c"] == "Waiting for parts"
    step(harness, d.complete_job, wo)
    step(
        harness, d.schedule_appointment, wo, "2026-12-02T15:00:00Z", "2026-12-02T16:00:00Z", external_id="A-2"
    )
    assert harness.wo(wo)["Dispatch_Status__c"] == "scheduled"


def test_note_updated_then_deleted(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    note = step(harness, d.add_note, wo, "Gate code 1234")
    step(harness, d.update_note, note, "Gate code 4321")
    step(harness, d.delete_note, note)
    with Session(harness.ctx.engine) as session:
        row = session.exec(select(EntityStateRow).where(EntityStateRow.kind == "note")).one()
    assert row.state == "deleted" and row.attributes["description"] == "Gate code 4321"
    notes = [harness.sf.get("Dispatch_Note__c", i) for i in harness.sf.record_ids("Dispatch_Note__c")]
    assert len(notes) == 1
    assert (
        notes[0]["Work_Order__c"] == wo and notes[0]["Body__c"] == "Gate code 4321" and notes[0]["Deleted__c"]
    )


def test_attachment_becomes_a_crm_note_record(harness: Harness) -> None:
    wo = published_job(harness)
    step(harness, harness.dispatch.add_attachment, wo, "photo.png", "tok-1")
    notes = [harness.sf.get("Dispatch_Note__c", i) for i in harness.sf.record_ids("Dispatch_Note__c")]
    assert [(n["Name__c"], n["File_Token__c"], n["Deleted__c"]) for n in notes] == [
        ("photo.png", "tok-1", False)
    ]


def test_estimate_won_invoice_payment(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    estimate = step(harness, d.create_estimate, wo)
    step(harness, d.set_billing_status, estimate, "won")
    invoice = step(harness, d.create_invoice, wo)
    step(harness, d.record_payment, invoice, "120.00")
    with Session(harness.ctx.engine) as session:
        kinds = {(r.kind, r.state) for r in session.exec(select(EntityStateRow)).all()}
        messages = [r.message for r in session.exec(select(SyncLog)).all()]
    assert ("estimate", "won") in kinds and any(k == "invoice" for k, _ in kinds)
    assert any("invoice" in m and "created" in m for m in messages)
    assert any(m.startswith("payment") for m in messages)


def test_survey_reasons_are_split_and_written_back(harness: Harness) -> None:
    assert split_survey_comment("[Late, Messy] Great tech") == (["Late", "Messy"], "Great tech")
    wo = published_job(harness)
    step(harness, harness.dispatch.submit_survey, wo, rating=4, message="[Late] Friendly")
    record = harness.wo(wo)
    assert record["Dispatch_Survey_Rating__c"] == 4
    assert record["Dispatch_Survey_Comments__c"] == "[Late] Friendly"


def test_duplicate_and_out_of_order_delivery_apply_once(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    d.set_queue_faults(duplicate_rate=1.0, shuffle_rate=1.0)
    harness.clock.advance(60)
    d.accept_job(wo)
    harness.clock.advance(60)
    d.complete_job(wo, "done")
    report = drain_pull_channels(harness.ctx)
    assert report.redelivered >= 1
    process_inbox(harness.ctx)
    harness.round_trip()
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"  # the older accept never rolls it back
    with Session(harness.ctx.engine) as session:
        job = session.exec(select(EntityStateRow).where(EntityStateRow.kind == "job")).one()
    assert job.state == "complete"


def test_late_accept_after_complete_still_writes_its_milestone(harness: Harness) -> None:
    """Dispatch delivered "accepted" after "complete" (a redelivery after a crash, say): the state stays
    complete, and the accepted time it proves still reaches the CRM."""
    wo = published_job(harness)
    d, client = harness.dispatch, harness.ctx.backends["dispatch_connect"].client
    harness.clock.advance(60)
    d.accept_job(wo)
    (accepted,) = client.poll(10)  # taken off the queue before the connector sees it
    client.ack(accepted.receipt, accepted.procedure_id)
    step(harness, d.complete_job, wo, "done")
    assert harness.wo(wo)["Dispatch_Accepted_At__c"] is None
    step(harness, d.emit, "job", dict(accepted.actions[0].data))
    record = harness.wo(wo)
    assert record["Dispatch_Status__c"] == "complete"
    assert record["Dispatch_Accepted_At__c"] is not None
    assert record["Dispatch_Accepted_At__c"] < record["Dispatch_Completed_At__c"]


def test_store_failure_means_no_ack_and_redelivery_processes_once(harness: Harness) -> None:
    wo = published_job(harness)
    harness.dispatch.accept_job(wo)

    def broken_store(message: OutboundMessage) -> None:
        raise OSError("disk full")

    report = drain_pull_channels(harness.ctx, before_store=broken_store)
    assert report.store_failures and report.acked == 0
    assert drain_pull_channels(harness.ctx).received == 0  # invisible until the timeout
    harness.clock.advance(31)
    again = drain_pull_channels(harness.ctx)
    assert again.stored == 1 and again.acked == 1
    process_inbox(harness.ctx)
    harness.round_trip()
    assert harness.wo(wo)["Dispatch_Status__c"] == "unscheduled"


def test_message_is_never_acked_before_its_commit(harness: Harness) -> None:
    wo = published_job(harness)
    for _ in range(3):
        harness.clock.advance(1)
        harness.dispatch.accept_job(wo)
    report = drain_pull_channels(harness.ctx)
    for event in report.events:
        if event.startswith("acked:"):
            assert report.events.index("stored:" + event[6:]) < report.events.index(event)
    with Session(harness.ctx.engine) as session:
        assert all(m.acked_at >= m.received_at for m in session.exec(select(InboxMessage)).all())


def test_poison_message_goes_dead_while_others_flow(harness: Harness) -> None:
    wo = published_job(harness)
    harness.dispatch.emit("job", {"id": 1, "external_id": wo, "status": "unscheduled"})
    harness.clock.advance(60)
    harness.dispatch.complete_job(wo, "finished")
    drain_pull_channels(harness.ctx)
    with Session(harness.ctx.engine) as session:
        first = session.exec(
            select(InboxMessage).where(InboxMessage.status == "new").order_by(InboxMessage.received_at)
        ).first()
        first.payload = {"Message": {"broken": True}}  # poison: cannot be parsed
        session.add(first)
        session.commit()
    for _ in range(3):
        process_inbox(harness.ctx)
        with Session(harness.ctx.engine) as session:
            for row in session.exec(select(InboxMessage)).all():
                row.next_attempt_at = None
                session.add(row)
            session.commit()
    harness.round_trip()
    assert harness.wo(wo)["Dispatch_Status__c"] == "complete"
    with Session(harness.ctx.engine) as session:
        dead = session.exec(select(InboxMessage).where(InboxMessage.status == "dead")).all()
        logs = session.exec(select(SyncLog).where(SyncLog.level == "error")).all()
    assert len(dead) == 1 and dead[0].last_error
    assert any("is dead" in r.message for r in logs)
    assert retry_dead(harness.ctx) == 1


def test_err_is_correlated_to_its_batch(harness: Harness) -> None:
    wo = harness.work_order(State=None, PostalCode=None)
    harness.publish()
    harness.round_trip()
    with Session(harness.ctx.engine) as session:
        tracked = session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == wo)).one()
        log = session.exec(
            select(SyncLog).where(SyncLog.crm_record_id == wo, SyncLog.level == "error")
        ).first()
    assert log is not None and log.msg_id == tracked.last_message_id


def test_job_born_in_dispatch_creates_a_work_order(harness: Harness) -> None:
    harness.dispatch.create_job(
        title="Emergency leak",
        external_id="D-77",
        organization_external_id=harness.provider_id,
        address={"street_1": "2 Elm St", "city": "Springfield", "state": "IL", "postal_code": "62701"},
        customer={"first_name": "Sam", "last_name": "Lee", "external_id": "C-9"},
    )
    harness.round_trip()
    harness.round_trip()
    with Session(harness.ctx.engine) as session:
        tracked = session.exec(select(TrackedRecord).where(TrackedRecord.external_id == "D-77")).first()
    assert tracked is not None
    record = harness.wo(tracked.crm_id)
    assert record["Subject"] == "Emergency leak" and record["Dispatch_Status__c"] == "offered"


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.json")))
def test_every_playbook_sample_is_processed(harness: Harness, sample: str) -> None:
    payload = json.loads((SAMPLES / sample).read_text())["payload"]
    wo = published_job(harness)
    text = json.dumps(payload).replace("your_system_id", wo).replace("enterprise_job_system_id", wo)
    for action in json.loads(text)["Actions"]:
        for put_type, data in action["Put"].items():
            harness.dispatch.emit(put_type, data)
    harness.round_trip()
    with Session(harness.ctx.engine) as session:
        rows = session.exec(select(InboxMessage)).all()
    assert rows and all(r.status == "processed" for r in rows), [r.last_error for r in rows]
    if sample.startswith(("01", "02", "19")):
        assert harness.wo(wo)["Last_Updated_from_Dispatch__c"] is not None

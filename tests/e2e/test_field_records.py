"""From Dispatch over real sockets: billing documents, payments, custom forms, calendar events and offers land
in the CRM per the bundled mapping, once each, and an older billing event never rolls a record back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.store.models import TrackedRecord
from tests.e2e.conftest import Harness

LINES = [{"external_billing_item_id": "CAT-1", "title": "Fuse", "qty": 2, "price": "3.33", "markup": 0}]


def published_job(harness: Harness) -> str:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    return wo


def step(harness: Harness, action: Any, *args: Any, **kwargs: Any) -> Any:
    harness.clock.advance(60)
    result = action(*args, **kwargs)
    harness.round_trip()
    return result


def records(harness: Harness, name: str) -> list[dict[str, Any]]:
    return [harness.sf.get(name, i) for i in harness.sf.record_ids(name)]


def test_an_estimate_is_a_record_on_the_work_order_updated_in_place(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    estimate = step(
        harness, d.create_estimate, wo, external_id="EST-1", number="1005", po_number="PO-9", lines=LINES
    )
    step(harness, d.set_billing_status, estimate, "won")
    (doc,) = records(harness, "Dispatch_Billing_Document__c")
    assert doc["Work_Order__c"] == wo and doc["Document_Type__c"] == "Estimate"
    assert (doc["Number__c"], doc["Status__c"], doc["PO_Number__c"]) == ("1005", "won", "PO-9")
    assert float(doc["Total__c"]) == 6.66 and float(doc["Balance__c"]) == 6.66 and doc["Currency__c"] == "USD"
    assert json.loads(doc["Lines__c"])[0]["billing_item"] == {"external_id": "CAT-1"}
    assert doc["Updated_At__c"] is not None and doc["Paid__c"] is False


def test_an_older_billing_event_never_rolls_the_record_back(harness: Harness) -> None:
    wo = published_job(harness)
    d, client = harness.dispatch, harness.ctx.backends["dispatch_connect"].client
    invoice = step(harness, d.create_invoice, wo, external_id="INV-1", lines=LINES)
    harness.clock.advance(60)
    d.set_billing_status(invoice, "sent")
    (sent,) = client.poll(10)  # taken off the queue before the connector sees it
    client.ack(sent.receipt, sent.procedure_id)
    step(harness, d.set_billing_status, invoice, "paid")
    step(harness, d.emit, "invoice", dict(sent.actions[0].data))  # "sent" arrives late
    (doc,) = records(harness, "Dispatch_Billing_Document__c")
    assert doc["Status__c"] == "paid"


def test_a_payment_is_a_record_on_its_invoice_and_work_order(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    invoice = step(harness, d.create_invoice, wo, external_id="INV-2", lines=LINES)
    step(harness, d.record_payment, invoice, "1.11", transaction_id="tx-1", card_number="4111")
    (doc,) = records(harness, "Dispatch_Billing_Document__c")
    (payment,) = records(harness, "Dispatch_Payment__c")
    assert payment["Work_Order__c"] == wo and payment["Billing_Document__c"] == doc["Id"]
    assert float(payment["Amount__c"]) == 1.11 and payment["Payment_Method__c"] == "check"
    assert (payment["Result__c"], payment["Transaction_Id__c"]) == ("success", "tx-1")
    assert "4111" not in json.dumps(payment, default=str)  # card data stays out of the CRM


def test_a_custom_form_is_a_record_with_named_answers_and_all_as_json(harness: Harness) -> None:
    wo = published_job(harness)
    answers = {"cash_amount": "1222", "mileage": "1232", "signed_by": "J. Dodd"}
    step(harness, harness.dispatch.submit_custom_form, wo, "wfm_custom_form_close_out", answers)
    (form,) = records(harness, "Dispatch_Form__c")
    assert form["Work_Order__c"] == wo and form["Form_Name__c"] == "wfm_custom_form_close_out"
    assert float(form["Cash_Amount__c"]) == 1222 and float(form["Mileage__c"]) == 1232
    assert json.loads(form["Answers__c"]) == answers


def test_a_calendar_event_is_an_event_for_the_technicians_contact(harness: Harness) -> None:
    with Session(harness.ctx.engine) as session:  # the technician's Contact, published as TECH-1
        session.add(
            TrackedRecord(
                system="dispatch_connect",
                crm_object="Contact",
                crm_id=harness.contact_id,
                external_id="TECH-1",
            )
        )
        session.commit()
    event = {"uuid": "317133c0", "title": "Lunch", "external_id": "CAL-1", "external_user_id": "TECH-1"}
    event.update(started_at="2026-10-21T08:30:00Z", completed_at="2026-10-21T09:30:00Z")
    step(harness, harness.dispatch.emit, "calendar_event", event)
    (crm_event,) = records(harness, "Event")
    assert crm_event["Subject"] == "Lunch" and crm_event["WhoId"] == harness.contact_id
    assert crm_event["StartDateTime"] == datetime(2026, 10, 21, 8, 30, tzinfo=UTC)
    assert crm_event["EndDateTime"] == datetime(2026, 10, 21, 9, 30, tzinfo=UTC)
    assert crm_event["Dispatch_Event_Id__c"] == "317133c0"


def test_a_calendar_event_of_an_unknown_technician_has_no_who(harness: Harness) -> None:
    step(
        harness, harness.dispatch.calendar_event, "Load truck", "2026-10-21T07:00:00Z", "2026-10-21T07:30:00Z"
    )
    (crm_event,) = records(harness, "Event")
    assert crm_event["Subject"] == "Load truck" and crm_event["WhoId"] is None


def test_offer_status_and_milestone_land_on_the_work_order(harness: Harness) -> None:
    wo = published_job(harness)
    step(harness, harness.dispatch.offer, wo, "offered")
    assert harness.wo(wo)["Dispatch_Offer_Status__c"] == "offered"
    step(harness, harness.dispatch.offer, wo, "canceled", "No provider took it")
    record = harness.wo(wo)
    assert record["Dispatch_Offer_Status__c"] == "canceled"
    assert record["Dispatch_Offer_Status_Reason__c"] == "No provider took it"
    assert record["Dispatch_Offer_Canceled_At__c"] is not None


def test_redelivered_field_events_each_land_once(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    d.set_queue_faults(duplicate_rate=1.0)
    invoice = d.create_invoice(wo, external_id="INV-3", lines=LINES)
    harness.clock.advance(60)
    d.record_payment(invoice, "2.00")
    d.submit_custom_form(wo, "wfm_custom_form_close_out", {"mileage": "3"})
    d.calendar_event("Lunch", "2026-10-21T08:30:00Z", "2026-10-21T09:30:00Z")
    report = drain_pull_channels(harness.ctx)
    assert report.redelivered >= 1
    process_inbox(harness.ctx)
    harness.round_trip()
    for name in ("Dispatch_Billing_Document__c", "Dispatch_Payment__c", "Dispatch_Form__c", "Event"):
        assert len(harness.sf.record_ids(name)) == 1, name


def test_documents_without_external_ids_are_keyed_by_dispatch_id(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    invoice = step(harness, d.create_invoice, wo, lines=LINES)  # no external id: Dispatch's id names it
    step(harness, d.record_payment, invoice, "6.66")
    step(harness, d.set_billing_status, invoice, "paid")
    (doc,) = records(harness, "Dispatch_Billing_Document__c")
    (payment,) = records(harness, "Dispatch_Payment__c")
    assert doc["Status__c"] == "paid" and doc["Dispatch_Id__c"] == str(invoice)
    assert payment["Billing_Document__c"] == doc["Id"] and payment["Work_Order__c"] == wo


def test_shuffled_billing_updates_in_one_batch_keep_the_newest(harness: Harness) -> None:
    wo = published_job(harness)
    d = harness.dispatch
    estimate = step(harness, d.create_estimate, wo, external_id="EST-9", lines=LINES)
    d.set_queue_faults(shuffle_rate=1.0)
    for status in ("sent", "won"):
        harness.clock.advance(60)
        d.set_billing_status(estimate, status)
    harness.round_trip()
    harness.round_trip()
    (doc,) = records(harness, "Dispatch_Billing_Document__c")
    assert doc["Status__c"] == "won"

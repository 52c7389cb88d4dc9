"""Jobs born in the field (the playbook's Gateway "Job Created" and "Job Canceled", samples 09 and 19) over
real sockets: the bundled mapping's `inbound_jobs` creates the work order with the job's fields, and a
cancel from the enterprise side cancels it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sync.inbound.customers import link_field_customers
from sync.writeback.queue import flush_writebacks
from tests.e2e.conftest import Harness

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "outbound-samples"


def sample(name: str) -> dict[str, Any]:
    payload = json.loads((SAMPLES / name).read_text(encoding="utf-8"))["payload"]
    (put,) = payload["Actions"][0]["Put"].values()
    return dict(put)


def step(harness: Harness, put_type: str, data: dict[str, Any]) -> None:
    harness.clock.advance(60)
    harness.dispatch.emit(put_type, data)
    harness.round_trip()


def created_work_order(harness: Harness) -> dict[str, Any]:
    (record_id,) = harness.sf.record_ids("WorkOrder")
    return harness.wo(record_id)


def test_job_created_becomes_a_work_order_with_the_playbooks_fields(harness: Harness) -> None:
    step(harness, "job", sample("09-job-job-created.json"))
    wo = created_work_order(harness)
    assert wo["Subject"] == "Claim Details 206"  # trimmed
    assert (wo["Street"], wo["City"], wo["State"], wo["PostalCode"]) == (
        "1755 Ridgeview Dr",
        "Arlington",
        "TX",
        "76012",
    )
    assert wo["Country"] == "United States" and wo["Dispatch_Time_Zone__c"] == "America/Chicago"
    assert round(float(wo["Latitude"]), 4) == 32.7634 and round(float(wo["Longitude"]), 4) == -97.1352
    assert (
        wo["Dispatch_Service_Type__c"] == "air conditioning" and float(wo["Dispatch_Service_Fee__c"]) == 130
    )
    assert wo["Dispatch_Symptom__c"] == "some symptom at the job level if relevant"
    assert wo["Dispatch_Service_Instructions__c"] == "some internal description"
    assert json.loads(wo["Dispatch_Equipment__c"])[0]["serial_number"] == "01024"
    assert json.loads(wo["Dispatch_Custom_Fields__c"]) == {"field1": "may vary per brand"}
    assert json.loads(wo["Dispatch_Reason_Codes__c"])["cancel_reasons"] == [
        "provider_canceled",
        "customer_canceled",
    ]
    assert json.loads(wo["Dispatch_Marketing__c"])[0]["campaign"] == "mamba"
    assert wo["Dispatch_Source__c"] == "American Pie"
    assert (wo["Status"], wo["Dispatch_Status__c"]) == ("New", "offered")
    assert wo["Description"] is None  # Dispatch's rendering text: kept only when the mapping asks


def test_job_canceled_from_the_enterprise_side_cancels_the_work_order(harness: Harness) -> None:
    step(harness, "job", sample("09-job-job-created.json"))
    step(harness, "job", sample("19-job-job-canceled.json"))
    wo = created_work_order(harness)
    assert wo["Dispatch_Status__c"] == "canceled" and wo["Dispatch_Canceled_At__c"] is not None
    assert len(harness.sf.record_ids("WorkOrder")) == 1


def test_a_published_job_canceled_in_dispatch_is_canceled_on_its_work_order(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.clock.advance(60)
    harness.dispatch.cancel_job(wo, "customer_canceled")
    harness.round_trip()
    record = harness.wo(wo)
    assert record["Dispatch_Status__c"] == "canceled"
    assert record["Dispatch_Status_Reason__c"] == "customer_canceled"
    assert record["Dispatch_Canceled_At__c"] is not None


def born_with_customer(harness: Harness, **customer: str) -> dict[str, Any]:
    """Sample 09 with this customer, applied, then the customer pass and a flush (the daemon's order)."""
    job = sample("09-job-job-created.json")
    job["customer"] = {**job["customer"], **customer}
    step(harness, "job", job)
    link_field_customers(harness.ctx)
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    return created_work_order(harness)


def test_the_customer_is_the_contact_with_the_same_email(harness: Harness) -> None:
    wo = born_with_customer(harness, email="jane@example.com", phone_number="+15559999999")
    assert wo["ContactId"] == harness.contact_id
    assert len(harness.sf.record_ids("Contact")) == 1


def test_else_the_contact_with_the_same_phone(harness: Harness) -> None:
    wo = born_with_customer(harness, email="someone@else.example", phone_number="+15550101")
    assert wo["ContactId"] == harness.contact_id


def test_else_a_new_contact_is_created_and_linked(harness: Harness) -> None:
    wo = born_with_customer(harness)  # the sample's James Dodd, known to no Contact
    contact = harness.sf.get("Contact", wo["ContactId"])
    assert (contact["FirstName"], contact["LastName"]) == ("James", "Dodd")
    assert (contact["Email"], contact["Phone"]) == ("devs+dodd@dispatch.me", "+15559803824")
    assert len(harness.sf.record_ids("Contact")) == 2


def test_a_redelivered_job_created_makes_one_work_order_and_one_contact(harness: Harness) -> None:
    harness.dispatch.set_queue_faults(duplicate_rate=1.0)
    born_with_customer(harness)
    step(harness, "job", {**sample("09-job-job-created.json"), "status": "unscheduled"})
    link_field_customers(harness.ctx)
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert len(harness.sf.record_ids("WorkOrder")) == 1
    assert len(harness.sf.record_ids("Contact")) == 2
    assert created_work_order(harness)["Dispatch_Status__c"] == "unscheduled"


def test_the_created_work_orders_first_publish_updates_its_job_not_a_new_one(harness: Harness) -> None:
    """Issue 16 item 4: the work order made for a field-born job is linked to it; flagging it later sends
    that job (its external id), and the CRM's mapped status does not roll the field's state back."""
    address = {"street_1": "9 Elm St", "city": "Springfield", "state": "IL", "postal_code": "62701"}
    customer = {"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com"}
    harness.clock.advance(60)
    harness.dispatch.create_job(title="Leaking pipe", address=address, customer=customer, external_id="ENT-7")
    harness.round_trip()
    harness.clock.advance(60)
    harness.dispatch.accept_job("ENT-7")
    harness.round_trip()
    wo = created_work_order(harness)
    assert wo["Dispatch_Status__c"] == "unscheduled"

    harness.sf.update("WorkOrder", wo["Id"], {"Dispatch_Send__c": "2026-11-28T09:00:00Z", "Subject": "Leak"})
    report = harness.publish()
    assert report.refused == 0 and report.send_errors == []
    jobs = harness.dispatch.records("job")
    assert set(jobs) == {"ENT-7"}  # the same job, no second one under the work order's id
    assert jobs["ENT-7"]["title"] == "Leak" and jobs["ENT-7"]["status"] == "unscheduled"

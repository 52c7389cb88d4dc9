"""Child records over real sockets (issue 19): a work order's line items become billing items and its
estimate's lines, a changed or deleted line re-sends the estimate, an idle cycle costs one call per object
and per child object, and a file body goes base64 (or is refused with a precise error)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from connector.mapping import DEFAULT_MAPPING, load_mapping
from sync.store.models import SyncLog
from tests.e2e.conftest import Harness

# The line-item object, its child relationship and the records it becomes: shared with
# test_child_parent_outside_window.py and bench/publisher_lines.py.
LINE_ITEM_FIELDS: dict[str, Any] = {
    "WorkOrderId": {"type": "reference", "to": "WorkOrder", "child_relationship": "WorkOrderLineItems"},
    "LineItemNumber": "string",
    "Description": "textarea",
    "Quantity": "double",
    "UnitPrice": "currency",
    "Status": {"type": "picklist", "picklist_values": ["New", "Canceled"]},
}
LINE_ITEMS = {
    "object": "WorkOrderLineItem",
    "parent_field": "WorkOrderId",
    "select": ["Id", "Description", "Quantity", "UnitPrice", "LineItemNumber"],
    "where": "Status != 'Canceled'",
    "order_by": "LineItemNumber",
}
LINE_RECORDS: list[dict[str, Any]] = [
    {
        "type": "billing_item",
        "each": "WorkOrderLineItems",
        "external_id": "Id",
        "fields": {
            "title": "Description",
            "external_organization_id": "$parent.Dispatch_Service_Provider__c",
        },
    },
    {
        "type": "billing_document",
        "external_id": {"template": "{Id}-estimate"},
        "fields": {
            "external_job_id": "Id",
            "doc_type": {"const": "estimate"},
            "lines": {
                "children": "WorkOrderLineItems",
                "fields": {
                    "external_billing_item_id": "Id",
                    "title": "Description",
                    "qty": {"field": "Quantity", "format": "int"},
                    "price": {"field": "UnitPrice", "format": "float"},
                },
            },
        },
    },
]
RECORDS: list[dict[str, Any]] = [
    *LINE_RECORDS,
    {
        "type": "attachment",
        "when": "Photo_Version_Id__c",
        "external_id": {"template": "{Id}-photo"},
        "fields": {
            "external_job_id": "Id",
            "file_name": {"const": "photo.png"},
            "file": {"blob": "Photo_Version_Id__c", "max_bytes": 64},
        },
    },
]


@pytest.fixture
def child_harness(harness: Harness, tmp_path: Path) -> Iterator[Harness]:
    """The default mapping plus line items, an estimate and a photo; the org gains line items."""
    harness.sf.define_object("WorkOrderLineItem", LINE_ITEM_FIELDS, key_prefix="1WL")
    harness.sf.define_object(
        "WorkOrder", {"Photo_Version_Id__c": {"type": "reference", "to": "ContentVersion"}}
    )
    data = yaml.safe_load(DEFAULT_MAPPING.read_text())
    work_order = data["objects"]["WorkOrder"]
    work_order["select"].append("Photo_Version_Id__c")
    work_order["children"] = {"WorkOrderLineItems": LINE_ITEMS}
    job = work_order["records"].pop()  # the job stays last: the primary record
    work_order["records"] += [*RECORDS, job]
    path = tmp_path / "children.yaml"
    path.write_text(yaml.safe_dump(data))
    harness.ctx.mapping = load_mapping(path)
    yield harness


def line(h: Harness, wo: str, number: str, **values: Any) -> str:
    row = {"WorkOrderId": wo, "LineItemNumber": number, "Description": f"Part {number}", "Quantity": 1.0}
    return h.sf.insert("WorkOrderLineItem", {"UnitPrice": 10.0, "Status": "New", **row, **values})


def estimate(h: Harness, wo: str) -> dict[str, Any]:
    return h.dispatch.records("billing_document")[f"{wo}-estimate"]


def settle(h: Harness) -> None:
    """Publish, then let acks come back and the confirmations land, then move the window past them."""
    h.publish()
    h.round_trip()
    h.clock.advance(60)


def test_line_items_become_billing_items_and_the_estimates_lines(child_harness: Harness) -> None:
    h = child_harness
    wo = h.work_order()
    first, second = line(h, wo, "1", Quantity=2.0), line(h, wo, "2", UnitPrice=4.5)
    line(h, wo, "3", Status="Canceled")  # left out by the subquery's WHERE
    h.publish()
    items = h.dispatch.records("billing_item")
    assert set(items) == {first, second} and items[first]["title"] == "Part 1"
    lines = estimate(h, wo)["lines"]
    assert [(x["external_billing_item_id"], x["qty"], x["price"]) for x in lines] == [
        (first, 2, 10.0),
        (second, 1, 4.5),
    ]


def test_a_changed_line_item_re_sends_the_estimate(child_harness: Harness) -> None:
    h = child_harness
    wo = h.work_order()
    item = line(h, wo, "1")
    settle(h)
    h.sf.update("WorkOrderLineItem", item, {"Quantity": 7.0})
    report = h.publish()
    assert report.changed == 1
    assert estimate(h, wo)["lines"][0]["qty"] == 7


def test_a_deleted_line_item_re_sends_the_estimate_without_it(child_harness: Harness) -> None:
    h = child_harness
    wo = h.work_order()
    keep, gone = line(h, wo, "1"), line(h, wo, "2")
    settle(h)
    h.sf.delete("WorkOrderLineItem", gone)
    report = h.publish()
    assert report.changed == 1
    assert [x["external_billing_item_id"] for x in estimate(h, wo)["lines"]] == [keep]


def test_a_line_item_of_an_unpublished_work_order_reads_no_parent(child_harness: Harness) -> None:
    h = child_harness
    h.work_order()
    settle(h)  # a flagged work order published: the watermark exists, the next cycles are incremental
    wo = h.work_order(Dispatch_Send__c=None)
    settle(h)
    line(h, wo, "1")
    h.sf.reset_counts()
    report = h.publish()
    assert report.changed == 0 and _calls(h) == 3  # WorkOrder, Account, the line items: no read by id


def test_an_idle_cycle_costs_one_call_per_object_and_per_child_object(child_harness: Harness) -> None:
    h = child_harness
    wo = h.work_order()
    line(h, wo, "1")
    settle(h)
    h.publish()  # reads the confirmations' echo
    h.clock.advance(600)
    h.sf.reset_counts()
    report = h.publish()
    mapped = len(h.ctx.mapping.objects)  # WorkOrder, Account
    assert report.changed == 0 and _calls(h) == mapped + 1, h.sf.counts


def test_a_file_body_is_sent_base64(child_harness: Harness) -> None:
    h = child_harness
    body = b"\x89PNG tiny"
    version = h.sf.insert(
        "ContentVersion",
        {"Title": "photo", "PathOnClient": "photo.png", "VersionData": base64.b64encode(body).decode()},
    )
    wo = h.work_order(Photo_Version_Id__c=version)
    h.publish()
    sent = h.dispatch.records("attachment")[f"{wo}-photo"]
    assert base64.b64decode(sent["file"]) == body


def test_a_missing_file_refuses_that_record_with_a_precise_error(child_harness: Harness) -> None:
    h = child_harness
    other = h.work_order()
    wo = h.work_order(Photo_Version_Id__c="068000000000404AAA")
    report = h.publish()
    assert report.refused == 1 and other in h.dispatch.records("job") and wo not in h.dispatch.records("job")
    h.round_trip()
    error = h.wo(wo)["Dispatch_Error__c"]
    assert error.startswith(
        f"WorkOrder {wo}: cannot download file 068000000000404AAA (from Photo_Version_Id__c) for "
        "attachment.file: "
    )
    with Session(h.ctx.engine) as session:
        logged = session.exec(
            select(SyncLog).where(SyncLog.crm_record_id == wo, SyncLog.level == "error")
        ).all()
    (message,) = [row.message for row in logged if "cannot download file" in row.message]
    assert message.startswith(error[:100]) and message.endswith(
        "VersionData of ContentVersion 068000000000404AAA: HTTP 404 NOT_FOUND: The requested resource "
        "does not exist; not sent to dispatch_connect"
    )


def test_a_file_over_its_max_bytes_is_refused(child_harness: Harness) -> None:
    h = child_harness
    body = base64.b64encode(b"x" * 65).decode()
    version = h.sf.insert("ContentVersion", {"Title": "big", "PathOnClient": "big.png", "VersionData": body})
    wo = h.work_order(Photo_Version_Id__c=version)
    assert h.publish().refused == 1
    h.round_trip()
    assert h.wo(wo)["Dispatch_Error__c"] == (
        f"WorkOrder {wo}: file {version} (from Photo_Version_Id__c) for attachment.file is 65 bytes, "
        "over its max_bytes of 64; not sent to dispatch_connect"
    )


def _calls(h: Harness) -> int:
    return sum(n for kind, n in h.sf.counts.items() if kind not in ("login", "token"))

"""Child relationship subqueries, semi-joins and multi-select picklists over real sockets: the emulator's REST
answers in Salesforce's shape (children as a query result or null, paged by their own nextRecordsUrl;
describe's childRelationships), and the gateway's rows carry children as lists, every batch read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from connector.crm import CrmRejected, CrmUnavailable, RetryPolicy, SalesforceGateway, connect_salesforce
from connector.sandbox.salesforce.emulator import SalesforceEmulator

if TYPE_CHECKING:
    from tests.connector.sf_fixtures import SfClock, SleepRecorder

pytest_plugins = ["tests.connector.sf_fixtures"]

USER, PASSWORD, TOKEN = "integration@children.example", "children-password", "children-token"
ORG: dict[str, Any] = {
    "auth": {"users": {USER: {"password": PASSWORD, "security_token": TOKEN}}},
    "objects": {
        "WorkOrder": {
            "fields": {
                "Subject": "string",
                "Skills__c": {"type": "multipicklist", "picklist_values": ["A", "B"]},
            }
        },
        "WorkOrderLineItem": {
            "fields": {
                "WorkOrderId": {
                    "type": "reference",
                    "to": "WorkOrder",
                    "child_relationship": "WorkOrderLineItems",
                },
                "LineItemNumber": "string",
                "Status": "picklist",
            }
        },
        "ServiceAppointment": {
            "fields": {
                "ParentRecordId": {
                    "type": "reference",
                    "to": "WorkOrder",
                    "child_relationship": "ServiceAppointments",
                },
                "Subject": "string",
            }
        },
        "Note__c": {
            "fields": {
                "Line__c": {"type": "reference", "to": "WorkOrderLineItem", "child_relationship": "Notes__r"},
                "Body__c": "string",
            }
        },
    },
    "records": {
        "WorkOrder": [
            {"_ref": "big", "Subject": "big", "Skills__c": "A;B"},
            {"_ref": "empty", "Subject": "empty", "Skills__c": "B"},
        ],
        "WorkOrderLineItem": [
            *(
                {"_ref": f"l{i}", "WorkOrderId": "@big", "LineItemNumber": f"000{i}", "Status": "New"}
                for i in range(5)
            ),
            {"WorkOrderId": "@big", "LineItemNumber": "0009", "Status": "Canceled"},
        ],
        "ServiceAppointment": [{"ParentRecordId": "@big", "Subject": "visit"}],
        "Note__c": [{"Line__c": "@l0", "Body__c": "first"}, {"Line__c": "@l0", "Body__c": "second"}],
    },
}
LINES = (
    "SELECT Subject, (SELECT LineItemNumber FROM WorkOrderLineItems WHERE Status != 'Canceled' "
    "ORDER BY LineItemNumber), (SELECT Subject FROM ServiceAppointments) FROM WorkOrder ORDER BY Subject"
)


@pytest.fixture
def org(sf_clock: SfClock) -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(ORG, clock=sf_clock) as emulator:
        yield emulator


def gateway(org: SalesforceEmulator, sleep: SleepRecorder, api_version: str = "59.0") -> SalesforceGateway:
    return connect_salesforce(
        org.base_url,
        username=USER,
        password=PASSWORD,
        security_token=TOKEN,
        session=org.session(),
        api_version=api_version,
        timeout_s=5,
        retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02, sleep=sleep),
    )


@pytest.fixture
def gw(org: SalesforceEmulator, sf_sleep: SleepRecorder) -> SalesforceGateway:
    return gateway(org, sf_sleep)


# --- the emulator's REST answers -------------------------------------------------------------------


def test_rest_children_are_a_query_result_or_null(gw: SalesforceGateway) -> None:
    big, empty = gw.sf.query(LINES)["records"]
    lines = big["WorkOrderLineItems"]
    assert {k: lines[k] for k in ("totalSize", "done")} == {"totalSize": 5, "done": True}
    assert "nextRecordsUrl" not in lines
    assert [r["LineItemNumber"] for r in lines["records"]] == [f"000{i}" for i in range(5)]
    assert lines["records"][0]["attributes"]["type"] == "WorkOrderLineItem"
    assert big["ServiceAppointments"]["records"][0]["Subject"] == "visit"
    assert empty["WorkOrderLineItems"] is None and empty["ServiceAppointments"] is None


def test_rest_pages_a_big_child_set_with_its_own_locator(
    gw: SalesforceGateway, org: SalesforceEmulator
) -> None:
    org.app.child_page_size = 2
    lines = gw.sf.query(LINES)["records"][0]["WorkOrderLineItems"]
    assert (lines["totalSize"], lines["done"], len(lines["records"])) == (5, False, 2)
    assert lines["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    more = gw.sf.query_more(lines["nextRecordsUrl"], identifier_is_url=True)
    assert [r["LineItemNumber"] for r in more["records"]] == ["0002", "0003"] and not more["done"]
    last = gw.sf.query_more(more["nextRecordsUrl"], identifier_is_url=True)
    assert [r["LineItemNumber"] for r in last["records"]] == ["0004"] and last["done"]


def test_rest_describe_lists_child_relationships(gw: SalesforceGateway) -> None:
    described = gw.describe("WorkOrder")
    names = {(r["childSObject"], r["field"], r["relationshipName"]) for r in described["childRelationships"]}
    assert names == {
        ("WorkOrderLineItem", "WorkOrderId", "WorkOrderLineItems"),
        ("ServiceAppointment", "ParentRecordId", "ServiceAppointments"),
    }
    [skills] = [f for f in described["fields"] if f["name"] == "Skills__c"]
    assert skills["type"] == "multipicklist" and [v["value"] for v in skills["picklistValues"]] == ["A", "B"]


def test_unknown_relationship_is_refused_with_salesforce_words(gw: SalesforceGateway) -> None:
    with pytest.raises(CrmRejected) as exc:
        gw.query_all("SELECT Id, (SELECT Id FROM LineItems) FROM WorkOrder")
    assert exc.value.error_code == "INVALID_TYPE" and exc.value.status == 400
    assert "Didn't understand relationship 'LineItems' in FROM part of query call" in str(exc.value)


def test_api_57_refuses_nested_children(org: SalesforceEmulator, sf_sleep: SleepRecorder) -> None:
    nested = "SELECT Id, (SELECT Id, (SELECT Body__c FROM Notes__r) FROM WorkOrderLineItems) FROM WorkOrder"
    assert len(gateway(org, sf_sleep).query_all(nested)) == 2
    with pytest.raises(CrmRejected, match="more than 1 level away from the root entity object"):
        gateway(org, sf_sleep, api_version="57.0").query_all(nested)


def test_semi_join_and_its_or_restriction_over_rest(gw: SalesforceGateway) -> None:
    canceled = "Id IN (SELECT WorkOrderId FROM WorkOrderLineItem WHERE Status = 'Canceled')"
    assert [r["Subject"] for r in gw.query_all(f"SELECT Subject FROM WorkOrder WHERE {canceled}")] == ["big"]
    anti = canceled.replace("Id IN", "Id NOT IN")
    assert [r["Subject"] for r in gw.query_all(f"SELECT Subject FROM WorkOrder WHERE {anti}")] == ["empty"]
    with pytest.raises(CrmRejected, match="Semi join sub-selects are not allowed with the 'OR' operator"):
        gw.query_all(f"SELECT Id FROM WorkOrder WHERE Subject = 'x' OR {canceled}")


def test_multipicklist_written_and_filtered_over_rest(gw: SalesforceGateway, org: SalesforceEmulator) -> None:
    created = gw.create("WorkOrder", {"Subject": "new", "Skills__c": "B;A;B"})
    assert org.get("WorkOrder", created)["Skills__c"] == "B;A"
    rows = gw.query_all("SELECT Subject FROM WorkOrder WHERE Skills__c INCLUDES ('a;b') ORDER BY Subject")
    assert [r["Subject"] for r in rows] == ["big", "new"]
    assert [r["Subject"] for r in gw.query_all("SELECT Subject FROM WorkOrder WHERE Skills__c = 'b'")] == [
        "empty"
    ]


# --- the gateway's rows --------------------------------------------------------------------------


def test_query_iter_gives_children_as_lists(gw: SalesforceGateway) -> None:
    big, empty = gw.query_all(LINES)
    assert [r["LineItemNumber"] for r in big["WorkOrderLineItems"]] == [f"000{i}" for i in range(5)]
    assert big["WorkOrderLineItems"][0]["attributes"]["type"] == "WorkOrderLineItem"
    assert [r["Subject"] for r in big["ServiceAppointments"]] == ["visit"]
    assert empty["WorkOrderLineItems"] == [] and empty["ServiceAppointments"] == []


def test_query_iter_reads_every_batch_of_children(gw: SalesforceGateway, org: SalesforceEmulator) -> None:
    org.app.child_page_size = 2
    org.reset_counts()
    big, _ = gw.query_all(LINES)
    assert [r["LineItemNumber"] for r in big["WorkOrderLineItems"]] == [f"000{i}" for i in range(5)]
    assert org.counts == {**org.counts, "query": 1, "query_more": 2}


def test_a_child_batch_that_fails_is_retried(
    gw: SalesforceGateway, org: SalesforceEmulator, sf_sleep: SleepRecorder
) -> None:
    org.app.child_page_size = 4
    org.faults.set("query_more", error_rate=1.0, error_status=503)
    rows = gw.query_iter(LINES)
    with pytest.raises(CrmUnavailable, match="HTTP 503"):
        next(rows)
    assert org.counts["query_more"] == 3 and len(sf_sleep.calls) == 2


def test_nested_children_are_lists_too(gw: SalesforceGateway) -> None:
    [big] = gw.query_all(
        "SELECT Subject, (SELECT LineItemNumber, (SELECT Body__c FROM Notes__r ORDER BY Body__c) "
        "FROM WorkOrderLineItems ORDER BY LineItemNumber) FROM WorkOrder WHERE Subject = 'big'"
    )
    first, second = big["WorkOrderLineItems"][:2]
    assert [n["Body__c"] for n in first["Notes__r"]] == ["first", "second"]
    assert second["Notes__r"] == []


def test_a_subquery_inside_a_string_literal_is_not_a_child(gw: SalesforceGateway) -> None:
    gw.create("WorkOrder", {"Subject": "bare"})
    rows = gw.query_all(
        "SELECT Skills__c FROM WorkOrder WHERE Subject = 'bare' OR Subject = '(SELECT x FROM Skills__c)'"
    )
    assert [r["Skills__c"] for r in rows] == [None]

"""SOQL subqueries and multi-select picklists in the emulator's evaluator: child relationship subqueries
(shape, filters, per-parent LIMIT, deleted children, nesting depth), semi-/anti-joins with Salesforce's
restrictions, INCLUDES/EXCLUDES and set equality on multipicklist fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.sandbox.salesforce import soql_children, soql_eval
from connector.sandbox.salesforce.schema import child_relationships
from connector.sandbox.salesforce.store import SalesforceApiError, SalesforceStore, load_fixture

SKILLS = ["Plumbing", "Electrical", "HVAC"]
FIXTURE: dict[str, Any] = {
    "objects": {
        "Product2": {"fields": {"Name": "string"}},
        "WorkOrder": {
            "fields": {
                "Subject": "string",
                "Skills__c": {"type": "multipicklist", "picklist_values": SKILLS},
            }
        },
        "WorkOrderLineItem": {
            "fields": {
                "WorkOrderId": {
                    "type": "reference",
                    "to": "WorkOrder",
                    "child_relationship": "WorkOrderLineItems",
                },
                "Product2Id": {"type": "reference", "to": "Product2"},
                "Quantity": "double",
                "Status": "picklist",
                "LineItemNumber": "string",
            }
        },
        "Node__c": {
            "fields": {
                "Name": "string",
                "Parent__c": {"type": "reference", "to": "Node__c", "child_relationship": "Children__r"},
            }
        },
    },
    "records": {
        "Product2": [{"_ref": "pipe", "Name": "Pipe"}],
        "WorkOrder": [
            {"_ref": "a", "Subject": "A", "Skills__c": "Plumbing;Electrical"},
            {"_ref": "b", "Subject": "B", "Skills__c": "Plumbing"},
            {"_ref": "c", "Subject": "C"},
        ],
        "WorkOrderLineItem": [
            {
                "WorkOrderId": "@a",
                "LineItemNumber": "0003",
                "Quantity": 1,
                "Status": "New",
                "Product2Id": "@pipe",
            },
            {"WorkOrderId": "@a", "LineItemNumber": "0001", "Quantity": 5, "Status": "New"},
            {"WorkOrderId": "@a", "LineItemNumber": "0002", "Quantity": 2, "Status": "Canceled"},
            {"WorkOrderId": "@c", "LineItemNumber": "0001", "Quantity": 1, "Status": "New"},
        ],
        "Node__c": [
            {"_ref": "n1", "Name": "n1"},
            {"_ref": "n2", "Name": "n2", "Parent__c": "@n1"},
            {"_ref": "n3", "Name": "n3", "Parent__c": "@n2"},
            {"_ref": "n4", "Name": "n4", "Parent__c": "@n3"},
            {"_ref": "n5", "Name": "n5", "Parent__c": "@n4"},
        ],
    },
}


@pytest.fixture
def store() -> SalesforceStore:
    s = SalesforceStore(lambda: datetime(2026, 1, 1, tzinfo=UTC))
    load_fixture(s, FIXTURE)
    return s


def _child_page(store: SalesforceStore) -> soql_children.ChildPage:
    def page(cq: soql_eval.CompiledQuery, ids: list[str]) -> dict[str, Any]:
        records = soql_children.project_page(store, cq, ids, "59.0", page)
        return {"totalSize": len(ids), "done": True, "records": records}

    return page


def run(
    store: SalesforceStore, text: str, *, version: str = "59.0", deleted: bool = False
) -> list[dict[str, Any]]:
    cq = soql_eval.compile_query(store, text, include_deleted=deleted, api_version=version)
    ids = soql_eval.matching_ids(store, cq)
    return soql_children.project_page(store, cq, ids, version, _child_page(store))


def refused(store: SalesforceStore, text: str, *, version: str = "59.0") -> SalesforceApiError:
    with pytest.raises(SalesforceApiError) as exc:
        run(store, text, version=version)
    return exc.value


LINES = (
    "SELECT Subject, (SELECT LineItemNumber, Quantity, Product2.Name FROM WorkOrderLineItems "
    "WHERE Status != 'Canceled' ORDER BY LineItemNumber) FROM WorkOrder ORDER BY Subject"
)


def test_children_are_a_query_result_per_parent_and_null_without_any(store: SalesforceStore) -> None:
    a, b, c = run(store, LINES)
    lines = a["WorkOrderLineItems"]
    assert (lines["totalSize"], lines["done"]) == (2, True)
    assert [r["LineItemNumber"] for r in lines["records"]] == ["0001", "0003"]
    assert lines["records"][0]["attributes"]["type"] == "WorkOrderLineItem"
    assert lines["records"][0]["Product2"] is None and lines["records"][1]["Product2"]["Name"] == "Pipe"
    assert b["WorkOrderLineItems"] is None
    assert c["WorkOrderLineItems"]["totalSize"] == 1


def test_a_subquery_limit_counts_per_parent(store: SalesforceStore) -> None:
    rows = run(
        store,
        "SELECT Subject, (SELECT LineItemNumber FROM WorkOrderLineItems ORDER BY LineItemNumber DESC "
        "LIMIT 1) FROM WorkOrder WHERE Subject IN ('A', 'C') ORDER BY Subject",
    )
    assert [[r["LineItemNumber"] for r in row["WorkOrderLineItems"]["records"]] for row in rows] == [
        ["0003"],
        ["0001"],
    ]


def test_the_relationship_may_be_named_through_the_parent_and_in_any_case(store: SalesforceStore) -> None:
    [row] = run(
        store, "SELECT Id, (SELECT Id FROM WorkOrder.workorderlineitems) FROM WorkOrder WHERE Subject = 'C'"
    )
    assert row["WorkOrderLineItems"]["totalSize"] == 1


@pytest.mark.parametrize("deleted", [False, True])
def test_deleted_children_never_show(store: SalesforceStore, deleted: bool) -> None:
    [first] = run(
        store, "SELECT Id FROM WorkOrderLineItem WHERE LineItemNumber = '0001' AND WorkOrder.Subject = 'A'"
    )
    line = first["Id"]
    store.delete("WorkOrderLineItem", line)
    rows = run(
        store,
        "SELECT Subject, (SELECT Id FROM WorkOrderLineItems) FROM WorkOrder ORDER BY Subject",
        deleted=deleted,
    )
    remaining = [
        r["Id"] for row in rows if row["WorkOrderLineItems"] for r in row["WorkOrderLineItems"]["records"]
    ]
    assert line not in remaining and len(remaining) == 3


def test_an_unknown_relationship_is_refused_as_salesforce_words_it(store: SalesforceStore) -> None:
    error = refused(store, "SELECT Id, (SELECT Id FROM LineItems) FROM WorkOrder")
    assert error.code == "INVALID_TYPE"
    assert error.message.startswith("Didn't understand relationship 'LineItems' in FROM part of query call.")


def test_a_relationship_of_another_parent_is_unknown_here(store: SalesforceStore) -> None:
    assert (
        refused(store, "SELECT Id, (SELECT Id FROM WorkOrderLineItems) FROM Product2").code == "INVALID_TYPE"
    )


def test_count_in_a_subquery_is_refused(store: SalesforceStore) -> None:
    error = refused(store, "SELECT Id, (SELECT COUNT() FROM WorkOrderLineItems) FROM WorkOrder")
    assert (error.code, error.message) == (
        "MALFORMED_QUERY",
        "only root queries support aggregate expressions",
    )


def _nested(levels: int) -> str:
    inner = "SELECT Name FROM Children__r"
    for _ in range(levels - 1):
        inner = f"SELECT Name, ({inner}) FROM Children__r"
    return f"SELECT Name, ({inner}) FROM Node__c WHERE Name = 'n1'"


def test_four_levels_of_children_below_the_root_since_api_58(store: SalesforceStore) -> None:
    [row] = run(store, _nested(4))
    for name in ("n2", "n3", "n4"):
        row = row["Children__r"]["records"][0]
        assert row["Name"] == name
    assert row["Children__r"]["records"][0]["Name"] == "n5"


def test_a_fifth_level_is_refused(store: SalesforceStore) -> None:
    error = refused(store, _nested(5))
    assert error.code == "MALFORMED_QUERY"
    assert "more than 4 levels away from the root entity object" in error.message


def test_before_api_58_children_do_not_nest(store: SalesforceStore) -> None:
    assert run(store, _nested(1), version="57.0")[0]["Children__r"]["totalSize"] == 1
    error = refused(store, _nested(2), version="57.0")
    assert error.message == (
        "SOQL statements cannot query aggregate relationships more than 1 level away from the root entity "
        "object."
    )


def subjects(store: SalesforceStore, where: str) -> list[str]:
    return [
        str(r["Subject"]) for r in run(store, f"SELECT Subject FROM WorkOrder WHERE {where} ORDER BY Subject")
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Id IN (SELECT WorkOrderId FROM WorkOrderLineItem WHERE Quantity > 2)", ["A"]),
        ("Id IN (SELECT WorkOrderId FROM WorkOrderLineItem)", ["A", "C"]),
        ("Id NOT IN (SELECT WorkOrderId FROM WorkOrderLineItem)", ["B"]),
        ("Subject != 'A' AND Id IN (SELECT WorkOrderId FROM WorkOrderLineItem)", ["C"]),
        ("Id IN (SELECT WorkOrderId FROM WorkOrderLineItem WHERE Status = 'Gone')", []),
    ],
)
def test_semi_and_anti_joins(store: SalesforceStore, where: str, expected: list[str]) -> None:
    assert subjects(store, where) == expected


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "Subject = 'B' OR Id IN (SELECT WorkOrderId FROM WorkOrderLineItem)",
            "Semi join sub-selects are not allowed with the 'OR' operator",
        ),
        (
            "Subject != 'x' AND (Subject = 'B' OR Id IN (SELECT WorkOrderId FROM WorkOrderLineItem))",
            "Semi join sub-selects are only allowed at the top level WHERE expressions and not in nested "
            "WHERE expressions.",
        ),
        (
            "Id IN (SELECT WorkOrderId FROM WorkOrderLineItem WHERE Product2Id IN (SELECT Id FROM Product2))",
            "Nesting of semi join sub-selects is not supported",
        ),
        (
            "Id IN (SELECT LineItemNumber FROM WorkOrderLineItem)",
            "semi join sub selects can only query id fields, cannot use: 'LineItemNumber'",
        ),
        (
            "Id IN (SELECT Id FROM WorkOrder WHERE Subject = 'A')",
            "The inner and outer selects should not be on the same object type",
        ),
    ],
)
def test_semi_join_restrictions(store: SalesforceStore, where: str, message: str) -> None:
    error = refused(store, f"SELECT Subject FROM WorkOrder WHERE {where}")
    assert (error.code, error.message) == ("MALFORMED_QUERY", message)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Skills__c INCLUDES ('Plumbing')", ["A", "B"]),
        ("Skills__c INCLUDES ('plumbing;ELECTRICAL')", ["A"]),
        ("Skills__c INCLUDES ('HVAC', 'Electrical')", ["A"]),
        ("Skills__c EXCLUDES ('Electrical')", ["B", "C"]),
        ("Skills__c = 'Electrical;Plumbing'", ["A"]),
        ("Skills__c = 'Plumbing'", ["B"]),
        ("Skills__c != 'Plumbing'", ["A", "C"]),
        ("Skills__c = null", ["C"]),
    ],
)
def test_multipicklist_operators(store: SalesforceStore, where: str, expected: list[str]) -> None:
    assert subjects(store, where) == expected


@pytest.mark.parametrize(
    "where", ["Subject INCLUDES ('A')", "Skills__c < 'Plumbing'", "Skills__c LIKE 'Plumb%'"]
)
def test_operators_a_multipicklist_does_not_take(store: SalesforceStore, where: str) -> None:
    assert refused(store, f"SELECT Id FROM WorkOrder WHERE {where}").code == "MALFORMED_QUERY"


def test_a_multipicklist_is_stored_joined_by_semicolons(store: SalesforceStore) -> None:
    rid = store.insert("WorkOrder", {"Skills__c": [" HVAC", "Plumbing", "hvac", ""]}, None)
    odef = store.require_object("WorkOrder")
    assert store.record_dict(odef, store.records["WorkOrder"][rid])["Skills__c"] == "HVAC;Plumbing"


def test_describe_lists_picklist_values_and_child_relationships(store: SalesforceStore) -> None:
    work_order = store.require_object("WorkOrder")
    skills = work_order.fields["Skills__c"].describe()
    assert skills["type"] == "multipicklist" and [v["value"] for v in skills["picklistValues"]] == SKILLS
    [line_items] = child_relationships(store.objects.values(), work_order)
    assert line_items == {**line_items, "childSObject": "WorkOrderLineItem", "field": "WorkOrderId"}
    assert line_items["relationshipName"] == "WorkOrderLineItems"
    products = child_relationships(store.objects.values(), store.require_object("Product2"))
    assert [(r["field"], r["relationshipName"]) for r in products] == [("Product2Id", None)]


def test_a_version_that_is_not_a_number_nests_as_the_current_api(store: SalesforceStore) -> None:
    [row] = run(store, _nested(2), version="latest")
    assert row["Children__r"]["records"][0]["Children__r"]["records"][0]["Name"] == "n3"

"""SOQL evaluation against the emulator's store: each operator, null handling, ordering and projection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.sandbox.salesforce import soql_eval
from connector.sandbox.salesforce.store import SalesforceApiError, SalesforceStore, load_fixture

FIXTURE = {
    "objects": {
        "Account": {"fields": {"Name": "string"}},
        "Job__c": {
            "fields": {
                "Name": "string",
                "Hours__c": "double",
                "Urgent__c": "boolean",
                "Due__c": "datetime",
                "Account__c": {"type": "reference", "to": "Account"},
            }
        },
    },
    "records": {
        "Account": [{"_ref": "a", "Name": "Acme"}],
        "Job__c": [
            {
                "Name": "alpha",
                "Hours__c": 1,
                "Urgent__c": True,
                "Due__c": "2026-11-25T10:00:00Z",
                "Account__c": "@a",
            },
            {"Name": "Beta", "Hours__c": 5, "Urgent__c": False, "Due__c": "2026-11-26T10:00:00Z"},
            {"Name": "gamma", "Hours__c": None, "Urgent__c": False},
        ],
    },
}


@pytest.fixture
def store() -> SalesforceStore:
    s = SalesforceStore(lambda: datetime(2026, 1, 1, tzinfo=UTC))
    load_fixture(s, FIXTURE)
    return s


def names(store: SalesforceStore, soql: str) -> list[str]:
    cq = soql_eval.compile_query(store, soql)
    rows = [soql_eval.project(store, cq, rid, "59.0") for rid in soql_eval.matching_ids(store, cq)]
    return [str(r["Name"]) for r in rows if r is not None]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'ALPHA'", ["alpha"]),
        ("Name != 'alpha'", ["Beta", "gamma"]),
        ("Hours__c < 5", ["alpha"]),
        ("Hours__c <= 5", ["alpha", "Beta"]),
        ("Hours__c > 1", ["Beta"]),
        ("Hours__c >= 1", ["alpha", "Beta"]),
        ("Hours__c = null", ["gamma"]),
        ("Hours__c != null", ["alpha", "Beta"]),
        ("Urgent__c = true", ["alpha"]),
        ("Name IN ('beta', 'gamma')", ["Beta", "gamma"]),
        ("Name NOT IN ('beta', 'gamma')", ["alpha"]),
        ("Name LIKE '%a'", ["alpha", "Beta", "gamma"]),
        ("Name LIKE 'b%'", ["Beta"]),
        ("Due__c > 2026-11-25T10:30:00+00:00", ["Beta"]),
        ("Due__c < 2026-11-25T11:30:00+01:00", ["alpha"]),
        ("Account__r.Name = 'Acme'", ["alpha"]),
        ("NOT Urgent__c = true", ["Beta", "gamma"]),
        ("Urgent__c = true OR Hours__c = 5 AND Name = 'nope'", ["alpha"]),
        ("(Urgent__c = true OR Hours__c = 5) AND Name != 'alpha'", ["Beta"]),
    ],
)
def test_where(store: SalesforceStore, where: str, expected: list[str]) -> None:
    assert names(store, f"SELECT Name FROM Job__c WHERE {where}") == expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("Hours__c", ["gamma", "alpha", "Beta"]),
        ("Hours__c DESC", ["Beta", "alpha", "gamma"]),
        ("Hours__c ASC NULLS LAST", ["alpha", "Beta", "gamma"]),
        ("Hours__c DESC NULLS FIRST", ["gamma", "Beta", "alpha"]),
        ("Urgent__c, Name DESC", ["gamma", "Beta", "alpha"]),
        ("Name", ["alpha", "Beta", "gamma"]),
    ],
)
def test_order_by(store: SalesforceStore, order: str, expected: list[str]) -> None:
    assert names(store, f"SELECT Name FROM Job__c ORDER BY {order}") == expected


def test_limit_and_offset(store: SalesforceStore) -> None:
    assert names(store, "SELECT Name FROM Job__c ORDER BY Name LIMIT 1 OFFSET 1") == ["Beta"]


def test_projection_uses_schema_names_and_nests_parents(store: SalesforceStore) -> None:
    cq = soql_eval.compile_query(
        store, "SELECT name, account__r.name, due__c FROM job__c WHERE Name = 'alpha'"
    )
    row = soql_eval.project(store, cq, soql_eval.matching_ids(store, cq)[0], "59.0")
    assert row is not None
    assert row["Name"] == "alpha"
    assert row["Account__r"]["Name"] == "Acme"
    assert row["Due__c"] == "2026-11-25T10:00:00.000+0000"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Nope FROM Job__c", "INVALID_FIELD"),
        ("SELECT Owner__r.Name FROM Job__c", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        ("SELECT Id FROM Job__c WHERE Hours__c = 'five'", "INVALID_FIELD"),
        ("SELECT Id FROM Job__c WHERE Urgent__c = 'true'", "INVALID_FIELD"),
        ("SELECT Id FROM Job__c WHERE Hours__c LIKE '1%'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Job__c WHERE Hours__c > null", "MALFORMED_QUERY"),
        ("SELECT Id Job__c", "MALFORMED_QUERY"),
    ],
)
def test_errors_carry_salesforce_codes(store: SalesforceStore, soql: str, code: str) -> None:
    with pytest.raises(SalesforceApiError) as exc:
        cq = soql_eval.compile_query(store, soql)
        soql_eval.matching_ids(store, cq)
    assert exc.value.code == code and exc.value.status == 400


def test_json_fixture_file_loads(tmp_path: object) -> None:
    import json
    from pathlib import Path

    path = Path(str(tmp_path)) / "org.json"
    path.write_text(json.dumps(FIXTURE))
    s = SalesforceStore()
    load_fixture(s, path)
    assert len(s.records["Job__c"]) == 3

"""The SOQL tokenizer and parser: each operator, precedence, parent paths, literals and errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from connector.sandbox.salesforce import soql
from connector.sandbox.salesforce.soql import (
    BoolOp,
    Compare,
    Includes,
    InList,
    Like,
    Literal,
    Not,
    OrderItem,
    SemiJoin,
)


def where(clause: str) -> soql.Expr:
    query = soql.parse(f"SELECT Id FROM WorkOrder WHERE {clause}")
    assert query.where is not None
    return query.where


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("Status = 'New'", Compare(("Status",), "=", Literal("string", "New"))),
        ("Status != 'New'", Compare(("Status",), "!=", Literal("string", "New"))),
        ("Status <> 'New'", Compare(("Status",), "!=", Literal("string", "New"))),
        ("Amount < 10", Compare(("Amount",), "<", Literal("number", Decimal(10)))),
        ("Amount > -2.5", Compare(("Amount",), ">", Literal("number", Decimal("-2.5")))),
        ("Amount <= 3", Compare(("Amount",), "<=", Literal("number", Decimal(3)))),
        ("Amount >= 3", Compare(("Amount",), ">=", Literal("number", Decimal(3)))),
        ("Flag__c = true", Compare(("Flag__c",), "=", Literal("boolean", True))),
        ("Flag__c = FALSE", Compare(("Flag__c",), "=", Literal("boolean", False))),
        ("Error__c = null", Compare(("Error__c",), "=", Literal("null", None))),
        ("Day__c = 2026-11-25", Compare(("Day__c",), "=", Literal("date", date(2026, 11, 25)))),
        ("Subject LIKE 'Fix%'", Like(("Subject",), "Fix%")),
        (
            "Status IN ('New', 'Open')",
            InList(("Status",), (Literal("string", "New"), Literal("string", "Open")), False),
        ),
        ("Status NOT IN ('Closed')", InList(("Status",), (Literal("string", "Closed"),), True)),
        ("Account.Name = 'Acme'", Compare(("Account", "Name"), "=", Literal("string", "Acme"))),
    ],
)
def test_condition_parses(clause: str, expected: soql.Expr) -> None:
    assert where(clause) == expected


def test_datetime_literal_in_utc() -> None:
    expr = where("SystemModstamp > 2026-11-25T10:00:00Z")
    assert expr == Compare(
        ("SystemModstamp",), ">", Literal("datetime", datetime(2026, 11, 25, 10, tzinfo=UTC))
    )


@pytest.mark.parametrize("offset", ["+01:00", "+0100"])
def test_datetime_literal_with_offset(offset: str) -> None:
    expr = where(f"SystemModstamp > 2026-11-25T10:00:00.250{offset}")
    assert isinstance(expr, Compare)
    value = expr.value.value
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(hours=1)
    assert value.astimezone(UTC) == datetime(2026, 11, 25, 9, 0, 0, 250000, tzinfo=UTC)


def test_and_binds_tighter_than_or() -> None:
    expr = where("A = 1 OR B = 2 AND C = 3")
    assert isinstance(expr, BoolOp) and expr.op == "OR"
    assert isinstance(expr.operands[1], BoolOp) and expr.operands[1].op == "AND"


def test_parentheses_override_precedence() -> None:
    expr = where("(A = 1 OR B = 2) AND C = 3")
    assert isinstance(expr, BoolOp) and expr.op == "AND"
    assert isinstance(expr.operands[0], BoolOp) and expr.operands[0].op == "OR"


def test_not_applies_to_the_following_condition() -> None:
    expr = where("NOT A = 1 AND B = 2")
    assert isinstance(expr, BoolOp) and expr.op == "AND"
    assert isinstance(expr.operands[0], Not)


def test_escaped_quote_stays_inside_the_string() -> None:
    expr = where(r"Subject = 'O\'Brien\\ OR 1=1'")
    assert expr == Compare(("Subject",), "=", Literal("string", "O'Brien\\ OR 1=1"))


def test_full_query_shape() -> None:
    query = soql.parse(
        "select Id, Account.Name, LastModifiedBy.Name from WorkOrder "
        "order by Priority desc nulls last, Subject limit 10 offset 5"
    )
    assert query.object_name == "WorkOrder"
    assert query.fields == (("Id",), ("Account", "Name"), ("LastModifiedBy", "Name"))
    assert query.order_by == (OrderItem(("Priority",), True, True), OrderItem(("Subject",)))
    assert (query.limit, query.offset) == (10, 5)


def test_count_query() -> None:
    query = soql.parse("SELECT COUNT() FROM Account WHERE Dispatch_Me__c = true")
    assert query.count_only and query.fields == ()


@pytest.mark.parametrize(
    "text",
    [
        "SELECT FROM Account",
        "SELECT Id Account",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        "SELECT Id FROM Account WHERE Name == 'x'",
        "SELECT Id FROM Account WHERE (Name = 'x'",
        "SELECT Id FROM Account WHERE Name IN ()",
        "SELECT Id FROM Account WHERE Name NOT 'x'",
        "SELECT Id FROM Account LIMIT -1",
        "SELECT Id FROM Account ORDER Name",
        "SELECT Id FROM Account; DELETE",
        "SELECT Id FROM Account WHERE Name = 'x' extra",
    ],
)
def test_malformed_queries_are_refused(text: str) -> None:
    with pytest.raises(soql.SoqlSyntaxError):
        soql.parse(text)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("Fix%", "fix leaking pipe", True),
        ("%pipe", "Fix leaking pipe", True),
        ("F_x%", "Fox", True),
        ("Fix", "Fix it", False),
        ("100\\%", "100%", True),
        ("100\\%", "1000", False),
    ],
)
def test_like_patterns(pattern: str, value: str, matches: bool) -> None:
    assert (soql.like_to_regex(pattern).fullmatch(value) is not None) is matches


def test_child_subquery_in_the_select_list() -> None:
    query = soql.parse(
        "SELECT Id, (SELECT Id, Quantity, Product2.Name FROM WorkOrderLineItems WHERE Status != 'Canceled' "
        "ORDER BY LineItemNumber LIMIT 50), Subject FROM WorkOrder"
    )
    assert query.fields == (("Id",), ("Subject",))
    [child] = query.subqueries
    assert child.object_name == "WorkOrderLineItems"
    assert child.fields == (("Id",), ("Quantity",), ("Product2", "Name"))
    assert child.where == Compare(("Status",), "!=", Literal("string", "Canceled"))
    assert (child.order_by, child.limit) == ((OrderItem(("LineItemNumber",)),), 50)


def test_child_subqueries_nest() -> None:
    query = soql.parse(
        "SELECT Id, (SELECT Id, (SELECT Id FROM Notes) FROM WorkOrderLineItems) FROM WorkOrder"
    )
    assert query.subqueries[0].subqueries[0].object_name == "Notes"


@pytest.mark.parametrize(("op", "negated"), [("IN", False), ("NOT IN", True)])
def test_semi_and_anti_join(op: str, negated: bool) -> None:
    expr = where(f"Id {op} (SELECT WorkOrderId FROM WorkOrderLineItem WHERE Quantity > 2)")
    assert isinstance(expr, SemiJoin) and expr.negated is negated and expr.path == ("Id",)
    assert expr.query.object_name == "WorkOrderLineItem" and expr.query.fields == (("WorkOrderId",),)
    assert expr.query.where == Compare(("Quantity",), ">", Literal("number", Decimal(2)))


def test_a_literal_list_is_still_a_literal_list() -> None:
    assert isinstance(where("Id IN ('a', 'b')"), InList)


@pytest.mark.parametrize(("op", "negated"), [("INCLUDES", False), ("excludes", True)])
def test_includes_and_excludes(op: str, negated: bool) -> None:
    assert where(f"Skills__c {op} ('AAA;BBB', 'CCC')") == Includes(
        ("Skills__c",), ("AAA;BBB", "CCC"), negated
    )


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id, (SELECT Id FROM Notes FROM Account",
        "SELECT Id, (Name) FROM Account",
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact",
        "SELECT Id FROM Account WHERE Skills__c INCLUDES (1)",
        "SELECT Id FROM Account WHERE Skills__c INCLUDES 'AAA'",
    ],
)
def test_malformed_subqueries_and_includes_are_refused(text: str) -> None:
    with pytest.raises(soql.SoqlSyntaxError):
        soql.parse(text)

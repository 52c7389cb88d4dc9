"""Child relationship results in the CRM gateway's rows: each becomes a plain list of child rows.

Salesforce answers a parent-to-child subquery (`SELECT Id, (SELECT Id FROM WorkOrderLineItems) FROM
WorkOrder`) with, under the relationship's name, either `null` (no child matched) or a query result of its own
(`totalSize`, `done`, `records`, and `nextRecordsUrl` while more children remain). A `null` child relationship
looks like any other null value, so the relationship names are read from the query text itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# A tree of child relationships: lower-case relationship name -> its own subqueries' tree.
ChildTree = dict[str, "ChildTree"]
# Fetches a child result's next batch from its nextRecordsUrl.
FetchMore = Callable[[str], Mapping[str, Any]]

_TOKEN = re.compile(r"'(?:\\.|[^'\\])*'|\(|\)|,|[A-Za-z_][\w.]*|\S", re.ASCII)


def child_tree(soql: str) -> ChildTree:
    """The child relationships a query's SELECT list names (nested ones included), by relationship name."""
    tokens = [t for t in _TOKEN.findall(soql) if not t.startswith("'")]
    tree, _ = _select(tokens, 0)
    return tree


def _select(tokens: list[str], i: int) -> tuple[ChildTree, int]:
    """Read `SELECT ... FROM` from tokens[i] (at SELECT): its children, and the index of its FROM."""
    tree: ChildTree = {}
    i += 1
    while i < len(tokens) and tokens[i].upper() != "FROM":
        if tokens[i] == "(" and i + 1 < len(tokens) and tokens[i + 1].upper() == "SELECT":
            sub, i = _select(tokens, i + 1)
            name, i = _relationship(tokens, i)
            tree[name] = sub
            i = _close(tokens, i)
        else:
            i += 1
    return tree, i


def _relationship(tokens: list[str], i: int) -> tuple[str, int]:
    """At FROM inside a subquery: the relationship name (without a leading `Parent.`)."""
    name = tokens[i + 1] if i + 1 < len(tokens) else ""
    return name.rsplit(".", 1)[-1].lower(), i + 2


def _close(tokens: list[str], i: int) -> int:
    """Skip the rest of a subquery (its WHERE, ORDER BY, LIMIT) to just past its closing parenthesis."""
    depth = 1
    while i < len(tokens) and depth:
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        i += 1
    return i


def is_child_result(value: Any) -> bool:
    return isinstance(value, Mapping) and "records" in value and "totalSize" in value and "done" in value


def expand(row: dict[str, Any], tree: ChildTree, fetch_more: FetchMore) -> dict[str, Any]:
    """`row` with each child relationship as a list of child rows (empty for Salesforce's null), every batch
    of it fetched, the children's own relationships expanded the same way."""
    for key, value in row.items():
        sub = tree.get(key.lower())
        if sub is None and not is_child_result(value):
            continue
        if value is None:
            row[key] = []
        elif is_child_result(value):
            row[key] = [expand(child, sub or {}, fetch_more) for child in _all_records(value, fetch_more)]
    return row


def _all_records(result: Mapping[str, Any], fetch_more: FetchMore) -> Iterator[dict[str, Any]]:
    while True:
        yield from result.get("records") or ()
        if result.get("done", True) or not result.get("nextRecordsUrl"):
            return
        result = fetch_more(str(result["nextRecordsUrl"]))

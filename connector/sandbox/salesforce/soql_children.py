"""A page of query results with its child relationship subqueries, shaped as Salesforce returns them.

Each parent row holds, under the relationship's name, `null` when no child matches, else a query result of
its own: `{"totalSize", "done", "records"}`, with `nextRecordsUrl` when the children are more than one batch
(the REST layer's `child_page` callback makes that result and keeps its cursor, so a client pages children
with the same `query/<locator>` call as parents). Children are gathered for a whole page in one pass over
the child table, not one pass per parent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from connector.sandbox.salesforce.soql_eval import ChildQuery, CompiledQuery, cut, order_ids, project
from connector.sandbox.salesforce.store import SalesforceStore

# (the child's compiled subquery, one parent's child ids in order) -> that parent's child query result
ChildPage = Callable[[CompiledQuery, list[str]], dict[str, Any]]


def project_page(
    store: SalesforceStore, cq: CompiledQuery, ids: list[str], api_version: str, child_page: ChildPage
) -> list[dict[str, Any]]:
    """The records of `ids` in query JSON shape, each with its child relationships; vanished ids skipped."""
    rows = [(rid, project(store, cq, rid, api_version)) for rid in ids]
    present = [(rid, row) for rid, row in rows if row is not None]
    for child in cq.children:
        groups = children_of(store, child, (rid for rid, _ in present))
        for rid, row in present:
            kids = groups.get(rid)
            row[child.name] = child_page(child.cq, kids) if kids else None
    return [row for _, row in present]


def children_of(store: SalesforceStore, child: ChildQuery, parent_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each parent's matching live children (deleted ones never show), in the subquery's ORDER BY and cut
    by its LIMIT/OFFSET per parent, as Salesforce applies them."""
    wanted = set(parent_ids)
    odef = child.cq.odef
    slot = odef.slot(child.field.name)
    groups: dict[str, list[str]] = {}
    with store.lock:
        table = store.records[odef.name]
        for rid, rec in table.items():
            parent = rec[slot] if slot < len(rec) else None
            if parent in wanted and (child.predicate is None or child.predicate(rec)):
                groups.setdefault(parent, []).append(rid)
        return {
            parent: cut(child.cq.query, order_ids(store, child.cq, table, kids))
            for parent, kids in groups.items()
        }

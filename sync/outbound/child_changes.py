"""A changed or deleted child row (a work order's line item) re-publishes its parent.

Why a query per child object: editing a line item does not touch its work order's SystemModstamp, so the
parent's incremental query does not see it. Each incremental cycle asks, per declared child object,
`SELECT <parent_field> FROM <child> WHERE SystemModstamp >= <since>` through queryAll (a deleted line item
counts), over the same window as the parent's query. The published parents among the answer that the
parent's query did not already return are read by id (with their child subqueries) after it, and decided
as usual: their hash covers the child rows the records use, so a changed line changes it. An idle cycle
costs one call per declared child object on top of the object's own query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from connector.mapping import ObjectSpec
from sync.context import SyncContext
from sync.outbound.tracked import load_hashes
from sync.store.db import chunked
from sync.store.models import Watermark

Rows = Iterator[dict[str, Any]]
ReadById = Callable[[SyncContext, str, ObjectSpec, Iterable[str]], Iterable[dict[str, Any]]]


def with_changed_parents(
    ctx: SyncContext,
    session: Session,
    name: str,
    spec: ObjectSpec,
    full: bool,
    rows: Iterable[dict[str, Any]],
    read_by_id: ReadById,
) -> Iterable[dict[str, Any]]:
    """The object's rows, then the published parents whose child rows changed since the window's start.

    The window is worked out now, from the watermark as the cycle's query read it; a first load, a full
    cycle or Dispatch Pending mode reads no child changes (every flagged row is read anyway)."""
    if not spec.children:
        return rows
    since = window_start(ctx, session, name, spec, full)
    if since is None:
        return rows
    published = _published(session, name, changed_parent_ids(ctx.crm, spec, since))
    return _then_parents(ctx, name, spec, published, rows, read_by_id)


def window_start(
    ctx: SyncContext, session: Session, name: str, spec: ObjectSpec, full: bool
) -> datetime | None:
    """The start of the incremental window (as sync.outbound.publisher._query_for computes it), or None."""
    if spec.pending or full:
        return None
    mark = session.get(Watermark, name)
    if mark is None or mark.system_modstamp is None:
        return None
    anchor = max(mark.system_modstamp, mark.server_time or mark.system_modstamp)
    return anchor - timedelta(seconds=ctx.settings.lookback_s)


def _then_parents(
    ctx: SyncContext,
    name: str,
    spec: ObjectSpec,
    parents: list[str],
    rows: Iterable[dict[str, Any]],
    read_by_id: ReadById,
) -> Rows:
    seen: set[str] = set()
    for row in rows:
        seen.add(str(row["Id"]))
        yield row
    published = [crm_id for crm_id in parents if crm_id not in seen]
    if published:
        yield from read_by_id(ctx, name, spec, published)


def changed_parent_ids(crm: Any, spec: ObjectSpec, since: datetime) -> list[str]:
    """Parents of the child rows changed or deleted since `since`: one queryAll per (child object, lookup)."""
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.") + f"{since.microsecond // 1000:03d}Z"
    lookups = dict.fromkeys((child.object, child.parent_field) for child in spec.children.values())
    parents: dict[str, None] = {}
    for child_object, parent_field in lookups:
        soql = f"SELECT {parent_field} FROM {child_object} WHERE SystemModstamp >= {stamp}"
        for row in crm.query_iter(soql, include_deleted=True):
            if parent := row.get(parent_field):
                parents.setdefault(str(parent), None)
    return list(parents)


def _published(session: Session, name: str, ids: list[str]) -> list[str]:
    """The ids the store knows as published and flagged: a child change of any other parent sends nothing
    (a parent flagged since is read by its own query, its flag being a change of its own)."""
    if not ids:
        return []
    flagged: list[str] = []
    for chunk in chunked(ids, 500):
        known = load_hashes(session, name, chunk)
        flagged.extend(crm_id for crm_id in chunk if crm_id in known and known[crm_id][1])
    return flagged

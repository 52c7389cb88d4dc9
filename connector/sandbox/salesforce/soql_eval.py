"""Runs a parsed SOQL query against the emulator's store: resolve fields, filter, sort, project.

A query is compiled once into closures (field getters and a predicate) and then produces the list of
matching Ids; records are projected to Salesforce's JSON shape one page at a time, so paging through 100k
rows never builds 100k response dicts at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.sandbox.salesforce import soql
from connector.sandbox.salesforce.schema import (
    NUMBER_TYPES,
    TEXT_TYPES,
    FieldDef,
    ObjectDef,
    normalize_id,
    to_wire,
)
from connector.sandbox.salesforce.store import Record, SalesforceApiError, SalesforceStore

Getter = Callable[[Record], Any]
Predicate = Callable[[Record], bool]


@dataclass(frozen=True)
class ResolvedPath:
    """A field path resolved against the schema: the hops through parent relationships and the final field."""

    hops: tuple[tuple[FieldDef, ObjectDef], ...]  # (reference field, parent object) per relationship
    owner: ObjectDef  # object that holds the final field
    field: FieldDef
    getter: Getter


@dataclass
class CompiledQuery:
    odef: ObjectDef
    query: soql.Query
    select: list[ResolvedPath]
    include_deleted: bool = False  # queryAll: the recycle bin too

    def table(self, store: SalesforceStore) -> dict[str, Record]:
        live = store.records[self.odef.name]
        return {**live, **store.deleted[self.odef.name]} if self.include_deleted else live


def malformed(message: str) -> SalesforceApiError:
    return SalesforceApiError("MALFORMED_QUERY", message, 400)


def resolve_path(store: SalesforceStore, odef: ObjectDef, path: soql.FieldPath) -> ResolvedPath:
    names = list(path)
    if len(names) > 1 and names[0].lower() == odef.name.lower():
        names = names[1:]  # "WorkOrder.Subject" FROM WorkOrder is allowed
    hops: list[tuple[FieldDef, ObjectDef]] = []
    current = odef
    for rel in names[:-1]:
        ref = current.relationship(rel)
        if ref is None or ref.reference_to is None:
            raise _invalid_field(".".join(path), current)
        parent = store.require_object(ref.reference_to)
        hops.append((ref, parent))
        current = parent
    fdef = current.field(names[-1])
    if fdef is None:
        raise _invalid_field(".".join(path), current)
    return ResolvedPath(tuple(hops), current, fdef, _getter(store, odef, hops, current, fdef))


def _invalid_field(name: str, odef: ObjectDef) -> SalesforceApiError:
    return SalesforceApiError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{odef.name}'. If you are attempting to use a custom field, "
        "be sure to append the '__c' after the custom field name.",
        400,
    )


def _getter(
    store: SalesforceStore,
    root: ObjectDef,
    hops: list[tuple[FieldDef, ObjectDef]],
    owner: ObjectDef,
    fdef: FieldDef,
) -> Getter:
    steps = []
    holder = root
    for ref, parent in hops:
        steps.append((holder.slot(ref.name), store.records[parent.name]))
        holder = parent
    slot = owner.slot(fdef.name)

    def get(rec: Record | None) -> Any:
        for ref_slot, table in steps:
            parent_id = rec[ref_slot] if rec is not None and ref_slot < len(rec) else None
            rec = table.get(parent_id) if parent_id is not None else None
        if rec is None or slot >= len(rec):
            return None
        return rec[slot]

    return get


def compile_query(store: SalesforceStore, text: str, *, include_deleted: bool = False) -> CompiledQuery:
    try:
        query = soql.parse(text)
    except soql.SoqlSyntaxError as exc:
        raise malformed(str(exc)) from exc
    odef = store.object(query.object_name, required=False)
    if odef is None:
        raise SalesforceApiError("INVALID_TYPE", f"sObject type '{query.object_name}' is not supported.", 400)
    select = [resolve_path(store, odef, p) for p in query.fields]
    return CompiledQuery(odef, query, select, include_deleted)


def matching_ids(store: SalesforceStore, cq: CompiledQuery) -> list[str]:
    """Ids of the records the query selects, filtered, ordered and cut by OFFSET/LIMIT."""
    predicate = compile_where(store, cq.odef, cq.query.where) if cq.query.where else None
    with store.lock:
        table = cq.table(store)
        ids = [rid for rid, rec in table.items() if predicate is None or predicate(rec)]
        for item in reversed(cq.query.order_by):
            ids = _sort(ids, table, resolve_path(store, cq.odef, item.path), item)
    start = cq.query.offset or 0
    end = None if cq.query.limit is None else start + cq.query.limit
    return ids[start:end]


def _sort(ids: list[str], table: dict[str, Record], rp: ResolvedPath, item: soql.OrderItem) -> list[str]:
    keyed = [(rp.getter(table[rid]), rid) for rid in ids]
    nulls = [rid for value, rid in keyed if value is None]
    values = sorted(
        ((v, rid) for v, rid in keyed if v is not None),
        key=lambda pair: _sort_key(pair[0]),
        reverse=item.descending,
    )
    ordered = [rid for _, rid in values]
    nulls_last = item.descending if item.nulls_last is None else item.nulls_last
    return ordered + nulls if nulls_last else nulls + ordered


def _sort_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


# --- WHERE -----------------------------------------------------------------------------------


def compile_where(store: SalesforceStore, odef: ObjectDef, expr: soql.Expr) -> Predicate:
    if isinstance(expr, soql.BoolOp):
        parts = [compile_where(store, odef, e) for e in expr.operands]
        if expr.op == "AND":
            return lambda rec: all(p(rec) for p in parts)
        return lambda rec: any(p(rec) for p in parts)
    if isinstance(expr, soql.Not):
        inner = compile_where(store, odef, expr.operand)
        return lambda rec: not inner(rec)
    rp = resolve_path(store, odef, expr.path)
    if isinstance(expr, soql.Like):
        return _like(rp, expr.pattern)
    if isinstance(expr, soql.InList):
        wanted = {_fold(rp.field, _coerce(rp.field, lit)) for lit in expr.values}
        get, fdef, negated = rp.getter, rp.field, expr.negated
        return lambda rec: (_fold(fdef, get(rec)) in wanted) != negated
    return _compare(rp, expr.op, _coerce(rp.field, expr.value))


def _like(rp: ResolvedPath, pattern: str) -> Predicate:
    if rp.field.type not in TEXT_TYPES:
        raise malformed(f"invalid operator on field {rp.field.name}: LIKE needs a text field")
    regex = soql.like_to_regex(pattern)
    get = rp.getter

    def match(rec: Record) -> bool:
        value = get(rec)
        return value is not None and regex.fullmatch(value) is not None

    return match


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _compare(rp: ResolvedPath, op: str, literal: Any) -> Predicate:
    get, fdef = rp.getter, rp.field
    wanted = _fold(fdef, literal)
    if op == "=":
        return lambda rec: _fold(fdef, get(rec)) == wanted
    if op == "!=":
        return lambda rec: _fold(fdef, get(rec)) != wanted
    if literal is None:
        raise malformed(f"invalid operator {op} with null on field {fdef.name}")
    fn = _OPS[op]

    def ordered(rec: Record) -> bool:
        value = _fold(fdef, get(rec))
        return value is not None and fn(value, wanted)

    return ordered


def _fold(fdef: FieldDef, value: Any) -> Any:
    """SOQL compares text case-insensitively (except Ids)."""
    if isinstance(value, str) and fdef.type not in {"id", "reference"}:
        return value.casefold()
    return value


_EXPECTED = {"boolean": "boolean", "date": "date", "datetime": "datetime"}


def _coerce(fdef: FieldDef, lit: soql.Literal) -> Any:
    """Check a literal fits the field's type, as Salesforce does before running the query."""
    if lit.kind == "null":
        return None
    kind = fdef.type
    ok = (
        (kind in TEXT_TYPES and lit.kind == "string")
        or (kind in NUMBER_TYPES and lit.kind == "number")
        or (_EXPECTED.get(kind) == lit.kind)
    )
    if not ok:
        expected = {"datetime": "dateTime"}.get(kind, kind)
        raise SalesforceApiError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{fdef.name}' must be of type {expected} "
            "and should not be enclosed in quotes"
            if lit.kind == "string"
            else f"value of filter criterion for field '{fdef.name}' must be of type {expected}",
            400,
        )
    value = lit.value
    if kind in {"id", "reference"} and isinstance(value, str) and len(value) == 15:
        return normalize_id(value)
    if kind == "int" and isinstance(value, Decimal):
        return value
    assert value is None or isinstance(value, str | Decimal | bool | datetime | date)
    return value


# --- projection ------------------------------------------------------------------------------


def project(store: SalesforceStore, cq: CompiledQuery, rid: str, api_version: str) -> dict[str, Any] | None:
    """One record in Salesforce's query JSON shape, with nested parent objects; None if it vanished."""
    rec = store.records[cq.odef.name].get(rid)
    if rec is None and cq.include_deleted:
        rec = store.deleted[cq.odef.name].get(rid)
    if rec is None:
        return None
    out: dict[str, Any] = {"attributes": attributes(cq.odef.name, rid, api_version)}
    for rp in cq.select:
        _place(store, out, rec, cq.odef, rp, api_version)
    return out


def attributes(object_name: str, rid: str, api_version: str) -> dict[str, str]:
    return {"type": object_name, "url": f"/services/data/v{api_version}/sobjects/{object_name}/{rid}"}


def _place(
    store: SalesforceStore,
    out: dict[str, Any],
    rec: Record,
    odef: ObjectDef,
    rp: ResolvedPath,
    api_version: str,
) -> None:
    target = out
    current: Record | None = rec
    holder = odef
    for ref, parent in rp.hops:
        assert ref.relationship_name is not None
        parent_id = store.value(holder, current, ref) if current is not None else None
        current = store.records[parent.name].get(parent_id) if parent_id else None
        if current is None:
            target[ref.relationship_name] = None
            return
        nested = target.get(ref.relationship_name)
        if not isinstance(nested, dict):
            nested = {"attributes": attributes(parent.name, str(parent_id), api_version)}
            target[ref.relationship_name] = nested
        target = nested
        holder = parent
    assert current is not None
    target[rp.field.name] = to_wire(store.value(holder, current, rp.field))

"""Runs a parsed SOQL query against the emulator's store: resolve fields, filter, sort, project.

A query is compiled once into closures (field getters and a predicate) and then produces the list of
matching Ids; records are projected to Salesforce's JSON shape one page at a time, so paging through 100k
rows never builds 100k response dicts at once. Child relationship subqueries are compiled here (each a
CompiledQuery of its own, against the child object) and attached to a page by soql_children.py; semi-joins
are run once, when the WHERE clause is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connector.sandbox.salesforce import soql
from connector.sandbox.salesforce.schema import (
    NUMBER_TYPES,
    TEXT_TYPES,
    FieldDef,
    ObjectDef,
    find_child_relationship,
    multipicklist_set,
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
    include_deleted: bool = False  # queryAll: the recycle bin too (never for children: see ChildQuery)
    children: list[ChildQuery] = field(default_factory=list)

    def table(self, store: SalesforceStore) -> dict[str, Record]:
        live = store.records[self.odef.name]
        return {**live, **store.deleted[self.odef.name]} if self.include_deleted else live


@dataclass
class ChildQuery:
    """A child relationship subquery: `name` as the schema spells it (the key of the parent's row), the
    child's reference to the parent, and the subquery compiled against the child object. Only live children
    are read, whether the parent came from query or queryAll."""

    name: str
    field: FieldDef
    cq: CompiledQuery
    predicate: Predicate | None


# API 58.0 and later: up to five levels of parent-to-child subqueries, the root counted; before: one.
NESTED_CHILDREN_SINCE = 58.0


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


def compile_query(
    store: SalesforceStore, text: str, *, include_deleted: bool = False, api_version: str | None = None
) -> CompiledQuery:
    """Parse and resolve a query; `api_version` (the URL's) sets how deep child subqueries may nest."""
    try:
        query = soql.parse(text)
    except soql.SoqlSyntaxError as exc:
        raise malformed(str(exc)) from exc
    try:
        nested = api_version is None or float(api_version) >= NESTED_CHILDREN_SINCE
    except ValueError:
        nested = True  # a version the emulator cannot read: the current behaviour
    return _compile(store, query, include_deleted, 4 if nested else 1, 0)


def _compile(
    store: SalesforceStore, query: soql.Query, include_deleted: bool, max_depth: int, depth: int
) -> CompiledQuery:
    odef = store.object(query.object_name, required=False)
    if odef is None:
        raise SalesforceApiError("INVALID_TYPE", f"sObject type '{query.object_name}' is not supported.", 400)
    if query.where is not None:
        _check_semi_join_placement(query.where)
    select = [resolve_path(store, odef, p) for p in query.fields]
    children = [_child(store, odef, sub, max_depth, depth + 1) for sub in query.subqueries]
    return CompiledQuery(odef, query, select, include_deleted, children)


def _child(
    store: SalesforceStore, parent: ObjectDef, sub: soql.Query, max_depth: int, depth: int
) -> ChildQuery:
    if depth > max_depth:
        levels = "1 level" if max_depth == 1 else f"{max_depth} levels"
        raise malformed(
            f"SOQL statements cannot query aggregate relationships more than {levels} away from the root "
            "entity object."
        )
    name = sub.object_name
    head, _, tail = name.partition(".")
    if tail and head.lower() == parent.name.lower():
        name = tail  # FROM WorkOrder.WorkOrderLineItems
    found = find_child_relationship(store.objects.values(), parent, name)
    if found is None:
        raise SalesforceApiError(
            "INVALID_TYPE",
            f"Didn't understand relationship '{sub.object_name}' in FROM part of query call. If you are "
            "attempting to use a custom relationship, be sure to append the '__r' after the custom "
            "relationship name. Please reference your WSDL or the describe call for the appropriate names.",
            400,
        )
    if sub.count_only:
        raise malformed("only root queries support aggregate expressions")
    child, ref = found
    cq = _compile(store, replace(sub, object_name=child.name), False, max_depth, depth)
    predicate = compile_where(store, child, sub.where) if sub.where else None
    assert ref.child_relationship is not None
    return ChildQuery(ref.child_relationship, ref, cq, predicate)


def matching_ids(store: SalesforceStore, cq: CompiledQuery) -> list[str]:
    """Ids of the records the query selects, filtered, ordered and cut by OFFSET/LIMIT."""
    predicate = compile_where(store, cq.odef, cq.query.where) if cq.query.where else None
    with store.lock:
        table = cq.table(store)
        ids = [rid for rid, rec in table.items() if predicate is None or predicate(rec)]
        ids = order_ids(store, cq, table, ids)
    return cut(cq.query, ids)


def order_ids(
    store: SalesforceStore, cq: CompiledQuery, table: dict[str, Record], ids: list[str]
) -> list[str]:
    """`ids` in the query's ORDER BY (stable: one sort per key, last key first)."""
    for item in reversed(cq.query.order_by):
        ids = _sort(ids, table, resolve_path(store, cq.odef, item.path), item)
    return ids


def cut(query: soql.Query, ids: list[str]) -> list[str]:
    start = query.offset or 0
    end = None if query.limit is None else start + query.limit
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
    if isinstance(expr, soql.SemiJoin):
        return _semi_join(store, odef, expr)
    rp = resolve_path(store, odef, expr.path)
    if isinstance(expr, soql.Includes):
        return _includes(rp, expr)
    if isinstance(expr, soql.Like):
        return _like(rp, expr.pattern)
    if isinstance(expr, soql.InList):
        wanted = {_fold(rp.field, _coerce(rp.field, lit)) for lit in expr.values}
        get, fdef, negated = rp.getter, rp.field, expr.negated
        return lambda rec: (_fold(fdef, get(rec)) in wanted) != negated
    return _compare(rp, expr.op, _coerce(rp.field, expr.value))


# --- semi-joins and multi-select picklists ---------------------------------------------------------


def _check_semi_join_placement(where: soql.Expr) -> None:
    """Salesforce takes a semi-join only as the whole WHERE clause or an operand of its top-level AND."""
    operands = where.operands if isinstance(where, soql.BoolOp) else ()
    if any(isinstance(e, soql.SemiJoin) for e in operands) and getattr(where, "op", "") == "OR":
        raise malformed("Semi join sub-selects are not allowed with the 'OR' operator")
    top = where.operands if isinstance(where, soql.BoolOp) and where.op == "AND" else (where,)
    for operand in top:
        if not isinstance(operand, soql.SemiJoin) and _has_semi_join(operand):
            raise malformed(
                "Semi join sub-selects are only allowed at the top level WHERE expressions and not in nested "
                "WHERE expressions."
            )


def _has_semi_join(expr: soql.Expr) -> bool:
    if isinstance(expr, soql.SemiJoin):
        return True
    if isinstance(expr, soql.Not):
        return _has_semi_join(expr.operand)
    return isinstance(expr, soql.BoolOp) and any(_has_semi_join(e) for e in expr.operands)


def _semi_join(store: SalesforceStore, odef: ObjectDef, expr: soql.SemiJoin) -> Predicate:
    """`Id IN (SELECT WorkOrderId FROM WorkOrderLineItem ...)`: the inner query runs once, now."""
    rp = resolve_path(store, odef, expr.path)
    inner = expr.query
    inner_odef = store.object(inner.object_name, required=False)
    if inner_odef is None:
        raise SalesforceApiError("INVALID_TYPE", f"sObject type '{inner.object_name}' is not supported.", 400)
    if inner_odef.name == odef.name:
        raise malformed("The inner and outer selects should not be on the same object type")
    if inner.where is not None and _has_semi_join(inner.where):
        raise malformed("Nesting of semi join sub-selects is not supported")
    if inner.count_only or inner.subqueries or len(inner.fields) != 1:
        raise malformed("semi join sub-selects must select exactly one Id or reference field")
    selected = resolve_path(store, inner_odef, inner.fields[0])
    if selected.field.type not in {"id", "reference"}:
        raise malformed(
            f"semi join sub selects can only query id fields, cannot use: '{selected.field.name}'"
        )
    if len(selected.hops) > 1:
        raise malformed("inner select field cannot have more than one level of relationships")
    inner_cq = CompiledQuery(inner_odef, inner, [selected])
    table = store.records[inner_odef.name]
    with store.lock:
        values = {selected.getter(table[rid]) for rid in matching_ids(store, inner_cq)} - {None}
    get, negated = rp.getter, expr.negated
    return lambda rec: (get(rec) in values) != negated


def _includes(rp: ResolvedPath, expr: soql.Includes) -> Predicate:
    """INCLUDES ('A;B', 'C'): A and B both selected, or C selected; EXCLUDES: none of the terms holds."""
    if rp.field.type != "multipicklist":
        word = "EXCLUDES" if expr.negated else "INCLUDES"
        raise malformed(f"invalid operator on field {rp.field.name}: {word} needs a multi-select picklist")
    terms = [t for t in (multipicklist_set(term) for term in expr.terms) if t]
    get, negated = rp.getter, expr.negated

    def match(rec: Record) -> bool:
        selected = multipicklist_set(get(rec))
        return any(term <= selected for term in terms) != negated

    return match


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
    if fdef.type == "multipicklist":
        raise malformed(f"invalid operator {op} on multi-select picklist field {fdef.name}")
    fn = _OPS[op]

    def ordered(rec: Record) -> bool:
        value = _fold(fdef, get(rec))
        return value is not None and fn(value, wanted)

    return ordered


def _fold(fdef: FieldDef, value: Any) -> Any:
    """SOQL compares text case-insensitively (except Ids), a multi-select picklist as a set of values."""
    if fdef.type == "multipicklist" and value is not None:
        return multipicklist_set(value)
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
        ((kind in TEXT_TYPES or kind == "multipicklist") and lit.kind == "string")
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

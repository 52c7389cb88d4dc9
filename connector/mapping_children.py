"""Child relationships of a mapped object (a work order's line items), read with the parent in one query.

Why with the parent: Dispatch takes a billing document with its lines as one record, so the lines must be
read when the work order is; a subquery per relationship keeps that to the one SOQL call per cycle, and
the parent's hash covering the child rows it uses makes a changed or deleted line re-publish the parent.
This module holds the `children` block, its subquery, the child part of the hash, and the scoping rules:
which row each path of a record reads (the object's, or a child's through `each` / `children`), checked
at load with the key that breaks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import field_validator

from connector.mapping_records import PARENT, RecordSpec, ValueSpec
from connector.mapping_values import Reader, child_rows
from connector.mapping_values import reader as path_reader
from connector.mapping_writes import StrictModel


class ChildSpec(StrictModel):
    """`children.<relationship>`: the child object, its lookup to the parent, and what to read of it."""

    object: str
    parent_field: str
    select: list[str]
    where: str | None = None
    order_by: str | None = None

    @field_validator("select")
    @classmethod
    def _some_fields(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("select must name at least one field of the child object")
        return value

    def subquery(self, relationship: str) -> str:
        """`(SELECT ... FROM <relationship> [WHERE ...] [ORDER BY ...])`, appended to the parent's SELECT."""
        soql = f"(SELECT {', '.join(dict.fromkeys(self.select))} FROM {relationship}"
        if self.where:
            soql += f" WHERE {self.where}"
        if self.order_by:
            soql += f" ORDER BY {self.order_by}"
        return soql + ")"


Scoped = tuple[str, str | None, str]  # (mapping key, relationship or None for the object's row, path)


def scoped_paths(
    keyed: Iterable[tuple[str, RecordSpec]], children: Mapping[str, ChildSpec]
) -> Iterator[Scoped]:
    """Every CRM path the records read, with the row it reads (`$parent.` resolved to the object's row).

    Raises ValueError naming the key for a path, `each` or `children` that breaks the scoping rules."""
    for key, spec in keyed:
        scope = spec.each
        if scope is not None:
            _declared(f"{key}.each", scope, children)
        if spec.when:
            yield _resolve(f"{key}.when", scope, spec.when)
        for value_key, value in spec.values():
            yield from _value_paths(f"{key}.{value_key}", value, scope, children)


def _value_paths(
    key: str, value: ValueSpec, scope: str | None, children: Mapping[str, ChildSpec]
) -> Iterator[Scoped]:
    for path in value.crm_fields():
        yield _resolve(key, scope, path)
    if value.children is None:
        return
    if scope is not None:
        raise ValueError(
            f"{key}: a children list reads {value.children!r} rows, but this value already reads "
            f"{scope!r} rows (child lists do not nest: Salesforce reads one level of subqueries)"
        )
    _declared(f"{key}.children", value.children, children)
    for path, inner in (value.fields or {}).items():
        yield from _value_paths(f"{key}.fields.{path}", inner, value.children, children)


def _resolve(key: str, scope: str | None, path: str) -> Scoped:
    if path.startswith(PARENT):
        if scope is None:
            raise ValueError(
                f"{key}: {path!r}: `$parent.` paths are only valid inside `each` records and `children` lists"
            )
        return key, None, path[len(PARENT) :]
    return key, scope, path


def _declared(key: str, relationship: str, children: Mapping[str, ChildSpec]) -> None:
    if relationship not in children:
        declared = ", ".join(children) or "none"
        raise ValueError(
            f"{key}: {relationship!r} is not a declared child relationship "
            f"(declared under children: {declared})"
        )


def check_selected(paths: Iterable[Scoped], select: list[str], children: Mapping[str, ChildSpec]) -> None:
    """Each path is selected where it is read: the object's `select`, or its child relationship's."""
    parent = {name.lower() for name in select}
    child = {rel: {name.lower() for name in spec.select} for rel, spec in children.items()}
    for key, scope, path in paths:
        if scope is None and path.lower() not in parent:
            raise ValueError(f"{key}: field {path!r} is used but not in select")
        if scope is not None and path.lower() not in child[scope]:
            raise ValueError(f"{key}: field {path!r} is used but not in children.{scope}.select")


def check_refs(keyed_lists: Iterable[list[tuple[str, RecordSpec]]]) -> None:
    """`ref:` names an earlier record of the same row, one with a single identity (not an `each` record)."""
    for keyed in keyed_lists:
        seen: dict[str, RecordSpec] = {}
        for key, spec in keyed:
            for value_key, value in spec.values():
                for ref_key, ref in _refs(f"{key}.{value_key}", value):
                    if ref not in seen:
                        raise ValueError(
                            f"{spec.type} refers to {ref!r}, which is not an earlier record ({ref_key})"
                        )
                    if seen[ref].each is not None:
                        raise ValueError(
                            f"{ref_key}: {ref!r} is an `each` record (one per child row): "
                            "a ref needs one identity"
                        )
            seen.setdefault(spec.type, spec)


def _refs(key: str, value: ValueSpec) -> Iterator[tuple[str, str]]:
    if value.ref:
        yield key, value.ref
    for path, inner in (value.fields or {}).items():
        yield from _refs(f"{key}.fields.{path}", inner)


def child_reader(relationship: str, paths: Iterable[str]) -> Reader:
    """The child rows' values a record uses, row by row: the relationship's part of the parent's hash."""
    readers = [path_reader(path) for path in sorted(set(paths))]

    def read(row: Mapping[str, Any]) -> list[list[Any]]:
        return [[read_one(child) for read_one in readers] for child in child_rows(row, relationship)]

    return read

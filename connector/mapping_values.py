"""Mapped values compiled once: field paths split, templates parsed, value maps and formats chosen.

The publisher reads every mapped field of every changed row, so each value of the mapping file becomes a
small closure at load time instead of being interpreted per row. Split from connector.mapping, which holds
the file's schema; this module knows nothing of it beyond the `ValueSource` attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol

from connector.errors import ConfigurationError

TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][\w.]*)\}")


class ValueSource(Protocol):
    """What a mapped value says (connector.mapping.ValueSpec)."""

    @property
    def field(self) -> str | None: ...
    @property
    def const(self) -> Any: ...
    @property
    def template(self) -> str | None: ...
    @property
    def ref(self) -> str | None: ...
    @property
    def map(self) -> dict[str, Any] | None: ...
    @property
    def default(self) -> Any: ...
    @property
    def format(self) -> str | None: ...
    @property
    def when(self) -> ConditionSource | None: ...
    @property
    def split(self) -> str | None: ...
    @property
    def wrap(self) -> str | None: ...
    @property
    def children(self) -> str | None: ...
    @property
    def fields(self) -> Mapping[str, ValueSource] | None: ...
    @property
    def blob(self) -> str | None: ...
    @property
    def max_bytes(self) -> int: ...


class ConditionSource(Protocol):
    """A value's condition (connector.mapping.ConditionSpec): `field` has a value, equals one, or is in
    a list."""

    @property
    def field(self) -> str: ...
    @property
    def in_(self) -> list[Any] | None: ...
    @property
    def equals(self) -> Any: ...


# A `blob` value before the publisher downloads it: the ContentVersion id, the size limit, and where it goes
# (for the refusal message). build_records stays pure; sync.outbound resolves these before the outbox commit.
BLOB_MARKER = "$blob"


class RecordBuildError(ConfigurationError):
    """A CRM row cannot become canonical records (for example a status the value map does not know)."""


def _path_value(row: Mapping[str, Any], parts: Iterable[str]) -> Any:
    """Read `Account.Name` from a Salesforce row (parents come nested, with an `attributes` key)."""
    value: Any = row
    for part in parts:
        # `type(...) is dict` first: rows are plain dicts, and the ABC check costs more than the read
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


Reader = Callable[[Mapping[str, Any]], Any]
Resolver = Callable[[Mapping[str, Any], Mapping[str, str]], Any]


def reader(path: str) -> Reader:
    """A field path split once, not per row: the publisher reads every mapped field of every row it reads."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        name = parts[0]
        return lambda row: row.get(name)
    return lambda row: _path_value(row, parts)


def _iso_datetime(value: Any) -> str:
    parsed = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _iso_datetime_z(value: Any) -> str:
    """`2019-10-21T08:30:00Z`: the form the playbook's calendar events insist on ("The date format must adhere
    to what is shown in this example")."""
    return _iso_datetime(value).replace("+00:00", "Z")


def _iso_date(value: Any) -> str:
    return (value if isinstance(value, date) else date.fromisoformat(str(value)[:10])).isoformat()


_FORMATTERS: dict[str, Callable[[Any], Any]] = {
    "string": str,
    "int": int,
    "float": float,
    "bool": bool,
    "datetime": _iso_datetime,
    "datetime_z": _iso_datetime_z,
    "date": _iso_date,
}


def _source(spec: ValueSource) -> Resolver:
    """Where the raw value comes from, before the value map, the default and the format."""
    if spec.ref:
        ref = spec.ref
        return lambda _row, refs: refs.get(ref)
    if spec.template is not None:
        return _template_source(spec.template)
    if spec.field:
        read = reader(spec.field)
        return lambda row, _refs: read(row)
    const = spec.const
    return lambda _row, _refs: const


def _template_source(template: str) -> Resolver:
    """`{A}-{B}`: None when any field is empty (a half-built external id would name another record)."""
    pieces = TEMPLATE_FIELD.split(template)  # literal, field, literal, field, ..., literal
    readers = [reader(name) for name in pieces[1::2]]
    literals = pieces[2::2]

    def source(row: Mapping[str, Any], _refs: Mapping[str, str]) -> Any:
        values = [read(row) for read in readers]
        if any(value is None or value == "" for value in values):
            return None
        out = [pieces[0]]
        for value, literal in zip(values, literals, strict=True):
            out += (str(value), literal)
        return "".join(out)

    return source


def compile_value(spec: ValueSource, at: str = "", optional_map: bool = False) -> Resolver:
    """One value as a closure. `at` (`attachment.file`) names the value in a blob marker's messages;
    `optional_map` leaves out a value its map does not name (header keys: `{action: {map: {"True":
    delete}}}` sends no action for an unchecked box) instead of refusing the record.

    The plain value (field, map, default, format) keeps the lean closure below; a condition, a split or
    a JSON format wraps it only when the mapping asks for one."""
    if spec.children is not None or spec.blob is not None or spec.split is not None:
        return _wrapped(spec, at)
    if spec.when is not None or spec.format == "json":
        return _wrapped(spec, at, optional_map)
    return _plain(spec, optional_map)


def _plain(spec: ValueSource, optional_map: bool = False) -> Resolver:
    source, value_map, default = _source(spec), spec.map, spec.default
    formatter = _FORMATTERS[spec.format] if spec.format and spec.format != "json" else None
    origin = spec.field or spec.template

    def resolve(row: Mapping[str, Any], refs: Mapping[str, str]) -> Any:
        value = source(row, refs)
        if value_map is not None and value is not None:
            key = str(value)
            if key in value_map:
                value = value_map[key]
            elif default is None:
                if optional_map:
                    return None
                raise RecordBuildError(
                    f"value {value!r} of {origin} is not in the value map "
                    f"(known: {', '.join(value_map)}); add it to the mapping file"
                )
            else:
                value = default
        if default is not None and (value is None or value == ""):
            value = default
        return value if formatter is None or value is None else formatter(value)

    return resolve


def _has_value(value: Any) -> bool:
    """A set field, as a record's `when` reads it: not null, not empty text, not an unchecked box, not []."""
    return value is not None and value != "" and value is not False and value != []


def compile_condition(condition: ConditionSource) -> Callable[[Mapping[str, Any]], bool]:
    """`{field}`: has a value; `{field, equals}`; `{field, in}`. Compared as given and as text, so a
    checkbox `true`, a number `3` and a picklist value `won` match what Salesforce returns."""
    read = reader(condition.field)
    if condition.in_ is None and condition.equals is None:
        return lambda row: _has_value(read(row))
    wanted = list(condition.in_) if condition.in_ is not None else [condition.equals]
    texts = {str(value) for value in wanted}
    return lambda row: (value := read(row)) is not None and (value in wanted or str(value) in texts)


def _mapped(value: Any, value_map: Mapping[str, Any], default: Any, origin: str | None) -> Any:
    key = str(value)
    if key in value_map:
        return value_map[key]
    if default is None:
        raise RecordBuildError(
            f"value {value!r} of {origin} is not in the value map (known: {', '.join(value_map)}); "
            "add it to the mapping file"
        )
    return default


def _wrapped(spec: ValueSource, at: str, optional_map: bool = False) -> Resolver:
    """A value with a condition, a split, a child list, a file body or JSON text."""
    if spec.children is not None:
        inner = _children_source(spec.children, FieldsPlan(spec.fields or {}, f"{at}."))
    elif spec.blob is not None:
        inner = _blob_source(spec.blob, spec.max_bytes, at)
    elif spec.split is not None:
        inner = _split_source(spec)
    elif spec.format == "json":
        inner = _json_source(spec)
    else:
        inner = _plain(spec, optional_map)
    if spec.when is None:
        return inner
    condition, default = compile_condition(spec.when), spec.default

    def resolve(row: Mapping[str, Any], refs: Mapping[str, str]) -> Any:
        return inner(row, refs) if condition(row) else default

    return resolve


def _split_source(spec: ValueSource) -> Resolver:
    """`Trades__c: "A;B"` -> ["A", "B"] (each mapped and formatted), or `wrap`ped: [{"trade": "A"}, ...]."""
    source, separator, wrap = _source(spec), str(spec.split), spec.wrap
    value_map, default, origin = spec.map, spec.default, spec.field or spec.template
    formatter = _FORMATTERS[spec.format] if spec.format and spec.format != "json" else None

    def resolve(row: Mapping[str, Any], refs: Mapping[str, str]) -> Any:
        value = source(row, refs)
        if value is None or value == "":
            return default
        items: list[Any] = []
        for part in value if isinstance(value, list) else str(value).split(separator):
            item = part.strip() if isinstance(part, str) else part
            if item is None or item == "":
                continue
            if value_map is not None:
                item = _mapped(item, value_map, default, origin)
            if formatter is not None:
                item = formatter(item)
            items.append({wrap: item} if wrap else item)
        return items or default

    return resolve


def _json_source(spec: ValueSource) -> Resolver:
    """JSON text in a CRM field (a long text area of settings) sent as the object it describes."""
    plain, origin = _plain(spec), spec.field or spec.template or "the constant"

    def resolve(row: Mapping[str, Any], refs: Mapping[str, str]) -> Any:
        value = plain(row, refs)
        if not isinstance(value, str) or value == "":
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            raise RecordBuildError(f"value of {origin} is not valid JSON ({detail}); fix the text") from None

    return resolve


def _blob_source(path: str, max_bytes: int, at: str) -> Resolver:
    """A marker naming the ContentVersion whose VersionData the publisher downloads and base64-encodes."""
    read = reader(path)

    def resolve(row: Mapping[str, Any], _refs: Mapping[str, str]) -> Any:
        version_id = read(row)
        if version_id is None or version_id == "":
            return None
        return {BLOB_MARKER: str(version_id), "max_bytes": max_bytes, "at": at, "field": path}

    return resolve


def child_rows(row: Mapping[str, Any], relationship: str) -> list[Mapping[str, Any]]:
    """A relationship's child rows: the gateway gives a list (empty for none); a raw Salesforce answer
    (`{"records": [...]}`, or null) is read too."""
    value = row.get(relationship)
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return list(value.get("records") or ())
    return []


def with_parent(child: Mapping[str, Any], parent: Mapping[str, Any]) -> dict[str, Any]:
    """A child row whose `$parent.<path>` reads the parent row."""
    return {**child, "$parent": parent}


def _children_source(relationship: str, plan: FieldsPlan) -> Resolver:
    def resolve(row: Mapping[str, Any], refs: Mapping[str, str]) -> Any:
        items = [plan.build(with_parent(child, row), refs) for child in child_rows(row, relationship)]
        return [item for item in items if item] or None

    return resolve


def _sourced(value: ValueSource) -> bool:
    return bool(value.field or value.template or value.ref or value.children or value.blob)


class FieldsPlan:
    """A `fields` block compiled once: (parent keys, leaf key, resolver) per field path, split once
    (`home_address.street_1` nests), and which list elements each value fills (`contacts.0`)."""

    def __init__(self, fields: Mapping[str, ValueSource], at: str = "", optional_map: bool = False) -> None:
        steps = []
        elements = []
        for path, value in fields.items():
            *parents, leaf = parts = path.split(".")
            steps.append((tuple(parents), leaf, compile_value(value, f"{at}{path}", optional_map)))
            # A constant fills only an element that is itself the value (`external_ids.0`): constants alone
            # never keep an object element, so a phone method with no number is dropped.
            sourced = _sourced(value)
            elements.append(
                tuple(
                    tuple(parts[: i + 1])
                    for i, part in enumerate(parts)
                    if part.isdigit() and (sourced or i == len(parts) - 1)
                )
            )
        self.steps: tuple[tuple[tuple[str, ...], str, Resolver], ...] = tuple(steps)
        self.list_elements: tuple[tuple[tuple[str, ...], ...], ...] = tuple(elements)
        self.has_lists = any(part.isdigit() for path in fields for part in path.split("."))

    def build(
        self, row: Mapping[str, Any], refs: Mapping[str, str], record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The object these fields describe for one row (filled into `record` when given); empty values are
        left out."""
        record = {} if record is None else record
        filled: set[tuple[str, ...]] = set()
        for index, (parents, leaf, resolver) in enumerate(self.steps):
            value = resolver(row, refs)
            if value is None or value == "":
                continue
            target = record
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
            if self.has_lists:
                filled.update(self.list_elements[index])
        return as_lists(record, filled) if self.has_lists else record


def as_lists(node: dict[str, Any], filled: set[tuple[str, ...]], at: tuple[str, ...] = ()) -> dict[str, Any]:
    """Objects keyed by numbers become lists in number order (`contacts.1.first_name` is the second
    contact). An element no CRM value filled (only constants, or nothing) is dropped and the list closes
    up, so `contacts.1` of a work order with one contact leaves one contact."""
    for key, value in list(node.items()):
        if not isinstance(value, dict):
            continue
        value = as_lists(value, filled, (*at, key))
        if value and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int) if (*at, key, k) in filled]
        node[key] = value
    return node

"""Mapped values compiled once: field paths split, templates parsed, value maps and formats chosen.

The publisher reads every mapped field of every changed row, so each value of the mapping file becomes a
small closure at load time instead of being interpreted per row. Split from connector.mapping, which holds
the file's schema; this module knows nothing of it beyond the `ValueSource` attributes.
"""

from __future__ import annotations

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


def _iso_date(value: Any) -> str:
    return (value if isinstance(value, date) else date.fromisoformat(str(value)[:10])).isoformat()


_FORMATTERS: dict[str, Callable[[Any], Any]] = {
    "string": str,
    "int": int,
    "float": float,
    "bool": bool,
    "datetime": _iso_datetime,
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


def compile_value(spec: ValueSource) -> Resolver:
    source, value_map, default = _source(spec), spec.map, spec.default
    formatter = _FORMATTERS[spec.format] if spec.format else None
    origin = spec.field or spec.template

    def resolve(row: Mapping[str, Any], refs: Mapping[str, str]) -> Any:
        value = source(row, refs)
        if value_map is not None and value is not None:
            key = str(value)
            if key in value_map:
                value = value_map[key]
            elif default is None:
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

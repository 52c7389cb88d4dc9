"""Dispatch Connect canonical record envelopes, shared by the client and the emulator.

The playbook's canonical `agent/in` body is a JSON array of `{"header": {"record_type", "version"}, "record"}`
items processed in order; its CSV form names columns in dot notation (`v3.organization.address.city`). Keeping
both encodings here means the client and the emulator cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_VERSION = "v3"

#: Record types the emulator upserts by external id (the playbook's "To Dispatch" sections).
UPSERT_TYPES = (
    "organization",
    "customer",
    "job",
    "user",
    "appointment",
    "attachment",
    "billing_item",
    "billing_document",
)

_VERSION_RE = re.compile(r"^v\d+$")


@dataclass(frozen=True)
class InboundRecord:
    """One record of an `agent/in` request, whatever encoding it arrived in."""

    record_type: str
    record: dict[str, Any]
    version: str = DEFAULT_VERSION


def envelope(item: Mapping[str, Any]) -> dict[str, Any]:
    """Turn `{"record_type": ..., "record": {...}, "version"?: ...}` into the canonical array item."""
    record_type = item.get("record_type")
    record = item.get("record")
    if not isinstance(record_type, str) or not record_type:
        raise ValueError("each record needs a non-empty 'record_type'")
    if not isinstance(record, Mapping):
        raise ValueError(f"record of type {record_type!r} needs a 'record' object")
    version = item.get("version") or DEFAULT_VERSION
    return {"header": {"record_type": record_type, "version": version}, "record": dict(record)}


def envelopes(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [envelope(item) for item in items]


def unwrap_record(record_type: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Some playbook samples nest the record under its own type (`{"organization": {...}}`); flatten that."""
    if len(record) == 1:
        inner = record.get(record_type)
        if isinstance(inner, Mapping):
            return dict(inner)
    return dict(record)


def parse_json_body(data: Any, record_type_header: str | None) -> list[InboundRecord]:
    """Read the JSON forms: canonical array, or a `RecordType` header with one record (or a bare array)."""
    items: Sequence[Any] = data if isinstance(data, list) else [data]
    out: list[InboundRecord] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"item {index} is not a JSON object")
        header = item.get("header")
        if isinstance(header, Mapping) and isinstance(item.get("record"), Mapping):
            rtype = header.get("record_type") or record_type_header
            if not isinstance(rtype, str) or not rtype:
                raise ValueError(f"item {index} has no header.record_type")
            version = str(header.get("version") or DEFAULT_VERSION)
            out.append(InboundRecord(rtype, unwrap_record(rtype, item["record"]), version))
        elif record_type_header:
            out.append(InboundRecord(record_type_header, unwrap_record(record_type_header, item)))
        else:
            raise ValueError(f"item {index} has no header and the request has no RecordType header")
    return out


def _set_path(target: dict[str, Any], path: Sequence[str], value: str) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"column path {'.'.join(path)!r} clashes with a scalar column")
        node = child
    node[path[-1]] = value


def _split_column(column: str, default_type: str | None) -> tuple[str, str, list[str]]:
    parts = [p for p in column.strip().split(".") if p]
    version = DEFAULT_VERSION
    if parts and _VERSION_RE.match(parts[0]):
        version = parts.pop(0)
    if len(parts) >= 2:
        return version, parts[0], parts[1:]
    if len(parts) == 1 and default_type:
        return version, default_type, parts
    raise ValueError(f"CSV column {column!r} is not in dot notation (v3.<record_type>.<field>)")


@dataclass(frozen=True)
class CsvRowError:
    """A CSV row the emulator cannot read; reported as an `err` event, not a rejected request."""

    row_number: int
    record_type: str
    message: str


def _csv_rows(text: str) -> Iterator[tuple[int, list[str] | str]]:
    """Each non-blank row with its line number, or the csv module's complaint about it.

    The reader resumes at the next line after an error, so one unreadable row (a cell over the field size
    limit, a stray carriage return) costs that row only."""
    reader = csv.reader(io.StringIO(text))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, str(exc)
            continue
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


def parse_csv_body(text: str, record_type_header: str | None = None) -> list[InboundRecord | CsvRowError]:
    """Read canonical CSV: header `v3.<type>.<dotted.path>`, one record per row and type.

    Empty cells are left out (absent means unchanged). An unreadable header raises ValueError (nothing in the
    body can be read without it); a bad row becomes a CsvRowError and the other rows still count."""
    rows = _csv_rows(text)
    first = next(rows, None)
    if first is None:
        return []
    line, header = first
    if isinstance(header, str):
        raise ValueError(f"CSV header (line {line}) cannot be read: {header}")
    columns = [_split_column(c, record_type_header) for c in header]
    first_type = columns[0][1]
    out: list[InboundRecord | CsvRowError] = []
    for number, row in rows:
        if isinstance(row, str) or len(row) != len(columns):
            out.append(
                CsvRowError(number, first_type, f"CSV row {number}: {_row_problem(row, len(columns))}")
            )
            continue
        by_type: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            for (version, rtype, path), cell in zip(columns, row, strict=True):
                record = by_type.setdefault((rtype, version), {})
                if cell.strip():
                    _set_path(record, path, cell.strip())
        except ValueError as exc:
            out.append(CsvRowError(number, first_type, f"CSV row {number}: {exc}"))
            continue
        out.extend(InboundRecord(rtype, rec, ver) for (rtype, ver), rec in by_type.items())
    return out


def _row_problem(row: list[str] | str, columns: int) -> str:
    if isinstance(row, str):
        return f"cannot be read ({row})"
    return f"has {len(row)} values for {columns} columns"


def to_csv(record_type: str, records: Sequence[Mapping[str, Any]], version: str = "v3") -> str:
    """Write records as canonical dot-notation CSV (used by tests and by integrators trying the CSV form)."""
    columns: list[str] = []

    def flatten(prefix: str, value: Any, row: dict[str, str]) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}", inner, row)
        else:
            row[prefix] = "" if value is None else str(value)
            if prefix not in columns:
                columns.append(prefix)

    flat_rows: list[dict[str, str]] = []
    for record in records:
        row: dict[str, str] = {}
        flatten(f"{version}.{record_type}", record, row)
        flat_rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in flat_rows:
        writer.writerow([row.get(c, "") for c in columns])
    return buffer.getvalue()

"""Dispatch Connect canonical record envelopes, shared by the client and the emulator.

The playbook's canonical `agent/in` body is a JSON array of `{"header": {"record_type", "version", ...},
"record": {...}, "attachment"?: "<base64>"}` items processed in order; its CSV form names columns in dot
notation (`v3.organization.address.city`, lists by numbered segments: `v2.billing_document.lines.0.title`).
Keeping both encodings here means the client and the emulator cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_VERSION = "v3"

#: Every "To Dispatch" record type of the playbook, in dependency order: a record comes after the records it
#: names (a job after its organization and customer, a user's service area after the user, a billing
#: document after its job and billing items). The outbox sorts each change set by this order.
RECORD_TYPES = (
    "organization",
    "config",
    "trade_account_org",
    "job_attribution",
    "appointment_type",
    "billing_item",
    "user",
    "trade_account_user",
    "user_tag",
    "profile_picture",
    "service_area",
    "customer",
    "job",
    "offer",
    "job_trade",
    "suggested_times",
    "appointment",
    "auto_assign_technician",
    "auto_assign_org",
    "attachment",
    "custom_form",
    "billing_document",
    "calendar_event",
)

#: The header version each type's playbook sample carries; None: the sample sends no version.
DEFAULT_VERSIONS: dict[str, str | None] = {
    "organization": "v3",
    "config": "v1",
    "trade_account_org": None,
    "job_attribution": "v1",
    "appointment_type": "v1",
    "billing_item": "v2",
    "user": "v3",
    "trade_account_user": None,
    "user_tag": "v1",
    "profile_picture": "v3",
    "service_area": "v1",
    "customer": "v3",
    "job": "v3",
    "offer": "v2",
    "job_trade": None,
    "suggested_times": None,
    "appointment": "v3",
    "auto_assign_technician": "v3",
    "auto_assign_org": "v3",
    "attachment": "v3",
    "custom_form": None,
    "billing_document": "v2",
    "calendar_event": "v1",
}

#: Record types the emulator upserts by external id (kept for callers of the first emulator).
UPSERT_TYPES = RECORD_TYPES

_VERSION_RE = re.compile(r"^v\d+$")
_RESERVED_HEADER_KEYS = ("record_type", "version")
#: The canonical item's own top-level keys; any other (an offer's `ui_options`) is a sibling the record's
#: `envelope` carries.
_ITEM_KEYS = ("header", "record", "attachment")


def default_version(record_type: str) -> str | None:
    """The version a type's playbook sample sends; unknown types get v3 (the playbook's general version)."""
    return DEFAULT_VERSIONS.get(record_type, DEFAULT_VERSION)


@dataclass(frozen=True)
class InboundRecord:
    """One record of an `agent/in` request, whatever encoding it arrived in. `header` holds the header's
    keys beyond record_type and version (`action`, `admin`); `attachment` the top-level base64 body;
    `siblings` any other top-level key."""

    record_type: str
    record: dict[str, Any]
    version: str = DEFAULT_VERSION
    header: dict[str, Any] = field(default_factory=dict)
    attachment: str | None = None
    #: Top-level keys beside header, record and attachment (the DNM Match offer's `ui_options`).
    siblings: dict[str, Any] = field(default_factory=dict)


def envelope(item: Mapping[str, Any]) -> dict[str, Any]:
    """A built record (`{"record_type", "record", "version"?, "header"?, "attachment"?, "envelope"?,
    "identity"?}`) as the canonical array item; `envelope` keys become top-level keys beside header and
    record (an offer's `ui_options`). The identity only de-duplicates and matches acks: it is never sent."""
    record_type = item.get("record_type")
    record = item.get("record")
    if not isinstance(record_type, str) or not record_type:
        raise ValueError("each record needs a non-empty 'record_type'")
    if not isinstance(record, Mapping):
        raise ValueError(f"record of type {record_type!r} needs a 'record' object")
    header: dict[str, Any] = {"record_type": record_type}
    version = item.get("version") or default_version(record_type)
    if version:
        header["version"] = version
    extra = item.get("header") or {}
    if not isinstance(extra, Mapping):
        raise ValueError(f"record of type {record_type!r}: 'header' must be an object")
    for key, value in extra.items():
        if key in _RESERVED_HEADER_KEYS:
            raise ValueError(f"record of type {record_type!r}: header key {key!r} is set by the envelope")
        header[key] = value
    out: dict[str, Any] = {"header": header, "record": dict(record)}
    attachment = item.get("attachment")
    if attachment is not None:
        if not isinstance(attachment, str):
            raise ValueError(f"record of type {record_type!r}: 'attachment' must be base64 text")
        out["attachment"] = attachment
    siblings = item.get("envelope") or {}
    if not isinstance(siblings, Mapping):
        raise ValueError(f"record of type {record_type!r}: 'envelope' must be an object")
    for key, value in siblings.items():
        if key in _ITEM_KEYS:
            raise ValueError(f"record of type {record_type!r}: envelope key {key!r} is the item's own key")
        out[key] = value
    return out


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
            version = str(header.get("version") or default_version(rtype) or "")
            extra = {k: v for k, v in header.items() if k not in _RESERVED_HEADER_KEYS}
            attachment = item.get("attachment")
            out.append(
                InboundRecord(
                    rtype,
                    unwrap_record(rtype, item["record"]),
                    version,
                    extra,
                    attachment if isinstance(attachment, str) else None,
                    {k: v for k, v in item.items() if k not in _ITEM_KEYS},
                )
            )
        elif record_type_header:
            out.append(InboundRecord(record_type_header, unwrap_record(record_type_header, item)))
        else:
            raise ValueError(f"item {index} has no header and the request has no RecordType header")
    return out


# -- CSV -----------------------------------------------------------------------------------------------

#: Leaf names Dispatch's schema reads as numbers or booleans. A CSV cell is text; the emulator reads these the
#: way Dispatch would, so a record sent as CSV is stored as the same record sent as JSON.
NUMBER_FIELDS = frozenset(
    {
        "qty", "price", "duration", "discount_amount", "service_fee", "expected_duration",
        "default_duration_seconds", "appointment_duration_minutes", "latitude", "longitude",
        "min_hours_out", "max_hours_out", "tax_rate",
    }
)  # fmt: skip
BOOLEAN_FIELDS = frozenset(
    {
        "taxable", "active", "is_default", "price_locked", "always_create", "primary", "notify",
        "skip_customer_signature", "service_fee_precollected", "include_linked_orgs", "override_availability",
        "two_tech", "reschedule_reminder", "show_decline", "include_weekends", "admin",
    }
)  # fmt: skip
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")


def csv_value(name: str, text: str) -> Any:
    """A cell as Dispatch reads it: the schema's numbers and booleans typed, everything else text (a postal
    code `02446` stays text). A cell that does not parse stays text, for validation to name."""
    if name in NUMBER_FIELDS and _NUMBER_RE.match(text):
        return float(text) if "." in text else int(text)
    if name in BOOLEAN_FIELDS and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _set_path(target: dict[str, Any], path: Sequence[str], value: str) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"column path {'.'.join(path)!r} clashes with a scalar column")
        node = child
    if isinstance(node.get(path[-1]), dict):
        raise ValueError(f"column path {'.'.join(path)!r} clashes with a nested column")
    node[path[-1]] = csv_value(path[-1], value)


def _listify(value: Any) -> Any:
    """Numbered segments (`lines.0.title`) become lists, in index order; other objects stay objects."""
    if not isinstance(value, dict):
        return value
    inner = {key: _listify(item) for key, item in value.items()}
    if inner and all(key.isdigit() for key in inner):
        return [inner[key] for key in sorted(inner, key=int)]
    return inner


def _split_column(column: str, default_type: str | None) -> tuple[str, str, list[str]]:
    parts = [p for p in column.strip().split(".") if p]
    version = None
    if parts and _VERSION_RE.match(parts[0]):
        version = parts.pop(0)
    if len(parts) >= 2:
        return version or default_version(parts[0]) or "", parts[0], parts[1:]
    if len(parts) == 1 and default_type:
        return version or default_version(default_type) or "", default_type, parts
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
    body can be read without it); a bad row becomes a CsvRowError and the other rows still count. A
    column `<type>.attachment` is the record's base64 body (the playbook's FSM user sample puts it there)."""
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
        out.extend(_csv_record(rtype, ver, rec) for (rtype, ver), rec in by_type.items())
    return out


def _csv_record(record_type: str, version: str, record: dict[str, Any]) -> InboundRecord:
    body = {key: _listify(value) for key, value in record.items()}
    attachment = body.pop("attachment", None) if record_type == "profile_picture" else None
    return InboundRecord(record_type, body, version, {}, attachment if isinstance(attachment, str) else None)


def _row_problem(row: list[str] | str, columns: int) -> str:
    if isinstance(row, str):
        return f"cannot be read ({row})"
    return f"has {len(row)} values for {columns} columns"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(record_type: str, records: Sequence[Mapping[str, Any]], version: str | None = "v3") -> str:
    """Records of one type as canonical dot-notation CSV; lists by numbered segments (`lines.0.title`).

    A null, an empty list or an empty object has no cell (CSV cannot tell them from "unchanged")."""
    columns: list[str] = []

    def flatten(prefix: str, value: Any, row: dict[str, str]) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}", inner, row)
        elif isinstance(value, list | tuple):
            for index, inner in enumerate(value):
                flatten(f"{prefix}.{index}", inner, row)
        elif value is not None:
            row[prefix] = _cell(value)
            if prefix not in columns:
                columns.append(prefix)

    flat_rows: list[dict[str, str]] = []
    root = f"{version}.{record_type}" if version else record_type
    for record in records:
        row: dict[str, str] = {}
        flatten(root, record, row)
        flat_rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in flat_rows:
        writer.writerow([row.get(c, "") for c in columns])
    return buffer.getvalue()


@dataclass(frozen=True)
class CsvPart:
    """One `agent/in` request of a batch sent as CSV: `csv` text (one record type and version), or `json`
    items for records CSV cannot carry (header keys such as `action: delete`, top-level keys such as an
    offer's `ui_options`)."""

    record_type: str
    csv: str | None = None
    json: list[dict[str, Any]] | None = None


def csv_parts(items: Sequence[Mapping[str, Any]]) -> list[CsvPart]:
    """A batch as CSV requests: each run of consecutive records of one type and version is one CSV file, so
    the batch's dependency order holds across requests. A profile picture's base64 body goes in its
    `attachment` column (the playbook's FSM sample); a record with extra header keys or extra top-level keys
    (`envelope`) goes as JSON."""
    parts: list[CsvPart] = []
    run: list[dict[str, Any]] = []
    run_key: tuple[str, str | None] | None = None

    def close() -> None:
        if run and run_key is not None:
            parts.append(CsvPart(run_key[0], csv=to_csv(run_key[0], run, run_key[1])))
        run.clear()

    for item in items:
        env = envelope(item)
        header = env["header"]
        record_type, version = header["record_type"], header.get("version")
        if len(header) > (2 if version else 1) or any(key not in _ITEM_KEYS for key in env):
            close()
            run_key = None
            if parts and parts[-1].json is not None:
                parts[-1].json.append(env)
            else:
                parts.append(CsvPart(record_type, json=[env]))
            continue
        if run_key != (record_type, version):
            close()
            run_key = (record_type, version)
        record = dict(env["record"])
        if "attachment" in env:
            record["attachment"] = env["attachment"]
        run.append(record)
    close()
    return parts

"""The declarative CRM -> canonical mapping, loaded from one YAML file and validated at start-up.

Why data and not code: every Salesforce org is customised differently (field names, flags, status picklists),
and the connector must serve a new org with a new file, not a new release. The file also names the fields the
connector writes back, so the publisher can tell its own writes (echoes) from an admin's changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connector.errors import ConfigurationError

RECORD_TYPES = (
    "organization",
    "customer",
    "user",
    "job",
    "appointment",
    "attachment",
    "billing_item",
    "billing_document",
)
DEFAULT_MAPPING = Path(__file__).parent / "mappings" / "salesforce_default.yaml"
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][\w.]*)\}")


class MappingFileError(ConfigurationError):
    """The mapping file is unreadable or invalid; names the file, the key and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSpec(_Strict):
    """Where one canonical value comes from: a CRM field path, a constant, a template or an earlier record."""

    field: str | None = None
    const: Any = None
    template: str | None = None
    ref: str | None = None
    map: dict[str, Any] | None = None
    default: Any = None
    format: Literal["string", "datetime", "date", "int", "float", "bool"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ValueSpec:
        sources = [s for s in ("field", "template", "ref") if getattr(self, s) is not None]
        if len(sources) > 1:
            raise ValueError(f"give only one of field, template, ref (got {', '.join(sources)})")
        if not sources and self.const is None:
            raise ValueError("needs one of field, const, template or ref")
        return self

    def crm_fields(self) -> list[str]:
        if self.field:
            return [self.field]
        return _TEMPLATE_FIELD.findall(self.template or "")

    @cached_property
    def resolver(self) -> Resolver:
        """This value compiled once (paths split, template parsed, format chosen): it runs for every
        mapped value of every changed row."""
        return _compile(self)


def _coerce_value_spec(value: Any) -> Any:
    return {"field": value} if isinstance(value, str) else value


class RecordSpec(_Strict):
    """One canonical record built from a CRM row; emitted only when `when` (a CRM field path) has a value."""

    type: Literal[
        "organization",
        "customer",
        "user",
        "job",
        "appointment",
        "attachment",
        "billing_item",
        "billing_document",
    ]
    external_id: ValueSpec
    fields: dict[str, ValueSpec] = Field(default_factory=dict)
    when: str | None = None

    @cached_property
    def when_reader(self) -> Reader | None:
        return _reader(self.when) if self.when else None

    @cached_property
    def plan(self) -> tuple[tuple[tuple[str, ...], str, Resolver], ...]:
        """(parent keys, leaf key, resolver) per field: `home_address.street_1` nests, split once."""
        steps = []
        for path, value in self.fields.items():
            *parents, leaf = path.split(".")
            steps.append((tuple(parents), leaf, value.resolver))
        return tuple(steps)

    @field_validator("external_id", mode="before")
    @classmethod
    def _external_id(cls, value: Any) -> Any:
        return _coerce_value_spec(value)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: _coerce_value_spec(v) for k, v in value.items()}


class FlagSpec(_Strict):
    field: str
    when: Literal["not_null", "true"] = "not_null"

    def soql_condition(self) -> str:
        return f"{self.field} != null" if self.when == "not_null" else f"{self.field} = true"

    @cached_property
    def reader(self) -> Reader:
        return _reader(self.field)

    def is_set(self, row: Mapping[str, Any]) -> bool:
        """The row's flag, read as `soql_condition` selects it (checked for every row a cycle reads)."""
        value = self.reader(row)
        return value is True if self.when == "true" else value not in (None, "", False)


class WriteBackSpec(_Strict):
    """CRM field names the connector writes. None disables that write."""

    last_synced: str | None = "Dispatch_Last_Synced__c"
    error: str | None = "Dispatch_Error__c"
    last_updated_from_dispatch: str | None = "Last_Updated_from_Dispatch__c"
    status: str | None = "Dispatch_Status__c"
    status_reason: str | None = "Dispatch_Status_Reason__c"
    milestones: dict[str, str] = Field(default_factory=dict)
    appointment_start: str | None = None
    appointment_end: str | None = None
    survey_rating: str | None = None
    survey_comments: str | None = None
    notes: NotesSpec | None = None
    error_max_length: int = 255

    def all_fields(self) -> set[str]:
        names = {
            self.last_synced,
            self.error,
            self.last_updated_from_dispatch,
            self.status,
            self.status_reason,
            self.appointment_start,
            self.appointment_end,
            self.survey_rating,
            self.survey_comments,
            *self.milestones.values(),
        }
        return {name for name in names if name}


class NotesSpec(_Strict):
    """Write Dispatch notes and attachments as CRM records (one per note), linked to the parent record."""

    object: str
    parent_field: str
    fields: dict[str, str] = Field(default_factory=dict)  # CRM field -> note attribute ("deleted" is a bool)


class PendingSpec(_Strict):
    """'Dispatch Pending' mode: publish only records whose pending flag is set, then clear the flag."""

    field: str
    clear_value: Any = False


class InboundJobSpec(_Strict):
    """Jobs born in Dispatch: create (or update) a CRM record from the job event's attributes."""

    enabled: bool = False
    fields: dict[str, str] = Field(default_factory=dict)  # CRM field -> job attribute path
    constants: dict[str, Any] = Field(default_factory=dict)


class ObjectSpec(_Strict):
    """How one CRM object (WorkOrder, Account, ...) is published and written back."""

    flag: FlagSpec
    select: list[str]
    relevant: list[str] | None = None
    records: list[RecordSpec]
    status_field: str | None = None
    status_map: dict[str, str] = Field(default_factory=dict)
    on_unflag: Literal["ignore", "cancel"] = "ignore"
    on_delete: Literal["ignore", "cancel"] = "ignore"
    pending: PendingSpec | None = None
    write_back: WriteBackSpec = Field(default_factory=WriteBackSpec)
    inbound_jobs: InboundJobSpec = Field(default_factory=InboundJobSpec)

    @model_validator(mode="after")
    def _consistent(self) -> ObjectSpec:
        selected = {f.lower() for f in self.select}
        if "id" not in selected:
            raise ValueError("select must include Id")
        for name in self.referenced_fields():
            if name.lower() not in selected:
                raise ValueError(f"field {name!r} is used but not in select")
        echo = {f.lower() for f in self.relevant_fields()} & {f.lower() for f in self.write_back.all_fields()}
        if echo:
            raise ValueError(
                f"relevant fields {sorted(echo)} are also written back: every write-back would "
                "republish the record; remove them from relevant"
            )
        types = [r.type for r in self.records]
        for spec in self.records:
            for value in (spec.external_id, *spec.fields.values()):
                if value.ref and value.ref not in types[: types.index(spec.type)]:
                    raise ValueError(f"{spec.type} refers to {value.ref!r}, which is not an earlier record")
        return self

    def referenced_fields(self) -> list[str]:
        names: list[str] = [self.flag.field]
        for spec in self.records:
            for value in (spec.external_id, *spec.fields.values()):
                names.extend(value.crm_fields())
            if spec.when:
                names.append(spec.when)
        if self.status_field:
            names.append(self.status_field)
        if self.pending:
            names.append(self.pending.field)
        return names

    def relevant_fields(self) -> list[str]:
        """Fields whose change publishes; by default every field the records use, plus the flag."""
        return list(self.relevant_names)

    @cached_property
    def relevant_names(self) -> tuple[str, ...]:
        """relevant_fields, worked out once: the publisher hashes them for every row it reads."""
        if self.relevant is not None:
            return tuple(self.relevant)
        seen: dict[str, None] = {}
        for name in self.referenced_fields():
            if not (self.pending and name == self.pending.field):
                seen.setdefault(name, None)
        return tuple(seen)

    @cached_property
    def relevant_readers(self) -> tuple[tuple[str, Reader], ...]:
        """(name, reader) of the relevant fields, sorted by name: the hash's input order."""
        return tuple((name, _reader(name)) for name in sorted(self.relevant_names))

    def primary_record(self) -> RecordSpec:
        """The record whose external id identifies the CRM row (job for a work order, ...): the last one."""
        return self.records[-1]


class LogObjectSpec(_Strict):
    """Mirror sync-log rows into a CRM object shaped like the playbook's Dispatch_Log__c."""

    object: str
    levels: list[str] = Field(default_factory=lambda: ["error"])

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"debug", "info", "warning", "error"}
        if unknown:
            raise ValueError(f"unknown level(s) {sorted(unknown)}; use debug, info, warning, error")
        return value

    fields: dict[
        str, Literal["message", "crm_record_id", "external_id", "entity", "direction", "msg_id", "level"]
    ]


class Mapping_(_Strict):
    version: Literal[1] = 1
    objects: dict[str, ObjectSpec]
    log_object: LogObjectSpec | None = None


class MappingConfig:
    """A validated mapping file."""

    def __init__(self, spec: Mapping_, source: Path) -> None:
        self.spec = spec
        self.source = source

    @property
    def objects(self) -> dict[str, ObjectSpec]:
        return self.spec.objects

    def object(self, name: str) -> ObjectSpec:
        try:
            return self.spec.objects[name]
        except KeyError:
            known = ", ".join(self.spec.objects)
            raise MappingFileError(
                f"{self.source}: no mapping for CRM object {name!r} (mapped: {known})"
            ) from None


def load_mapping(path: str | Path | None = None) -> MappingConfig:
    source = Path(path) if path else DEFAULT_MAPPING
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingFileError(f"mapping file {source}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise MappingFileError(
            f"mapping file {source}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise MappingFileError(f"mapping file {source}: not valid YAML ({exc})") from None
    try:
        return MappingConfig(Mapping_.model_validate(raw), source)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise MappingFileError(f"mapping file {source}: {problems}") from None


# --- building canonical records ---------------------------------------------------------------------------
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


def _reader(path: str) -> Reader:
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


def _source(spec: ValueSpec) -> Resolver:
    """Where the raw value comes from, before the value map, the default and the format."""
    if spec.ref:
        ref = spec.ref
        return lambda _row, refs: refs.get(ref)
    if spec.template is not None:
        return _template_source(spec.template)
    if spec.field:
        read = _reader(spec.field)
        return lambda row, _refs: read(row)
    const = spec.const
    return lambda _row, _refs: const


def _template_source(template: str) -> Resolver:
    """`{A}-{B}`: None when any field is empty (a half-built external id would name another record)."""
    pieces = _TEMPLATE_FIELD.split(template)  # literal, field, literal, field, ..., literal
    readers = [_reader(name) for name in pieces[1::2]]
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


def _compile(spec: ValueSpec) -> Resolver:
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


def build_records(obj: ObjectSpec, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Canonical records for one CRM row, in the mapping's (dependency) order, as
    `{"record_type": ..., "record": {...}}`. Empty values are left out: Dispatch treats absent as
    unchanged."""
    refs: dict[str, str] = {}
    built: list[dict[str, Any]] = []
    for spec in obj.records:
        if spec.when_reader and spec.when_reader(row) in (None, "", False):
            continue
        external_id = spec.external_id.resolver(row, refs)
        if external_id is None or external_id == "":
            continue
        record: dict[str, Any] = {"external_id": str(external_id)}
        for parents, leaf, resolver in spec.plan:
            value = resolver(row, refs)
            if value is None or value == "":
                continue
            target = record
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
        refs[spec.type] = str(external_id)
        built.append({"record_type": spec.type, "record": record})
    return built


# One encoder, built once: json.dumps with options builds a new one per call. Same bytes as
# json.dumps(values, sort_keys=True, default=str, separators=(",", ":")), so stored hashes stay valid.
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


def relevant_hash(obj: ObjectSpec, row: Mapping[str, Any]) -> str:
    """Stable hash of the relevant fields: equal hash means nothing worth publishing changed."""
    return hashlib.sha256(_HASH_ENCODER.encode(relevant_snapshot(obj, row)).encode()).hexdigest()


def relevant_snapshot(obj: ObjectSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    """The relevant fields' values, by name in sorted order (the hash's input)."""
    return {name: read(row) for name, read in obj.relevant_readers}


def soql_select(obj: ObjectSpec, object_name: str, extra: Iterable[str] = ()) -> str:
    fields: dict[str, None] = dict.fromkeys([*obj.select, "SystemModstamp", *extra])
    return f"SELECT {', '.join(fields)} FROM {object_name}"

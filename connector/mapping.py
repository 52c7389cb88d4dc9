"""The declarative CRM -> canonical mapping, loaded from one YAML file and validated at start-up.

Why data and not code: every Salesforce org is customised differently (field names, flags, status picklists),
and the connector must serve a new org with a new file, not a new release. The file also names the fields the
connector writes back, so the publisher can tell its own writes (echoes) from an admin's changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from connector.errors import ConfigurationError
from connector.mapping_values import (
    TEMPLATE_FIELD,
    Reader,
    Resolver,
    compile_value,
)
from connector.mapping_values import (
    RecordBuildError as RecordBuildError,  # raised by build_records: part of this module's API
)
from connector.mapping_values import (
    reader as path_reader,
)
from connector.mapping_writes import (
    CalendarEventsSpec as CalendarEventsSpec,
)
from connector.mapping_writes import (
    FieldRecordSpec as FieldRecordSpec,
)
from connector.mapping_writes import (
    InboundJobSpec as InboundJobSpec,
)
from connector.mapping_writes import (
    InboxMessagesSpec as InboxMessagesSpec,
)
from connector.mapping_writes import (
    LogObjectSpec as LogObjectSpec,
)
from connector.mapping_writes import (
    LookupSpec as LookupSpec,
)
from connector.mapping_writes import (
    NotesSpec as NotesSpec,
)
from connector.mapping_writes import (
    StrictModel,
)
from connector.mapping_writes import (
    WriteBackSpec as WriteBackSpec,
)

DEFAULT_MAPPING = Path(__file__).parent / "mappings" / "salesforce_default.yaml"


class MappingFileError(ConfigurationError):
    """The mapping file is unreadable or invalid; names the file, the key and what is wrong."""


class ValueSpec(StrictModel):
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
        return TEMPLATE_FIELD.findall(self.template or "")

    @cached_property
    def resolver(self) -> Resolver:
        """This value compiled once (paths split, template parsed, format chosen): it runs for every
        mapped value of every changed row."""
        return compile_value(self)


def _coerce_value_spec(value: Any) -> Any:
    return {"field": value} if isinstance(value, str) else value


class RecordSpec(StrictModel):
    """One canonical record built from a CRM row; emitted only when `when` (a CRM field path) has a value."""

    type: str
    external_id: ValueSpec
    fields: dict[str, ValueSpec] = Field(default_factory=dict)
    when: str | None = None

    @cached_property
    def when_reader(self) -> Reader | None:
        return path_reader(self.when) if self.when else None

    @cached_property
    def plan(self) -> tuple[tuple[tuple[str, ...], str, Resolver], ...]:
        """(parent keys, leaf key, resolver) per field: `home_address.street_1` nests, split once."""
        steps = []
        for path, value in self.fields.items():
            *parents, leaf = path.split(".")
            steps.append((tuple(parents), leaf, value.resolver))
        return tuple(steps)

    @cached_property
    def has_lists(self) -> bool:
        """Whether a field path has a numeric segment (`contacts.0.first_name`): the record holds lists."""
        return any(part.isdigit() for path in self.fields for part in path.split("."))

    @cached_property
    def list_elements(self) -> tuple[tuple[tuple[str, ...], ...], ...]:
        """Per field (in `plan` order): the list elements its value fills (`("contacts", "0")`). A constant
        fills only an element that is itself the value (`external_ids.0`): constants alone never keep an
        object element, so a phone method with no number is dropped."""
        elements = []
        for path, value in self.fields.items():
            parts = path.split(".")
            sourced = bool(value.field or value.template or value.ref)
            elements.append(
                tuple(
                    tuple(parts[: i + 1])
                    for i, part in enumerate(parts)
                    if part.isdigit() and (sourced or i == len(parts) - 1)
                )
            )
        return tuple(elements)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        known = known_record_types()
        if value not in known:
            raise ValueError(f"unknown record type {value!r}; the back ends know: {', '.join(sorted(known))}")
        return value

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


class FlagSpec(StrictModel):
    field: str
    when: Literal["not_null", "true"] = "not_null"

    def soql_condition(self) -> str:
        return f"{self.field} != null" if self.when == "not_null" else f"{self.field} = true"

    @cached_property
    def reader(self) -> Reader:
        return path_reader(self.field)

    def is_set(self, row: Mapping[str, Any]) -> bool:
        """The row's flag, read as `soql_condition` selects it (checked for every row a cycle reads)."""
        value = self.reader(row)
        return value is True if self.when == "true" else value not in (None, "", False)


class PendingSpec(StrictModel):
    """'Dispatch Pending' mode: publish only records whose pending flag is set, then clear the flag."""

    field: str
    clear_value: Any = False


class RouteSpec(StrictModel):
    """Which back end a record goes to, by a field's value (a region, a brand, a trade)."""

    field: str
    map: dict[str, str]
    default: str | None = None

    @cached_property
    def reader(self) -> Reader:
        return path_reader(self.field)

    def backend_for(self, row: Mapping[str, Any]) -> str | None:
        value = self.reader(row)
        return self.map.get("" if value is None else str(value), self.default)

    def backends(self) -> set[str]:
        return {*self.map.values(), *([self.default] if self.default else [])}


class ObjectSpec(StrictModel):
    """How one CRM object (WorkOrder, Account, ...) is published and written back.

    `backend` names the back end its records go to (default: the only, or first, configured one); `route`
    chooses it by a field's value instead."""

    flag: FlagSpec
    backend: str | None = None
    route: RouteSpec | None = None
    select: list[str]
    relevant: list[str] | None = None
    records: list[RecordSpec]
    # Records for a named back end whose record types differ (a work order routed to Dispatch v3 instead of
    # Dispatch Connect's organization + customer + job); any other back end gets `records`.
    backend_records: dict[str, list[RecordSpec]] = Field(default_factory=dict)
    status_field: str | None = None
    status_map: dict[str, str] = Field(default_factory=dict)
    on_unflag: Literal["ignore", "cancel"] = "ignore"
    on_delete: Literal["ignore", "cancel"] = "ignore"
    pending: PendingSpec | None = None
    write_back: WriteBackSpec = Field(default_factory=WriteBackSpec)
    inbound_jobs: InboundJobSpec = Field(default_factory=InboundJobSpec)
    # Where `match` / `availability --work-order` read the record's place and needs (optional).
    lookups: LookupSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ObjectSpec:
        selected = {f.lower() for f in self.select}
        if self.backend and self.route:
            raise ValueError("give either backend or route, not both")
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
        for records in (self.records, *self.backend_records.values()):
            if not records:
                raise ValueError("records must name at least one record")
            types = [r.type for r in records]
            for spec in records:
                for value in (spec.external_id, *spec.fields.values()):
                    if value.ref and value.ref not in types[: types.index(spec.type)]:
                        raise ValueError(
                            f"{spec.type} refers to {value.ref!r}, which is not an earlier record"
                        )
        return self

    def referenced_fields(self) -> list[str]:
        names: list[str] = [self.flag.field]
        for spec in (s for records in (self.records, *self.backend_records.values()) for s in records):
            for value in (spec.external_id, *spec.fields.values()):
                names.extend(value.crm_fields())
            if spec.when:
                names.append(spec.when)
        if self.status_field:
            names.append(self.status_field)
        if self.pending:
            names.append(self.pending.field)
        if self.route:
            names.append(self.route.field)
        return names

    def routed_backends(self, default: str) -> set[str]:
        """Every back end this object's records may go to."""
        if self.route:
            return self.route.backends()
        return {self.backend or default}

    def backend_for(self, row: Mapping[str, Any], default: str) -> str | None:
        """The back end this row goes to; None when a route maps its value to none (and has no default)."""
        if self.route:
            return self.route.backend_for(row)
        return self.backend or default

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
        return tuple((name, path_reader(name)) for name in sorted(self.relevant_names))

    def records_for(self, backend: str | None = None) -> list[RecordSpec]:
        """The records a row becomes for this back end: its own `backend_records`, else `records`."""
        return self.backend_records.get(backend, self.records) if backend else self.records

    def primary_record(self, backend: str | None = None) -> RecordSpec:
        """The record whose external id identifies the CRM row (job for a work order, ...): the last one."""
        return self.records_for(backend)[-1]


class Mapping_(StrictModel):
    version: Literal[1] = 1
    objects: dict[str, ObjectSpec]
    log_object: LogObjectSpec | None = None
    inbox_messages: InboxMessagesSpec | None = None
    calendar_events: CalendarEventsSpec | None = None


class MappingConfig:
    """A validated mapping file."""

    def __init__(self, spec: Mapping_, source: Path) -> None:
        self.spec = spec
        self.source = source

    @property
    def objects(self) -> dict[str, ObjectSpec]:
        return self.spec.objects

    def check_backends(self, configured: Mapping[str, tuple[str, ...]], default: str) -> None:
        """Every back end the mapping routes to is configured and accepts the object's record types.

        `configured` maps each configured back end to the record types its destination takes. Run once
        at start (the daemon, publish): a mistake is named with the file, the key and the problem."""
        for name, spec in self.objects.items():
            for key, backend in _route_keys(spec):
                if backend not in configured:
                    raise MappingFileError(
                        f"mapping file {self.source}: objects.{name}.{key}: back end {backend!r} is not "
                        f"configured (configured: {', '.join(configured)})"
                    )
            for backend in spec.routed_backends(default):
                key = f"backend_records.{backend}" if backend in spec.backend_records else "records"
                for index, record in enumerate(spec.records_for(backend)):
                    if record.type not in configured[backend]:
                        raise MappingFileError(
                            f"mapping file {self.source}: objects.{name}.{key}.{index}.type: back end "
                            f"{backend!r} takes no {record.type!r} records "
                            f"(it takes: {', '.join(configured[backend])})"
                        )

    def object(self, name: str) -> ObjectSpec:
        try:
            return self.spec.objects[name]
        except KeyError:
            known = ", ".join(self.spec.objects)
            raise MappingFileError(
                f"{self.source}: no mapping for CRM object {name!r} (mapped: {known})"
            ) from None


def _route_keys(spec: ObjectSpec) -> list[tuple[str, str]]:
    if spec.backend:
        return [("backend", spec.backend)]
    if spec.route is None:
        return []
    keys = [(f"route.map.{value}", backend) for value, backend in spec.route.map.items()]
    return keys + ([("route.default", spec.route.default)] if spec.route.default else [])


def known_record_types() -> set[str]:
    """Record types some registered back end takes (a mapping naming another is refused at load)."""
    from connector.registry import backend_type, known_types

    return {rtype for name in known_types() for rtype in backend_type(name).record_types}


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


def build_records(
    obj: ObjectSpec, row: Mapping[str, Any], backend: str | None = None
) -> list[dict[str, Any]]:
    """Canonical records for one CRM row, in the mapping's (dependency) order, as
    `{"record_type": ..., "record": {...}}`. Empty values are left out: Dispatch treats absent as
    unchanged."""
    refs: dict[str, str] = {}
    built: list[dict[str, Any]] = []
    for spec in obj.records_for(backend):
        if spec.when_reader and spec.when_reader(row) in (None, "", False):
            continue
        external_id = spec.external_id.resolver(row, refs)
        if external_id is None or external_id == "":
            continue
        record: dict[str, Any] = {"external_id": str(external_id)}
        filled: set[tuple[str, ...]] = set()
        for index, (parents, leaf, resolver) in enumerate(spec.plan):
            value = resolver(row, refs)
            if value is None or value == "":
                continue
            target = record
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
            if spec.has_lists:
                filled.update(spec.list_elements[index])
        refs[spec.type] = str(external_id)
        built.append(
            {"record_type": spec.type, "record": _as_lists(record, filled) if spec.has_lists else record}
        )
    return built


def _as_lists(node: dict[str, Any], filled: set[tuple[str, ...]], at: tuple[str, ...] = ()) -> dict[str, Any]:
    """Objects keyed by numbers become lists in number order (`contacts.1.first_name` is the second
    contact). An element no CRM value filled (only constants, or nothing) is dropped and the list closes
    up, so `contacts.1` of a work order with one contact leaves one contact."""
    for key, value in list(node.items()):
        if not isinstance(value, dict):
            continue
        value = _as_lists(value, filled, (*at, key))
        if value and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int) if (*at, key, k) in filled]
        node[key] = value
    return node


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

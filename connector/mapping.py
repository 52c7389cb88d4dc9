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
from pydantic import Field, ValidationError, model_validator

from connector.errors import ConfigurationError
from connector.mapping_children import ChildSpec as ChildSpec
from connector.mapping_children import check_refs, check_selected, child_reader, scoped_paths
from connector.mapping_records import ConditionSpec as ConditionSpec
from connector.mapping_records import RecordSpec as RecordSpec
from connector.mapping_records import ValueSpec as ValueSpec
from connector.mapping_records import build_records as build_spec_records
from connector.mapping_records import known_record_types as known_record_types
from connector.mapping_records import record_identity as record_identity
from connector.mapping_values import BLOB_MARKER as BLOB_MARKER
from connector.mapping_values import Reader
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
    # Child relationships read with the object in its one query (connector.mapping_children).
    children: dict[str, ChildSpec] = Field(default_factory=dict)
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
        for records in (self.records, *self.backend_records.values()):
            if not records:
                raise ValueError("records must name at least one record")
            if all(spec.each for spec in records):
                raise ValueError(
                    "records need one record that is not `each`: the last such record is the primary record"
                )
        check_selected(self.scoped_paths, self.select, self.children)
        for name in self.referenced_fields():
            if name.lower() not in selected and name not in self.children:
                raise ValueError(f"field {name!r} is used but not in select")
        echo = {f.lower() for f in self.relevant_fields()} & {f.lower() for f in self.write_back.all_fields()}
        if echo:
            raise ValueError(
                f"relevant fields {sorted(echo)} are also written back: every write-back would "
                "republish the record; remove them from relevant"
            )
        check_refs(self._keyed_records(only=key) for key in self._record_lists())
        return self

    def _record_lists(self) -> list[str]:
        return ["records", *(f"backend_records.{name}" for name in self.backend_records)]

    def _keyed_records(self, only: str | None = None) -> list[tuple[str, RecordSpec]]:
        """(mapping key, record) of every record, `records.0` or `backend_records.<back end>.0`."""
        lists = [("records", self.records)] + [
            (f"backend_records.{k}", v) for k, v in self.backend_records.items()
        ]
        return [
            (f"{key}.{i}", spec)
            for key, specs in lists
            if only in (None, key)
            for i, spec in enumerate(specs)
        ]

    @cached_property
    def scoped_paths(self) -> tuple[tuple[str, str | None, str], ...]:
        """(key, child relationship or None, path) of every CRM path the records read."""
        return tuple(scoped_paths(self._keyed_records(), self.children))

    @cached_property
    def child_paths(self) -> dict[str, tuple[str, ...]]:
        """Per child relationship the records use: the child paths they read (the hash covers those)."""
        used: dict[str, dict[str, None]] = {}
        for _key, scope, path in self.scoped_paths:
            if scope is not None:
                used.setdefault(scope, {}).setdefault(path, None)
        for _key, spec in self._keyed_records():
            for relationship in _relationships(spec):
                used.setdefault(relationship, {})
        return {name: tuple(paths) for name, paths in used.items()}

    @cached_property
    def has_blobs(self) -> bool:
        """Whether a record carries a file body (the publisher downloads those before the outbox commit)."""
        return any(
            value.blob or any(inner.blob for inner in (value.fields or {}).values())
            for _key, spec in self._keyed_records()
            for _value_key, value in spec.values()
        )

    def referenced_fields(self) -> list[str]:
        """The object's fields the mapping reads, then each child relationship the records use."""
        names: list[str] = [self.flag.field]
        names.extend(path for _key, scope, path in self.scoped_paths if scope is None)
        if self.status_field:
            names.append(self.status_field)
        if self.pending:
            names.append(self.pending.field)
        if self.route:
            names.append(self.route.field)
        return names + list(self.child_paths)

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
        """(name, reader) of the relevant fields, sorted by name: the hash's input order. A child
        relationship reads the values its child rows give the records, row by row."""
        paths = self.child_paths
        return tuple(
            (name, child_reader(name, paths.get(name, ())) if name in self.children else path_reader(name))
            for name in sorted(self.relevant_names)
        )

    def records_for(self, backend: str | None = None) -> list[RecordSpec]:
        """The records a row becomes for this back end: its own `backend_records`, else `records`."""
        return self.backend_records.get(backend, self.records) if backend else self.records

    def primary_record(self, backend: str | None = None) -> RecordSpec:
        """The record whose external id identifies the CRM row (job for a work order, ...): the last one
        that is not an `each` record (those are one per child row)."""
        return [spec for spec in self.records_for(backend) if spec.each is None][-1]


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


def _relationships(spec: RecordSpec) -> list[str]:
    """The child relationships a record reads: its `each`, and its `children` lists."""
    names = [spec.each] if spec.each else []
    return names + [value.children for _key, value in spec.values() if value.children]


def _route_keys(spec: ObjectSpec) -> list[tuple[str, str]]:
    if spec.backend:
        return [("backend", spec.backend)]
    if spec.route is None:
        return []
    keys = [(f"route.map.{value}", backend) for value, backend in spec.route.map.items()]
    return keys + ([("route.default", spec.route.default)] if spec.route.default else [])


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
    `{"record_type": ..., "record": {...}}` (connector.mapping_records.build_records). Empty values are left
    out: Dispatch treats absent as unchanged."""
    return build_spec_records(obj.records_for(backend), row)


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
    """The object's SELECT: its fields, then one subquery per child relationship (read in the same call)."""
    fields: dict[str, None] = dict.fromkeys([*obj.select, "SystemModstamp", *extra])
    subqueries = [child.subquery(name) for name, child in obj.children.items()]
    return f"SELECT {', '.join([*fields, *subqueries])} FROM {object_name}"

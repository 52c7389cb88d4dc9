"""The records a CRM row becomes: value and record specs of the mapping file, and `build_records`.

Split from connector.mapping (which holds the per-object schema and loading) so each file stays readable.
`build_records` runs for every changed row a cycle reads, so every spec compiles once (cached_property)
into closures from connector.mapping_values; building does no I/O: a file body (`blob`) is left as a
marker that sync.outbound resolves before the outbox commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from connector.mapping_values import (
    TEMPLATE_FIELD,
    FieldsPlan,
    Reader,
    Resolver,
    child_rows,
    compile_value,
    with_parent,
)
from connector.mapping_values import reader as path_reader
from connector.mapping_writes import StrictModel

PARENT = "$parent."
#: Top-level keys of the canonical item a record's `envelope` may not set, and the mapping key that does.
ENVELOPE_OWN_KEYS = {
    "header": "`header` and `version`",
    "record": "`fields`",
    "attachment": "`attachment: {blob: ...}`",
}
DEFAULT_BLOB_BYTES = 25 * 1024 * 1024


class ConditionSpec(StrictModel):
    """When a value is emitted: `{field}` has a value, `{field, equals: x}`, or `{field, in: [x, y]}`."""

    field: str
    in_: list[Any] | None = Field(None, alias="in")
    equals: Any = None

    @model_validator(mode="after")
    def _one_test(self) -> ConditionSpec:
        if self.in_ is not None and self.equals is not None:
            raise ValueError("a condition takes `in` or `equals`, not both")
        return self


class ValueSpec(StrictModel):
    """Where one canonical value comes from: a CRM field path, a constant, a template, an earlier record,
    a child relationship's rows (`children` + `fields`) or a file body (`blob`)."""

    field: str | None = None
    const: Any = None
    template: str | None = None
    ref: str | None = None
    children: str | None = None
    fields: dict[str, ValueSpec] | None = None
    blob: str | None = None
    max_bytes: int = Field(DEFAULT_BLOB_BYTES, gt=0)
    map: dict[str, Any] | None = None
    default: Any = None
    format: Literal["string", "datetime", "datetime_z", "date", "int", "float", "bool", "json"] | None = None
    when: ConditionSpec | None = None
    split: str | None = None
    wrap: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ValueSpec:
        sources = [
            s for s in ("field", "template", "ref", "children", "blob") if getattr(self, s) is not None
        ]
        if len(sources) > 1:
            raise ValueError(
                f"give only one of field, template, ref, children, blob (got {', '.join(sources)})"
            )
        if not sources and self.const is None:
            raise ValueError("needs one of field, const, template, ref, children or blob")
        if (self.children is None) != (self.fields is None):
            raise ValueError("`children` (a child relationship) and `fields` (its list items) go together")
        if self.wrap is not None and self.split is None:
            raise ValueError("`wrap` names the key of each item of a `split`: add `split`")
        if self.split is not None and (self.children or self.blob or self.format == "json"):
            raise ValueError("`split` reads a text field: not with children, blob or format: json")
        if self.split == "":
            raise ValueError("`split` needs a separator such as ';' or ','")
        if (self.children or self.blob) and (self.map is not None or self.format is not None):
            raise ValueError("`map` and `format` apply to a field's value, not to children or blob")
        return self

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        return _coerce_fields(value)

    def crm_fields(self) -> list[str]:
        """The paths this value reads from its own row (a `children` list's items read child rows)."""
        names = [self.field] if self.field else TEMPLATE_FIELD.findall(self.template or "")
        if self.blob:
            names.append(self.blob)
        if self.when:
            names.append(self.when.field)
        return names

    @cached_property
    def resolver(self) -> Resolver:
        """This value compiled once (paths split, template parsed, format chosen): it runs for every
        mapped value of every changed row."""
        return compile_value(self)


def _coerce_value_spec(value: Any) -> Any:
    return {"field": value} if isinstance(value, str) else value


def _coerce_fields(value: Any) -> Any:
    return {k: _coerce_value_spec(v) for k, v in value.items()} if isinstance(value, dict) else value


class RecordSpec(StrictModel):
    """One canonical record built from a CRM row; emitted only when `when` (a CRM field path) has a value.

    `each: <child relationship>` builds one record per child row instead (paths read the child row,
    `$parent.<path>` the parent's). `version`, `header` and `attachment` fill the envelope next to the
    record, `envelope` any other top-level key (an offer's `ui_options`); `id_field` names the key that
    carries the identity (`none`: not sent, kept as `identity`)."""

    type: str
    external_id: ValueSpec
    fields: dict[str, ValueSpec] = Field(default_factory=dict)
    when: str | None = None
    each: str | None = None
    version: str | None = None
    header: dict[str, ValueSpec] = Field(default_factory=dict)
    attachment: ValueSpec | None = None
    envelope: dict[str, ValueSpec] = Field(default_factory=dict)
    id_field: str = "external_id"

    @cached_property
    def builder(self) -> Builder:
        """This record compiled once into one closure: it runs for every changed row."""
        return _builder(self)

    @cached_property
    def when_reader(self) -> Reader | None:
        return path_reader(self.when) if self.when else None

    @cached_property
    def plan(self) -> FieldsPlan:
        return FieldsPlan(self.fields, f"{self.type}.")

    @cached_property
    def header_plan(self) -> FieldsPlan | None:
        return FieldsPlan(self.header, f"{self.type}.header.", optional_map=True) if self.header else None

    @cached_property
    def envelope_plan(self) -> FieldsPlan | None:
        return (
            FieldsPlan(self.envelope, f"{self.type}.envelope.", optional_map=True) if self.envelope else None
        )

    @cached_property
    def attachment_resolver(self) -> Resolver | None:
        return compile_value(self.attachment, f"{self.type}.attachment") if self.attachment else None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        known = known_record_types()
        if value not in known:
            raise ValueError(f"unknown record type {value!r}; the back ends know: {', '.join(sorted(known))}")
        return value

    @field_validator("external_id", "attachment", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        return _coerce_value_spec(value)

    @field_validator("fields", "header", "envelope", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        return _coerce_fields(value)

    @field_validator("envelope")
    @classmethod
    def _envelope_keys(cls, value: dict[str, ValueSpec]) -> dict[str, ValueSpec]:
        for path in value:
            top = path.split(".", 1)[0]
            if top in ENVELOPE_OWN_KEYS:
                raise ValueError(
                    f"envelope key {path!r}: {top!r} is the envelope's own key (use {ENVELOPE_OWN_KEYS[top]})"
                )
            if not top or top.isdigit():
                raise ValueError(f"envelope key {path!r}: a top-level key must be a name, not {top!r}")
        return value

    @model_validator(mode="after")
    def _attachment_is_a_file(self) -> RecordSpec:
        if self.attachment is not None and self.attachment.blob is None:
            raise ValueError("attachment must be a file body: {blob: <ContentVersion id field>}")
        if not self.id_field:
            raise ValueError("id_field names the payload key of the identity, or `none`")
        return self

    def values(self) -> Iterator[tuple[str, ValueSpec]]:
        """(key, value) of every value of the record, `external_id` first, keys as in error messages."""
        yield "external_id", self.external_id
        for path, value in self.fields.items():
            yield f"fields.{path}", value
        for path, value in self.header.items():
            yield f"header.{path}", value
        if self.attachment is not None:
            yield "attachment", self.attachment
        for path, value in self.envelope.items():
            yield f"envelope.{path}", value


def known_record_types() -> set[str]:
    """Record types some registered back end takes (a mapping naming another is refused at load)."""
    from connector.registry import backend_type, known_types

    return {rtype for name in known_types() for rtype in backend_type(name).record_types}


def value_paths(key: str, value: ValueSpec, scope: str | None) -> Iterator[tuple[str, str | None, str]]:
    """(key, scope, path) of every CRM path a value reads: scope None is the object's row, else the child
    relationship whose rows it reads. `$parent.` paths are left as written (the caller checks them)."""
    for path in value.crm_fields():
        yield key, scope, path
    for path, inner in (value.fields or {}).items():
        yield from value_paths(f"{key}.fields.{path}", inner, value.children)


def record_identity(built: Mapping[str, Any]) -> str:
    """The identity the outbox de-duplicates and matches acks by: `identity` when the record's id is sent
    under another key (or not at all), else its external_id."""
    identity = built.get("identity")
    return str(identity) if identity is not None else str(built["record"]["external_id"])


def build_records(specs: list[RecordSpec], row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Canonical records for one CRM row, in the mapping's (dependency) order, as
    `{"record_type": ..., "record": {...}}` (+ `version`, `header`, `attachment`, `envelope`, `identity` when
    the mapping says so). Empty values are left out: Dispatch treats absent as unchanged."""
    refs: dict[str, str] = {}
    built: list[dict[str, Any]] = []
    for spec in specs:
        build = spec.builder
        if spec.each is None:
            record = build(row, refs)
            if record is not None:
                refs[spec.type] = record[1]
                built.append(record[0])
            continue
        for child in child_rows(row, spec.each):
            record = build(with_parent(child, row), refs)
            if record is not None:
                built.append(record[0])
    return built


Builder = Callable[[Mapping[str, Any], Mapping[str, str]], tuple[dict[str, Any], str] | None]


def _builder(spec: RecordSpec) -> Builder:
    """One record's build as a closure: (built record, identity), or None when its condition or identity
    is empty. The envelope keys are added only by a spec that has them."""
    when, identify, plan, rtype = spec.when_reader, spec.external_id.resolver, spec.plan.build, spec.type
    id_field = spec.id_field
    extras = (
        spec.version is not None
        or spec.header_plan is not None
        or spec.attachment_resolver is not None
        or spec.envelope_plan is not None
    )

    def build(row: Mapping[str, Any], refs: Mapping[str, str]) -> tuple[dict[str, Any], str] | None:
        if when is not None and when(row) in (None, "", False):
            return None
        identity = identify(row, refs)
        if identity is None or identity == "":
            return None
        identity = str(identity)
        if id_field == "external_id":
            return {"record_type": rtype, "record": plan(row, refs, {"external_id": identity})}, identity
        start = {} if id_field == "none" else {id_field: identity}
        built = {"record_type": rtype, "record": plan(row, refs, start), "identity": identity}
        return (_envelope(spec, built, row, refs) if extras else built), identity

    if not extras or id_field != "external_id":
        return build

    def build_with_envelope(
        row: Mapping[str, Any], refs: Mapping[str, str]
    ) -> tuple[dict[str, Any], str] | None:
        result = build(row, refs)
        return None if result is None else (_envelope(spec, result[0], row, refs), result[1])

    return build_with_envelope


def _envelope(
    spec: RecordSpec, built: dict[str, Any], row: Mapping[str, Any], refs: Mapping[str, str]
) -> dict[str, Any]:
    if spec.version is not None:
        built["version"] = spec.version
    if spec.header_plan is not None and (header := spec.header_plan.build(row, refs)):
        built["header"] = header
    if spec.attachment_resolver is not None and (body := spec.attachment_resolver(row, refs)) is not None:
        built["attachment"] = body
    if spec.envelope_plan is not None and (top := spec.envelope_plan.build(row, refs)):
        built["envelope"] = top
    return built


__all__ = [
    "PARENT",
    "ConditionSpec",
    "RecordSpec",
    "ValueSpec",
    "build_records",
    "known_record_types",
    "record_identity",
    "value_paths",
]

"""In-memory storage of the Salesforce emulator: objects, records, audit fields and fixture seeding.

Records are stored as compact lists (one slot per field, in schema order) rather than dicts, so a
benchmark can hold 100k WorkOrders without the memory of 100k dicts; a writer always names the user it
acts for, so `LastModifiedById` tells the connector's integration user apart from an admin editing in the
UI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from connector.sandbox.salesforce import content
from connector.sandbox.salesforce.schema import (
    READ_ONLY,
    STANDARD_PREFIXES,
    FieldDef,
    FieldValueError,
    ObjectDef,
    from_wire,
    make_id,
    normalize_id,
    standard_fields,
)

Clock = Callable[[], datetime]
Record = list[Any]
# Change Data Capture hook (streaming.py), called for objects in `cdc_enabled` only: (change type, object, the
# record (live: the hook copies what it keeps), an update's changed fields, acting user)
ChangeHook = Callable[[str, ObjectDef, Record, Mapping[str, Any], str | None], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SalesforceApiError(Exception):
    """An error the emulator answers in Salesforce's shape: [{"message", "errorCode", "fields"}]."""

    def __init__(self, code: str, message: str, status: int = 400, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields or []

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields:
            item["fields"] = self.fields
        return [item]

    def record_error(self) -> dict[str, Any]:
        """The per-record error shape used by sObject Collections and create results."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass
class Credential:
    username: str
    password: str
    security_token: str = ""


@dataclass
class ConnectedApp:
    client_id: str
    client_secret: str
    run_as: str  # username the client_credentials flow acts as


@dataclass
class AuthConfig:
    users: dict[str, Credential] = field(default_factory=dict)
    apps: dict[str, ConnectedApp] = field(default_factory=dict)
    admin_username: str = "admin@emulator.local"


class SalesforceStore:
    """Objects and records behind one lock; every mutation stamps the audit fields from the clock."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.objects: dict[str, ObjectDef] = {}
        self.records: dict[str, dict[str, Record]] = {}
        self.deleted: dict[str, dict[str, Record]] = {}  # the recycle bin: only queryAll sees it
        self.auth = AuthConfig()
        self.cdc_enabled: set[str] = set()  # objects selected for Change Data Capture, lower case
        self.on_change: ChangeHook | None = None
        self._counter = 0
        self._custom_prefixes = 0
        self.define_object("User", {"Username": "string", "Name": "string", "Email": "email"})

    # --- schema ----------------------------------------------------------------------------------

    def define_object(self, name: str, fields: Mapping[str, Any], key_prefix: str | None = None) -> ObjectDef:
        """Declare an object (or add fields to an existing one). A field spec is a type name or a dict."""
        with self.lock:
            odef = self.object(name, required=False)
            if odef is None:
                odef = ObjectDef(name, key_prefix or self._next_prefix(name))
                for fdef in standard_fields():
                    odef.add_field(fdef)
                self.objects[name.lower()] = odef
                self.records[odef.name] = {}
                self.deleted[odef.name] = {}
            for fname, spec in fields.items():
                odef.add_field(_field_from_spec(fname, spec))
            return odef

    def _next_prefix(self, name: str) -> str:
        if name in STANDARD_PREFIXES:
            return STANDARD_PREFIXES[name]
        self._custom_prefixes += 1
        return f"a{self._custom_prefixes:02d}"

    def object(self, name: str, *, required: bool = True) -> ObjectDef | None:
        odef = self.objects.get(name.lower())
        if odef is None and required:
            raise SalesforceApiError(
                "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'", 404
            )
        return odef

    def require_object(self, name: str) -> ObjectDef:
        odef = self.object(name)
        assert odef is not None
        return odef

    # --- reads -----------------------------------------------------------------------------------

    def get_record(self, odef: ObjectDef, record_id: str) -> Record:
        rec = self.records[odef.name].get(normalize_id(record_id))
        if rec is None:
            if normalize_id(record_id) in self.deleted[odef.name]:
                raise SalesforceApiError("ENTITY_IS_DELETED", "entity is deleted", 404)
            raise SalesforceApiError("NOT_FOUND", "The requested resource does not exist", 404)
        return rec

    def value(self, odef: ObjectDef, rec: Record, fdef: FieldDef) -> Any:
        i = odef.slot(fdef.name)
        return rec[i] if i < len(rec) else None

    def record_dict(self, odef: ObjectDef, rec: Record) -> dict[str, Any]:
        return {name: self.value(odef, rec, fdef) for name, fdef in odef.fields.items()}

    def find_by_field(self, odef: ObjectDef, fdef: FieldDef, value: Any) -> list[str]:
        i = odef.slot(fdef.name)
        folded = value.lower() if isinstance(value, str) else value
        hits = []
        for rid, rec in self.records[odef.name].items():
            v = rec[i] if i < len(rec) else None
            if (v.lower() if isinstance(v, str) else v) == folded:
                hits.append(rid)
        return hits

    def iter_records(self, odef: ObjectDef) -> Iterator[tuple[str, Record]]:
        return iter(list(self.records[odef.name].items()))

    # --- writes ----------------------------------------------------------------------------------

    def insert(self, object_name: str, values: Mapping[str, Any], user_id: str | None) -> str:
        with self.lock:
            odef = self.require_object(object_name)
            typed = self._typed(odef, values, creating=True)
            if odef.name.lower() == content.VERSION and self.object(content.LINK, required=False):
                return self._insert_version(typed, user_id)
            self._counter += 1
            rid = typed.pop("Id", None) or make_id(odef.key_prefix, self._counter)
            rec: Record = [None] * len(odef.fields)
            now = self.clock()
            typed.update(
                Id=rid,
                IsDeleted=False,
                CreatedDate=now,
                CreatedById=user_id,
                LastModifiedDate=now,
                LastModifiedById=user_id,
                SystemModstamp=now,
            )
            self._assign(odef, rec, typed)
            self.records[odef.name][rid] = rec
            self._changed("CREATE", odef, rec, {}, user_id)
            return rid

    def _insert_version(self, typed: dict[str, Any], user_id: str | None) -> str:
        """A Salesforce File: the version, its document and its link (content.py), all or nothing."""
        try:
            typed.update(content.before_version(typed))
        except content.ContentError as exc:
            raise SalesforceApiError(exc.code, str(exc), 400, [exc.field]) from None
        odef = self.require_object("ContentVersion")
        self._counter += 1
        rid = make_id(odef.key_prefix, self._counter)
        rid = self._store_new(odef, {**typed, "Id": rid}, user_id)
        content.after_version(
            lambda name, values: self.insert(name, values, user_id),
            lambda name, record_id, values: self.update(name, record_id, values, user_id),
            rid,
            typed,
        )
        return rid

    def _store_new(self, odef: ObjectDef, typed: dict[str, Any], user_id: str | None) -> str:
        rid = str(typed.pop("Id"))
        rec: Record = [None] * len(odef.fields)
        now = self.clock()
        typed.update(Id=rid, IsDeleted=False, CreatedDate=now, CreatedById=user_id)
        typed.update(LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        self._assign(odef, rec, typed)
        self.records[odef.name][rid] = rec
        self._changed("CREATE", odef, rec, {}, user_id)
        return rid

    def update(
        self, object_name: str, record_id: str, values: Mapping[str, Any], user_id: str | None
    ) -> None:
        with self.lock:
            odef = self.require_object(object_name)
            rec = self.get_record(odef, record_id)
            typed = self._typed(odef, values, creating=False)
            now = self.clock()
            typed.update(LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
            captured = self._captured(odef)  # CDC: what really changed, and LastModifiedDate always
            changes = {
                k: v for k, v in typed.items() if captured and self.value(odef, rec, odef.fields[k]) != v
            }
            self._assign(odef, rec, typed)
            self._changed("UPDATE", odef, rec, {**changes, "LastModifiedDate": now}, user_id)

    def delete(
        self, object_name: str, record_id: str, *, recycle: bool = True, user_id: str | None = None
    ) -> None:
        """Delete into the recycle bin (queryAll sees it), or without a trace when undoing a create."""
        with self.lock:
            odef = self.require_object(object_name)
            self.get_record(odef, record_id)
            rid = normalize_id(record_id)
            rec = self.records[odef.name].pop(rid)
            now = self.clock()
            if recycle:
                self._assign(odef, rec, {"IsDeleted": True, "LastModifiedDate": now, "SystemModstamp": now})
                self.deleted[odef.name][rid] = rec
                self._changed("DELETE", odef, rec, {}, user_id)

    def undelete(self, object_name: str, record_id: str, user_id: str | None) -> None:
        """Restore a record from the recycle bin (Apex/SOAP `undelete`; REST has none)."""
        with self.lock:
            odef = self.require_object(object_name)
            rid = normalize_id(record_id)
            rec = self.deleted[odef.name].pop(rid, None)
            if rec is None:
                raise SalesforceApiError("UNDELETE_FAILED", f"{record_id}: not in the recycle bin", 404)
            now = self.clock()
            typed = {"IsDeleted": False, "LastModifiedDate": now, "LastModifiedById": user_id}
            self._assign(odef, rec, {**typed, "SystemModstamp": now})
            self.records[odef.name][rid] = rec
            self._changed("UNDELETE", odef, rec, {}, user_id)

    def _captured(self, odef: ObjectDef) -> bool:
        return self.on_change is not None and odef.name.lower() in self.cdc_enabled

    def _changed(
        self, change_type: str, odef: ObjectDef, rec: Record, changes: Mapping[str, Any], user_id: str | None
    ) -> None:
        if self.on_change is not None and self._captured(odef):
            self.on_change(change_type, odef, rec, changes, user_id)

    def upsert(
        self,
        object_name: str,
        ext_field: str,
        ext_value: str,
        values: Mapping[str, Any],
        user_id: str | None,
    ) -> tuple[str, bool]:
        """Update the record whose external id matches, or create it; return (id, created)."""
        with self.lock:
            odef = self.require_object(object_name)
            fdef = odef.field(ext_field)
            if fdef is None or not (fdef.external_id or fdef.name == "Id"):
                raise SalesforceApiError(
                    "NOT_FOUND",
                    f"Provided external ID field does not exist or is not accessible: {ext_field}",
                    404,
                )
            hits = self.find_by_field(odef, fdef, from_wire(fdef, ext_value))
            if len(hits) > 1:
                raise SalesforceApiError(
                    "DUPLICATE_EXTERNAL_ID", f"The external id value {ext_value} matches several records", 300
                )
            if hits:
                self.update(odef.name, hits[0], values, user_id)
                return hits[0], False
            return self.insert(odef.name, {**values, fdef.name: ext_value}, user_id), True

    def _typed(self, odef: ObjectDef, values: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        typed: dict[str, Any] = {}
        for name, raw in values.items():
            if name == "attributes":
                continue
            fdef = odef.field(name)
            if fdef is None:
                raise SalesforceApiError(
                    "INVALID_FIELD", f"No such column '{name}' on sobject of type {odef.name}", 400, [name]
                )
            if fdef.name in READ_ONLY and not (creating and fdef.name == "Id"):
                raise SalesforceApiError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {fdef.name}.",
                    400,
                    [fdef.name],
                )
            try:
                typed[fdef.name] = from_wire(fdef, raw)
            except FieldValueError as exc:
                raise SalesforceApiError("JSON_PARSER_ERROR", str(exc), 400, [fdef.name]) from exc
        return typed

    def _assign(self, odef: ObjectDef, rec: Record, typed: Mapping[str, Any]) -> None:
        if len(rec) < len(odef.fields):
            rec.extend([None] * (len(odef.fields) - len(rec)))
        for name, value in typed.items():
            rec[odef.slot(name)] = value

    # --- users -----------------------------------------------------------------------------------

    def user_id(self, username: str) -> str:
        """The User record's Id for a username, creating the User the first time it is named."""
        with self.lock:
            odef = self.require_object("User")
            hits = self.find_by_field(odef, odef.fields["Username"], username)
            if hits:
                return hits[0]
            name = username.split("@")[0]
            return self.insert("User", {"Username": username, "Name": name, "Email": username}, None)

    @property
    def admin_user_id(self) -> str:
        return self.user_id(self.auth.admin_username)


def _field_from_spec(name: str, spec: Any) -> FieldDef:
    """A fixture field: a type name, or a mapping with type, to (reference target), relationship_name,
    child_relationship (the parent's name for this object's records in a subquery, e.g. WorkOrderLineItems),
    external_id, updateable, createable and picklist_values (picklist and multipicklist)."""
    if isinstance(spec, str):
        return FieldDef(name, spec)
    if isinstance(spec, Mapping):
        return FieldDef(
            name,
            spec.get("type", "string"),
            reference_to=spec.get("to") or spec.get("reference_to"),
            relationship_name=spec.get("relationship_name"),
            external_id=bool(spec.get("external_id", False)),
            updateable=bool(spec.get("updateable", True)),
            createable=spec.get("createable"),
            child_relationship=spec.get("child_relationship"),
            picklist_values=tuple(str(v) for v in spec.get("picklist_values") or ()),
        )
    raise ValueError(f"field {name}: spec must be a type name or a mapping")


# --- fixtures ------------------------------------------------------------------------------------


def read_fixture(source: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    """Load a fixture from a dict, or from a .yaml/.yml/.json file."""
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a fixture must be a mapping with 'objects' and 'records'")
    return data


def load_fixture(store: SalesforceStore, source: Mapping[str, Any] | str | Path) -> None:
    """Declare the fixture's objects, credentials and records; records may refer to each other by `_ref`."""
    data = read_fixture(source)
    _load_auth(store, data.get("auth") or {})
    store.cdc_enabled.update(str(name).lower() for name in data.get("change_data_capture") or ())
    for name, spec in (data.get("objects") or {}).items():
        spec = spec or {}
        store.define_object(name, spec.get("fields") or {}, spec.get("key_prefix"))
    refs: dict[str, str] = {}
    admin = store.admin_user_id
    for object_name, rows in (data.get("records") or {}).items():
        for row in rows or []:
            values = {k: _resolve_ref(v, refs) for k, v in row.items() if k != "_ref"}
            if object_name.lower() == "user" and "Username" in values:
                rid = store.user_id(str(values["Username"]))
                store.update("User", rid, values, admin)
            else:
                rid = store.insert(object_name, values, admin)
            if "_ref" in row:
                refs[str(row["_ref"])] = rid


def _load_auth(store: SalesforceStore, auth: Mapping[str, Any]) -> None:
    for username, cred in (auth.get("users") or {}).items():
        store.auth.users[username] = Credential(
            username, str(cred.get("password", "")), str(cred.get("security_token", ""))
        )
    for app in auth.get("connected_apps") or []:
        store.auth.apps[str(app["client_id"])] = ConnectedApp(
            str(app["client_id"]), str(app["client_secret"]), str(app["run_as"])
        )
    if auth.get("admin_username"):
        store.auth.admin_username = str(auth["admin_username"])


def _resolve_ref(value: Any, refs: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@") and value[1:] in refs:
        return refs[value[1:]]
    return value

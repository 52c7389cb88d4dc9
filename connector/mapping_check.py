"""The mapping checked against the org itself: every field it reads or writes exists there, can be written
where the connector writes it, and has a type the written value fits.

Why: loading a mapping file checks its shape, not the org, so a misspelt write-back field
(`Dispatch_Status_Reasn__c`) passed and the write-back failed on every retry, minutes later. Salesforce's
`describe` of each object answers all of it before anything runs. This module is pure: it takes the
mapping and a `describe(object_name)` callable (returning the describe answer, or None when the org has no
such object) and returns every problem found, each naming the object, the field and the mapping key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.mapping import MappingConfig, ObjectSpec
from connector.mapping_check_types import (
    BOOLEAN,
    DATETIME,
    LONG_TEXT,
    NOTE_ATTRIBUTE_TYPES,
    NUMBER,
    REFERENCE,
    TEXT,
    WRITE_BACK_TYPES,
)
from connector.mapping_writes import (
    CalendarEventsSpec,
    FieldRecordSpec,
    InboundContactSpec,
    InboxMessagesSpec,
    LogObjectSpec,
    NotesSpec,
    PaymentsSpec,
)

__all__ = ["Describe", "Problem", "check_mapping"]

Describe = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Problem:
    """One mismatch between the mapping and the org. `field` is None when the object itself is missing."""

    object: str
    field: str | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.object}.{self.field}" if self.field else self.object
        return f"{self.key}: {where}: {self.message}"


class _Object:
    """One describe answer, indexed by field and relationship name (Salesforce names ignore case)."""

    def __init__(self, name: str, answer: Mapping[str, Any]) -> None:
        self.name = str(answer.get("name") or name)
        self.createable = bool(answer.get("createable", True))
        self.updateable = bool(answer.get("updateable", True))
        fields = [f for f in answer.get("fields") or () if isinstance(f, Mapping) and f.get("name")]
        self.fields = {str(f["name"]).lower(): f for f in fields}
        self.relationships = {
            str(f["relationshipName"]).lower(): f for f in fields if f.get("relationshipName")
        }
        # None when the describe has no childRelationships key (then a child's lookup is checked instead)
        children = answer.get("childRelationships")
        self.children: dict[str, Mapping[str, Any]] | None = (
            {str(c["relationshipName"]).lower(): c for c in children if c.get("relationshipName")}
            if isinstance(children, list)
            else None
        )

    def field(self, name: str) -> Mapping[str, Any] | None:
        return self.fields.get(name.lower())

    def missing(self, name: str) -> str:
        """'no field X on Y', with the nearest name when one is close (a typo is the usual cause)."""
        names = [str(f["name"]) for f in self.fields.values()]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"no field {name!r} on {self.name}{hint}"


class _Checker:
    def __init__(self, mapping: MappingConfig, describe: Describe) -> None:
        self.mapping = mapping
        self._describe = describe
        self._objects: dict[str, _Object | None] = {}
        self.problems: list[Problem] = []

    def created_object(self, name: str, key: str) -> _Object | None:
        """An object the connector creates records in: a problem when the org lacks it (None) or the
        integration user cannot create it (still returned, so its fields are checked too)."""
        obj = self.obj(name)
        if obj is None:
            self.add(name, None, key, f"the org has no object {name!r}")
        elif not obj.createable:
            self.add(obj.name, None, key, f"the integration user cannot create {obj.name} records")
        return obj

    def obj(self, name: str) -> _Object | None:
        key = name.lower()
        if key not in self._objects:
            answer = self._describe(name)
            self._objects[key] = _Object(name, answer) if answer is not None else None
        return self._objects[key]

    def add(self, obj: str, field: str | None, key: str, message: str) -> None:
        self.problems.append(Problem(obj, field, key, message))

    # --- paths ------------------------------------------------------------------------------------

    def resolve(self, obj: _Object, path: str) -> Mapping[str, Any] | str:
        """The describe of the field a path (`Contact.Email`) ends at, or what is wrong with the path."""
        *hops, last = path.split(".")
        owners = [obj]
        for hop in hops:
            reached: list[_Object] = []
            for owner in owners:
                link = owner.relationships.get(hop.lower())
                if link is None:
                    return self._no_relationship(owner, hop)
                for target in link.get("referenceTo") or ():
                    found = self.obj(str(target))
                    if found is not None:
                        reached.append(found)
            if not reached:
                return f"relationship {hop!r} leads to no object the org has"
            owners = reached
        for owner in owners:  # a polymorphic relationship: the field may be on any of its objects
            field = owner.field(last)
            if field is not None:
                return field
        return owners[0].missing(last)

    @staticmethod
    def _no_relationship(owner: _Object, hop: str) -> str:
        field = owner.field(hop)
        if field is not None and field.get("relationshipName"):
            return (
                f"{hop!r} is a field; a path goes through its relationship name {field['relationshipName']!r}"
            )
        names = [str(f["relationshipName"]) for f in owner.relationships.values()]
        close = difflib.get_close_matches(hop, names, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"no relationship {hop!r} on {owner.name}{hint}"

    def field(self, obj: _Object, name: str, key: str, label: str | None = None) -> Mapping[str, Any] | None:
        """The field's describe, or None after recording why it cannot be used."""
        found = self.resolve(obj, name)
        if isinstance(found, str):
            self.add(label or obj.name, name, key, found)
            return None
        return found

    def writable(
        self,
        obj: _Object,
        name: str,
        key: str,
        *,
        update: bool = False,
        create: bool = False,
        types: tuple[frozenset[str], str] | None = None,
    ) -> Mapping[str, Any] | None:
        field = self.field(obj, name, key)
        if field is None:
            return None
        if update and not field.get("updateable"):
            self.add(obj.name, name, key, "is not updateable (read-only, a formula, or no edit access)")
        if create and not field.get("createable"):
            self.add(obj.name, name, key, "cannot be set when a record is created (not createable)")
        if types is not None:
            allowed, what = types
            kind = str(field.get("type"))
            if kind not in allowed:
                self.add(
                    obj.name,
                    name,
                    key,
                    f"is of type {kind}, but the connector writes {what} here "
                    f"(fits: {', '.join(sorted(allowed))})",
                )
        return field

    def required_on_create(self, obj: _Object, given: set[str], key: str) -> None:
        """Fields Salesforce requires on create (createable, not nillable, no default) that nothing sets."""
        for field in obj.fields.values():
            name = str(field["name"])
            required = field.get("createable") and not field.get("nillable", True)
            if required and not field.get("defaultedOnCreate") and name.lower() not in given:
                self.add(
                    obj.name, name, key, "is required when a record is created, and the mapping sets none"
                )

    # --- blocks -----------------------------------------------------------------------------------

    def run(self) -> list[Problem]:
        for name, spec in self.mapping.objects.items():
            obj = self.obj(name)
            if obj is None:
                self.add(name, None, f"objects.{name}", f"the org has no object {name!r}")
                continue
            self.check_object(obj, spec, f"objects.{name}")
        if self.mapping.spec.log_object is not None:
            self.check_log(self.mapping.spec.log_object)
        if self.mapping.spec.inbox_messages is not None:
            self.check_inbox(self.mapping.spec.inbox_messages)
        if self.mapping.spec.calendar_events is not None:
            self.check_calendar(self.mapping.spec.calendar_events)
        return self.problems

    def check_object(self, obj: _Object, spec: ObjectSpec, at: str) -> None:
        for name in spec.select:
            self.field(obj, name, f"{at}.select")
        for name in spec.relevant or ():
            if name not in spec.children:
                self.field(obj, name, f"{at}.relevant")
        self.check_children(obj, spec, at)
        flag = self.field(obj, spec.flag.field, f"{at}.flag.field")
        if flag is not None and spec.flag.when == "true" and flag.get("type") != "boolean":
            self.add(
                obj.name,
                spec.flag.field,
                f"{at}.flag.when",
                f'when: "true" needs a checkbox (boolean), but the field is of type {flag.get("type")}; '
                "use when: not_null",
            )
        if spec.route is not None:
            self.field(obj, spec.route.field, f"{at}.route.field")
        if spec.pending is not None:
            pending = spec.pending
            what = f"{pending.clear_value!r} and selects {pending.field} = true"
            self.writable(obj, pending.field, f"{at}.pending.field", update=True, types=(BOOLEAN, what))
        self.check_write_back(obj, spec, f"{at}.write_back")
        if spec.inbound_jobs.enabled:
            self.check_inbound(obj, spec, f"{at}.inbound_jobs")

    def check_children(self, obj: _Object, spec: ObjectSpec, at: str) -> None:
        """Each child relationship exists on the object (describe's childRelationships, when given) and
        holds the named child object through the named lookup; the child's selected fields exist."""
        for relationship, child in spec.children.items():
            key = f"{at}.children.{relationship}"
            child_obj = self.obj(child.object)
            if child_obj is None:
                self.add(child.object, None, f"{key}.object", f"the org has no object {child.object!r}")
                continue
            lookup = self.field(child_obj, child.parent_field, f"{key}.parent_field")
            targets = {str(t).lower() for t in (lookup or {}).get("referenceTo") or ()}
            lookup_ok = lookup is not None and obj.name.lower() in targets
            if lookup is not None and not lookup_ok:
                self.add(
                    child_obj.name,
                    child.parent_field,
                    f"{key}.parent_field",
                    f"is not a lookup to {obj.name}",
                )
            if obj.children is not None:
                named = (relationship, child.parent_field)
                self.check_relationship(obj, obj.children, child_obj, named, key, lookup_ok)
            for name in child.select:
                self.field(child_obj, name, f"{key}.select")

    def check_relationship(
        self,
        obj: _Object,
        declared: Mapping[str, Mapping[str, Any]],
        child: _Object,
        named: tuple[str, str],
        key: str,
        lookup_ok: bool,
    ) -> None:
        """The relationship is declared; when the lookup itself is right, it is this child's, through it."""
        relationship, lookup = named
        entry = declared.get(relationship.lower())
        if entry is None:
            names = [str(c["relationshipName"]) for c in declared.values()]
            close = difflib.get_close_matches(relationship, names, n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.add(obj.name, None, key, f"no child relationship {relationship!r} on {obj.name}{hint}")
            return
        holds, through = str(entry.get("childSObject") or ""), str(entry.get("field") or "")
        if lookup_ok and (holds.lower() != child.name.lower() or through.lower() != lookup.lower()):
            self.add(
                obj.name,
                None,
                key,
                f"child relationship {relationship!r} of {obj.name} is {holds}.{through}, "
                f"not {child.name}.{lookup}",
            )

    def check_write_back(self, obj: _Object, spec: ObjectSpec, at: str) -> None:
        wb = spec.write_back
        if wb.all_fields() and not obj.updateable:
            self.add(obj.name, None, at, f"the integration user cannot update {obj.name} records")
        for attr, types in WRITE_BACK_TYPES.items():
            name = getattr(wb, attr)
            if not name:
                continue
            field = self.writable(obj, name, f"{at}.{attr}", update=True, types=types)
            if attr == "error" and field is not None:
                length = int(field.get("length") or 0)
                if field.get("type") in TEXT and 0 < length < wb.error_max_length:
                    self.add(
                        obj.name,
                        name,
                        f"{at}.error_max_length",
                        f"error_max_length {wb.error_max_length} is longer than the field "
                        f"({length} characters): set error_max_length: {length} or lengthen the field",
                    )
        for milestone, name in wb.milestones.items():
            self.writable(
                obj, name, f"{at}.milestones.{milestone}", update=True, types=(DATETIME, "a date and time")
            )
        for milestone, name in wb.offer_milestones.items():
            self.writable(
                obj,
                name,
                f"{at}.offer_milestones.{milestone}",
                update=True,
                types=(DATETIME, "a date and time"),
            )
        if wb.notes is not None:
            self.check_notes(obj, wb.notes, f"{at}.notes")
        for key in ("billing_documents", "payments", "forms"):
            block: FieldRecordSpec | None = getattr(wb, key)
            if block is not None:
                self.check_field_records(obj, block, f"{at}.{key}", wb.billing_documents)

    def check_field_records(
        self, parent: _Object, spec: FieldRecordSpec, at: str, documents: FieldRecordSpec | None
    ) -> None:
        """Billing documents, payments, forms: created linked to `parent`, then updated in place."""
        self.check_notes(parent, spec, at)
        target = self.obj(spec.object)
        if target is None:
            return
        extra = [
            ("answers_field", getattr(spec, "answers_field", None), (LONG_TEXT, "the answers as JSON text"))
        ]
        if isinstance(spec, PaymentsSpec) and spec.document_field:
            link = self.writable(
                target, spec.document_field, f"{at}.document_field", create=True, types=REFERENCE
            )
            wanted = documents.object.lower() if documents else None
            if link is not None and wanted not in {str(t).lower() for t in link.get("referenceTo") or ()}:
                self.add(
                    target.name,
                    spec.document_field,
                    f"{at}.document_field",
                    f"must be a lookup to {documents.object if documents else 'billing documents'}",
                )
        for key, name, types in extra:
            if name:
                self.writable(target, name, f"{at}.{key}", create=True, update=True, types=types)

    def check_calendar(self, spec: CalendarEventsSpec) -> None:
        at = "calendar_events"
        obj = self.created_object(spec.object, f"{at}.object")
        if obj is None:
            return
        for name, attribute in spec.fields.items():
            types = (DATETIME, "a date and time") if attribute in ("started_at", "completed_at") else None
            self.writable(obj, name, f"{at}.fields.{name}", create=True, update=True, types=types)
        self.constants(obj, spec.constants, f"{at}.constants")
        if spec.who_field:
            self.writable(obj, spec.who_field, f"{at}.who_field", create=True, types=REFERENCE)
        given = {
            n.lower() for n in (*spec.fields, *spec.constants, *([spec.who_field] if spec.who_field else []))
        }
        self.required_on_create(obj, given, f"{at}.fields")

    def check_notes(self, parent: _Object, notes: NotesSpec | FieldRecordSpec, at: str) -> None:
        obj = self.created_object(notes.object, f"{at}.object")
        if obj is None:
            return
        link = self.writable(obj, notes.parent_field, f"{at}.parent_field", create=True)
        if link is not None:
            targets = [str(t) for t in link.get("referenceTo") or ()]
            if parent.name.lower() not in {t.lower() for t in targets}:
                points = f"points to {', '.join(targets)}" if targets else f"is of type {link.get('type')}"
                self.add(
                    obj.name,
                    notes.parent_field,
                    f"{at}.parent_field",
                    f"must be a lookup to {parent.name}, but it {points}",
                )
        for name, attribute in notes.fields.items():
            types = NOTE_ATTRIBUTE_TYPES.get(attribute)
            # notes are created, then updated when Dispatch changes or deletes them
            self.writable(obj, name, f"{at}.fields.{name}", create=True, update=True, types=types)
        self.required_on_create(obj, {n.lower() for n in (notes.parent_field, *notes.fields)}, f"{at}.fields")

    def check_inbound(self, obj: _Object, spec: ObjectSpec, at: str) -> None:
        if not obj.createable:
            self.add(obj.name, None, at, f"the integration user cannot create {obj.name} records")
        for name in spec.inbound_jobs.fields:
            self.writable(obj, name, f"{at}.fields.{name}", create=True)
        self.constants(obj, spec.inbound_jobs.constants, f"{at}.constants")
        given = {n.lower() for n in (*spec.inbound_jobs.fields, *spec.inbound_jobs.constants)}
        status = spec.write_back.status
        if status:
            given.add(status.lower())
            found = obj.field(status)
            if found is not None and not found.get("createable"):
                self.add(
                    obj.name,
                    status,
                    f"{at.rsplit('.', 1)[0]}.write_back.status",
                    "cannot be set when a record is created (not createable), and inbound_jobs sets it",
                )
        self.required_on_create(obj, given, f"{at}.fields")
        if spec.inbound_jobs.contact is not None:
            self.check_contact(obj, spec.inbound_jobs.contact, f"{at}.contact")

    def check_contact(self, parent: _Object, spec: InboundContactSpec, at: str) -> None:
        """The customer's Contact: matched on readable fields, created with createable ones, then linked."""
        self.writable(parent, spec.contact_field, f"{at}.contact_field", update=True, types=REFERENCE)
        obj = self.created_object(spec.object, f"{at}.object")
        if obj is None:
            return
        for key in ("match_email", "match_phone"):
            name = getattr(spec, key)
            if name:
                self.field(obj, name, f"{at}.{key}")
        for name in spec.fields:
            self.writable(obj, name, f"{at}.fields.{name}", create=True)
        self.required_on_create(obj, {n.lower() for n in spec.fields}, f"{at}.fields")

    def constants(self, obj: _Object, constants: Mapping[str, Any], at: str) -> None:
        for name, value in constants.items():
            field = self.writable(obj, name, f"{at}.{name}", create=True)
            if field is not None and not _fits(value, str(field.get("type"))):
                self.add(
                    obj.name,
                    name,
                    f"{at}.{name}",
                    f"the constant {value!r} does not fit a field of type {field.get('type')}",
                )

    def check_log(self, log: LogObjectSpec) -> None:
        obj = self.created_object(log.object, "log_object.object")
        if obj is None:
            return
        for name in log.fields:
            self.writable(obj, name, f"log_object.fields.{name}", create=True, types=(TEXT, "text"))
        self.required_on_create(obj, {n.lower() for n in log.fields}, "log_object.fields")

    def check_inbox(self, inbox: InboxMessagesSpec) -> None:
        at = "inbox_messages"
        obj = self.created_object(inbox.object, f"{at}.object")
        if obj is None:
            return
        for name in inbox.fields:  # every message attribute is text
            self.writable(obj, name, f"{at}.fields.{name}", create=True, types=(TEXT, "text"))
        self.constants(obj, inbox.constants, f"{at}.constants")
        links = [
            (key, name)
            for key, name in (("record_field", inbox.record_field), ("contact_field", inbox.contact_field))
            if name
        ]
        for key, name in links:
            self.writable(
                obj, name, f"{at}.{key}", create=True, types=(frozenset({"reference"}), "a record id")
            )
        given = {n.lower() for n in (*inbox.fields, *inbox.constants, *(name for _, name in links))}
        self.required_on_create(obj, given, f"{at}.fields")


def _fits(value: Any, kind: str) -> bool:
    """Whether Salesforce takes this constant in a field of this type (numbers as text too)."""
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in NUMBER or kind == "currency":
        return not isinstance(value, bool) and _is_number(value)
    return not isinstance(value, Mapping | list)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def check_mapping(mapping: MappingConfig, describe: Describe) -> list[Problem]:
    """Every problem of `mapping` against the org `describe` answers for, in mapping order (empty: clean)."""
    return _Checker(mapping, describe).run()

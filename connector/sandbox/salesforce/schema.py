"""The Salesforce emulator's schema: objects, typed fields, relationships, Ids and wire value formats.

Kept apart from storage so the fixture loader, the SOQL evaluator and the HTTP layer share one notion of
what a field is and how its value looks on the wire (Salesforce's `2026-11-25T10:00:00.000+0000` for
dateTime).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

FIELD_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "email",
        "phone",
        "url",
        "boolean",
        "int",
        "double",
        "currency",
        "percent",
        "date",
        "datetime",
        "reference",
        "base64",
    }
)
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
TEXT_TYPES = frozenset({"id", "string", "textarea", "picklist", "email", "phone", "url", "reference"})
MULTI_SEPARATOR = (
    ";"  # a multi-select picklist's value: its selected values joined by ';', as Salesforce stores it
)
AUDIT_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
READ_ONLY = frozenset({"Id", "IsDeleted", *AUDIT_FIELDS})
# Describe's `length` when a field declares none: Salesforce's defaults (Text 255, Long Text Area 32768,
# Email 80, Phone 40, Ids 18); 0 for the types that have no length.
DEFAULT_LENGTHS = {
    "id": 18,
    "reference": 18,
    "string": 255,
    "textarea": 32768,
    "picklist": 255,
    "multipicklist": 4099,
    "email": 80,
    "phone": 40,
    "url": 255,
}
SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
STANDARD_PREFIXES = {"Account": "001", "Contact": "003", "User": "005", "Case": "500", "WorkOrder": "0WO"}


class FieldValueError(ValueError):
    """A value cannot be stored in a field of this type (Salesforce: INVALID_FIELD / JSON_PARSER_ERROR)."""


@dataclass
class FieldDef:
    name: str
    type: str = "string"
    reference_to: str | None = None
    relationship_name: str | None = None
    external_id: bool = False
    updateable: bool = True
    # None: the type's default length (DEFAULT_LENGTHS); createable None: as updateable (an Id or an audit
    # field is neither; a master-detail parent is createable only).
    length: int | None = None
    createable: bool | None = None
    # A reference's child relationship: the name a parent's query uses for this object's records
    # (`SELECT Id, (SELECT Id FROM WorkOrderLineItems) FROM WorkOrder`); fixture key `child_relationship`.
    # None: the lookup has no child relationship (describe lists it with relationshipName null).
    child_relationship: str | None = None
    # picklist / multipicklist: the values describe lists (fixture key `picklist_values`); not enforced.
    picklist_values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r} for {self.name}")
        if self.type == "reference" and self.relationship_name is None:
            self.relationship_name = relationship_name_for(self.name)
        if self.length is None:
            self.length = DEFAULT_LENGTHS.get(self.type, 0)
        if self.createable is None:
            self.createable = self.updateable

    @property
    def nillable(self) -> bool:
        """Salesforce: a checkbox is never null, nor are Id and the audit fields."""
        return self.type != "boolean" and self.name not in READ_ONLY

    def describe(self) -> dict[str, Any]:
        """The field as `sobjects/<name>/describe` lists it (the keys clients read, Salesforce's spelling)."""
        length = self.length or 0
        custom = self.name.endswith("__c")
        return {
            "name": self.name,
            "label": (self.name[:-3] if custom else self.name).replace("_", " "),
            "type": self.type,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "length": length,
            "byteLength": length * 3,
            "precision": 18 if self.type in {"double", "currency", "percent"} else 0,
            "scale": 2 if self.type in {"double", "currency", "percent"} else 0,
            "digits": 9 if self.type == "int" else 0,
            "custom": custom,
            "calculated": False,
            "autoNumber": False,
            "createable": bool(self.createable),
            "updateable": self.updateable,
            "nillable": self.nillable,
            "defaultedOnCreate": self.type == "boolean" or self.name in READ_ONLY,
            "externalId": self.external_id,
            "idLookup": self.external_id or self.name == "Id",
            "unique": False,
            "filterable": self.type != "textarea",
            "sortable": self.type != "textarea",
            "nameField": self.name == "Name",
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "picklistValues": [_picklist_entry(v) for v in self.picklist_values],
        }


@dataclass
class ObjectDef:
    name: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, repr=False)
    _rel_by_lower: dict[str, FieldDef] = field(default_factory=dict, repr=False)
    _slots: dict[str, int] = field(default_factory=dict, repr=False)

    def add_field(self, fdef: FieldDef) -> None:
        self._slots.setdefault(fdef.name, len(self._slots))
        self.fields[fdef.name] = fdef
        self._by_lower[fdef.name.lower()] = fdef
        if fdef.relationship_name:
            self._rel_by_lower[fdef.relationship_name.lower()] = fdef

    def slot(self, name: str) -> int:
        """Position of a field's value in a stored record list."""
        return self._slots[name]

    def field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._rel_by_lower.get(name.lower())


def _picklist_entry(value: str) -> dict[str, Any]:
    return {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}


def child_relationships(objects: Iterable[ObjectDef], parent: ObjectDef) -> list[dict[str, Any]]:
    """describe's `childRelationships` of `parent`: every reference to it, named or not, as Salesforce
    lists them (a lookup without a child relationship name has relationshipName null)."""
    found = []
    for odef in objects:
        for fdef in odef.fields.values():
            if fdef.type != "reference" or (fdef.reference_to or "").lower() != parent.name.lower():
                continue
            found.append(
                {
                    "cascadeDelete": False,
                    "childSObject": odef.name,
                    "deprecatedAndHidden": False,
                    "field": fdef.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": fdef.child_relationship,
                    "restrictedDelete": False,
                }
            )
    return found


def find_child_relationship(
    objects: Iterable[ObjectDef], parent: ObjectDef, name: str
) -> tuple[ObjectDef, FieldDef] | None:
    """The child object and its reference field behind `parent`'s child relationship `name` (any case)."""
    wanted = name.lower()
    for odef in objects:
        for fdef in odef.fields.values():
            if (
                fdef.child_relationship is not None
                and fdef.child_relationship.lower() == wanted
                and (fdef.reference_to or "").lower() == parent.name.lower()
            ):
                return odef, fdef
    return None


def multipicklist_set(value: Any) -> frozenset[str]:
    """The selected values of a multi-select picklist value (or of a SOQL term like 'AAA;BBB'), case-folded:
    Salesforce compares them as a set, case-insensitively."""
    if value is None:
        return frozenset()
    return frozenset(v.strip().casefold() for v in str(value).split(MULTI_SEPARATOR) if v.strip())


def relationship_name_for(field_name: str) -> str:
    """AccountId -> Account, Parent_Job__c -> Parent_Job__r, as Salesforce names relationships."""
    if field_name.endswith("__c"):
        return field_name[:-3] + "__r"
    if field_name.endswith("Id"):
        return field_name[:-2]
    return field_name + "__r"


def standard_fields() -> list[FieldDef]:
    return [
        FieldDef("Id", "id", updateable=False),
        FieldDef("IsDeleted", "boolean", updateable=False),
        FieldDef("CreatedDate", "datetime", updateable=False),
        FieldDef("CreatedById", "reference", reference_to="User", updateable=False),
        FieldDef("LastModifiedDate", "datetime", updateable=False),
        FieldDef("LastModifiedById", "reference", reference_to="User", updateable=False),
        FieldDef("SystemModstamp", "datetime", updateable=False),
    ]


def id_suffix(id15: str) -> str:
    """Salesforce's case-safe 3-character checksum that turns a 15-char Id into an 18-char one."""
    out = []
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        out.append(_ID_SUFFIX[bits])
    return "".join(out)


def make_id(prefix: str, counter: int) -> str:
    digits = []
    n = counter
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    id15 = prefix + "5g0" + "".join(reversed(digits))
    return id15 + id_suffix(id15)


def normalize_id(value: str) -> str:
    """Accept 15- or 18-character Ids the way Salesforce does; return the 18-character form."""
    if len(value) == 15:
        return value + id_suffix(value)
    return value


def format_datetime(value: datetime) -> str:
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """Parse the dateTime strings clients send (ISO 8601 with Z, +00:00 or +0000)."""
    cleaned = text.strip().replace("Z", "+00:00")
    if len(cleaned) >= 5 and cleaned[-5] in "+-" and ":" not in cleaned[-5:]:
        cleaned = cleaned[:-2] + ":" + cleaned[-2:]
    value = datetime.fromisoformat(cleaned)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def to_wire(value: Any) -> Any:
    """Python value held by the store -> JSON value as Salesforce sends it."""
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def from_wire(fdef: FieldDef, value: Any) -> Any:
    """JSON value from a client -> the typed value the store holds; FieldValueError when it does not fit."""
    if value is None:
        return None
    try:
        return _convert(fdef, value)
    except (TypeError, ValueError) as exc:
        raise FieldValueError(f"{fdef.name}: value not of required type: {value!r}") from exc


def _convert(fdef: FieldDef, value: Any) -> Any:
    kind = fdef.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise ValueError(value)
    if kind in NUMBER_TYPES:
        if isinstance(value, bool):
            raise ValueError(value)
        number = Decimal(str(value))
        return int(number) if kind == "int" else number
    if kind == "datetime":
        return value if isinstance(value, datetime) else parse_datetime(str(value))
    if kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if kind == "reference" or kind == "id":
        return normalize_id(str(value))
    if kind == "base64" and not isinstance(value, str):
        raise ValueError(value)
    if kind == "multipicklist":
        return _join_selected(value)
    if isinstance(value, dict | list):
        raise ValueError(value)
    return str(value)


def _join_selected(value: Any) -> str | None:
    """A multi-select picklist value as stored: its values (a `;`-joined string or a list) trimmed, without
    blanks or repeats, joined by ';'. None when nothing is selected (Salesforce stores no empty string)."""
    parts = value if isinstance(value, list) else str(value).split(MULTI_SEPARATOR)
    if any(isinstance(p, dict | list) for p in parts):
        raise ValueError(value)
    seen: dict[str, str] = {}
    for part in (str(p).strip() for p in parts):
        if part and part.casefold() not in seen:
            seen[part.casefold()] = part
    return MULTI_SEPARATOR.join(seen.values()) or None

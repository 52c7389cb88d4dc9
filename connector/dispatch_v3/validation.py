"""The Work Order rules of the Job Offer -> Work Order migration guide, as pure functions. Long (over 500
lines) because every rule lives in this one module, so the client (refuses before sending) and the emulator
(answers 422) cannot drift apart.

Where the guide is silent the choice is ours and written down in docs/wire-formats.md ("v3 validation and
phone numbers"). Nothing here raises on a malformed document: every problem is a `Violation` naming the path
and what is allowed, because the 422 answer and the engine's log rows are read by people fixing data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import available_timezones

WORKFLOWS = ("service", "sales")
ORCHESTRATIONS = ("direct", "round_robin", "jump_ball")
_JOB_STATUS_WORDS = "offered unscheduled scheduled enroute started paused complete canceled rejected"
JOB_STATUSES = tuple(_JOB_STATUS_WORDS.split())
CONTACT_METHODS = ("phone", "email")
COUNTRIES = ("US", "CA")
# USPS codes: the 50 states, DC, and the five inhabited territories. Military (AA, AE, AP) and the freely
# associated states (FM, MH, PW) use USPS codes too but are neither US states nor territories.
_US_CODES = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI"
)
_CA_CODES = "AB BC MB NB NL NS NT NU ON PE QC SK YT"
US_STATES = frozenset(_US_CODES.split())
CA_PROVINCES = frozenset(_CA_CODES.split())
_COUNTRY_OF_STATE = {**dict.fromkeys(US_STATES, "US"), **dict.fromkeys(CA_PROVINCES, "CA")}

_US_POSTAL = re.compile(r"\d{5}")
_ZIP_PLUS_4 = re.compile(r"\d{5}-\d{4}")
# Canada Post: D F I O Q U never appear; W and Z never lead.
_CA_POSTAL = re.compile(r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPR-TV-Z] ?\d[ABCEGHJ-NPR-TV-Z]\d")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_PHONE_CHARS = re.compile(r"[0-9+\s().-]*")
# What Dispatch takes as written: E.164 (the guide's examples) or an RFC 3966 global number, `tel:` or not.
_PHONE_AS_SENT = re.compile(r"(?i:tel:)?\+\d[\d().-]*")
_COUNTRY_CODE = re.compile(r"[1-9]\d{0,2}")
_SHOWN_CHARS = 60

PHONE_FORMS = "E.164 (+15551234567) or an RFC 3966 global number (tel:+1-555-123-4567)"
POSTAL_FORMS = "a 5-digit US ZIP code or a 6-character Canadian postal code (A1A 1A1 or A1A1A1, capitals)"
STATE_FORMS = (
    "the two-letter code of a US state, DC or territory or of a Canadian province or territory "
    f"({', '.join(sorted(US_STATES))}; {', '.join(sorted(CA_PROVINCES))})"
)


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (`contacts[1].contact_methods[0].value`) and what is wrong and allowed."""

    path: str
    message: str


_T = TypeVar("_T")
# A check that yields its violations and returns what it read (None when absent or unusable).
Checked = Generator[Violation, None, _T | None]


def validate_work_order(doc: Mapping[str, Any]) -> list[Violation]:
    """Every rule the document breaks, in document order; empty when Dispatch should accept it."""
    if not isinstance(doc, Mapping):
        return [Violation("", f"must be a JSON object (the Work Order document), {_got(doc)}")]
    return list(_work_order(doc))


def normalize_phone(value: str, *, default_country: str = "1") -> str | None:
    """`value` as E.164 (`+15551234567`), or None when it cannot be read as one phone number.

    Takes what people type (`+1 (555) 123-4567`, `555-123-4567`, `1.555.123.4567`) and RFC 3966 global
    numbers (`tel:+1-555-123-4567`). A number without `+` is national to `default_country` (a calling code);
    a NANP number (+1) must have ten digits after the 1. Letters, extensions, `tel:` parameters and local
    `tel:` numbers are refused rather than guessed at."""
    canonical, _ = _parse_phone(value, default_country)
    return canonical


def normalize_work_order(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[Violation]]:
    """A copy of `doc` with every phone number rewritten as E.164 where it can be, and its violations.

    A phone that cannot be normalised is left as it was, so its violation quotes what was sent."""
    copied = _copy(doc)
    if not isinstance(copied, dict):
        return {}, validate_work_order(doc)
    for provider in _objects(copied.get("service_providers")):
        _normalize_field(provider, "phone_number")
    for contact in _objects(copied.get("contacts")):
        for method in _objects(contact.get("contact_methods")):
            if method.get("method") == "phone":
                _normalize_field(method, "value")
    return copied, validate_work_order(copied)


# --- the document -------------------------------------------------------------------------------------------


def _work_order(doc: Mapping[str, Any]) -> Iterator[Violation]:
    yield from _required_text(doc, "title", "")
    for key in ("description", "service_type"):
        yield from _optional(doc, key, "", "text")
    yield from _choice(doc, "workflow", WORKFLOWS, "")
    yield from _choice(doc, "orchestration", ORCHESTRATIONS, "")
    yield from _choice(doc, "status", JOB_STATUSES, "")
    yield from _optional(doc, "brand_id", "", "id")
    yield from _external_ids(doc, "")
    if "location" not in doc:
        yield Violation("location", "required: the Location of the work (street_1, city, state, postal_code)")
    else:
        yield from _location(doc["location"], "location")
    yield from _appointment_windows(doc)
    yield from _contacts(doc)
    yield from _service_providers(doc)


def _appointment_windows(doc: Mapping[str, Any]) -> Iterator[Violation]:
    windows = doc.get("appointment_windows")
    if windows is None:
        return
    if not isinstance(windows, list):
        yield Violation("appointment_windows", f"must be a list of {{start_time, end_time}}, {_got(windows)}")
        return
    for index, window in enumerate(windows):
        path = f"appointment_windows[{index}]"
        if not isinstance(window, Mapping):
            yield Violation(path, f"must be an object with start_time and end_time, {_got(window)}")
            continue
        start = yield from _timestamp(window, "start_time", path)
        end = yield from _timestamp(window, "end_time", path)
        if start is not None and end is not None and not start < end:
            yield Violation(
                f"{path}.end_time",
                f"must be later than start_time ({window['start_time']}), {_got(window['end_time'])}",
            )


def _timestamp(window: Mapping[str, Any], key: str, path: str) -> Checked[datetime]:
    """Yields the violation, returns the parsed time (None when absent or unreadable)."""
    value = window.get(key)
    where = f"{path}.{key}"
    if value is None:
        yield Violation(where, "required: an ISO 8601 timestamp with an offset, e.g. 2017-01-01T05:00:00Z")
        return None
    parsed = _parse_time(value)
    if parsed is None:
        yield Violation(where, f"must be an ISO 8601 timestamp, e.g. 2017-01-01T05:00:00Z, {_got(value)}")
    elif parsed.tzinfo is None:
        yield Violation(
            where, f"must say its offset (Z or +hh:mm): a time without one is ambiguous, {_got(value)}"
        )
        return None
    return parsed


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _contacts(doc: Mapping[str, Any]) -> Iterator[Violation]:
    contacts = doc.get("contacts")
    if contacts is None:
        yield Violation("contacts", "required: at least one contact, exactly one of them with primary: true")
        return
    if not isinstance(contacts, list) or not contacts:
        yield Violation(
            "contacts", f"must be a non-empty list of contacts, one with primary: true, {_got(contacts)}"
        )
        return
    primaries = []
    for index, contact in enumerate(contacts):
        path = f"contacts[{index}]"
        if not isinstance(contact, Mapping):
            yield Violation(path, f"must be an object (a Contact), {_got(contact)}")
            continue
        if contact.get("primary") is True:
            primaries.append(path)
        yield from _contact(contact, path)
    if len(primaries) != 1:
        found = f"got {len(primaries)} ({', '.join(primaries)})" if primaries else "got none"
        yield Violation("contacts", f"must have exactly one contact with primary: true, {found}")


def _contact(contact: Mapping[str, Any], path: str) -> Iterator[Violation]:
    for key in ("first_name", "last_name", "company_name", "notes"):
        yield from _optional(contact, key, path, "text")
    yield from _optional(contact, "primary", path, "bool")
    yield from _external_ids(contact, path)
    if contact.get("billing_address") is not None:
        yield from _location(contact["billing_address"], f"{path}.billing_address")
    methods = contact.get("contact_methods")
    if methods is None:
        return
    if not isinstance(methods, list):
        yield Violation(f"{path}.contact_methods", f"must be a list of contact methods, {_got(methods)}")
        return
    preferred: dict[str, list[str]] = {name: [] for name in CONTACT_METHODS}
    for index, method in enumerate(methods):
        where = f"{path}.contact_methods[{index}]"
        if not isinstance(method, Mapping):
            yield Violation(where, f"must be an object with method, value and preferred, {_got(method)}")
            continue
        yield from _contact_method(method, where)
        if method.get("preferred") is True and method.get("method") in CONTACT_METHODS:
            preferred[method["method"]].append(f"contact_methods[{index}]")
    for name, paths in preferred.items():
        if len(paths) > 1:
            yield Violation(
                f"{path}.contact_methods",
                f"may have at most one preferred {name} method (one of each kind is fine), "
                f"got {len(paths)} ({', '.join(paths)})",
            )


def _contact_method(method: Mapping[str, Any], path: str) -> Iterator[Violation]:
    yield from _choice(method, "method", CONTACT_METHODS, path, required=True)
    yield from _optional(method, "type", path, "text")
    yield from _optional(method, "preferred", path, "bool")
    value = method.get("value")
    if value is None:
        yield Violation(f"{path}.value", "required: the email address or phone number")
    elif method.get("method") == "email":
        yield from _email(value, f"{path}.value")
    elif method.get("method") == "phone":
        yield from _phone(value, f"{path}.value")


def _service_providers(doc: Mapping[str, Any]) -> Iterator[Violation]:
    providers = doc.get("service_providers")
    direct = doc.get("orchestration") == "direct"
    wanted = "exactly one service provider under direct orchestration" if direct else "at least one provider"
    if providers is None:
        yield Violation("service_providers", f"required: {wanted}")
        return
    if not isinstance(providers, list):
        yield Violation("service_providers", f"must be a list of service providers, {_got(providers)}")
        return
    if (direct and len(providers) != 1) or not providers:
        yield Violation("service_providers", f"must hold {wanted}, got {len(providers)}")
    for index, provider in enumerate(providers):
        path = f"service_providers[{index}]"
        if not isinstance(provider, Mapping):
            yield Violation(path, f"must be an object (a ServiceProvider), {_got(provider)}")
            continue
        yield from _service_provider(provider, path)


def _service_provider(provider: Mapping[str, Any], path: str) -> Iterator[Violation]:
    yield from _optional(provider, "id", path, "id")
    yield from _external_ids(provider, path)
    yield from _optional(provider, "name", path, "text")
    if provider.get("address") is not None:
        yield from _location(provider["address"], f"{path}.address")
    if provider.get("email") is not None:
        yield from _email(provider["email"], f"{path}.email")
    if provider.get("phone_number") is not None:
        yield from _phone(provider["phone_number"], f"{path}.phone_number")
    if provider.get("id") is None and not provider.get("external_ids") and not provider.get("name"):
        yield Violation(
            path, "must have id, external_ids or name, so Dispatch can find or create the provider"
        )


# --- locations ----------------------------------------------------------------------------------------------


def _location(value: Any, path: str) -> Iterator[Violation]:
    if not isinstance(value, Mapping):
        yield Violation(
            path, f"must be an object (a Location: street_1, city, state, postal_code), {_got(value)}"
        )
        return
    for key in ("street_1", "city"):
        yield from _required_text(value, key, path)
    yield from _optional(value, "street_2", path, "text")
    yield from _external_ids(value, path)
    country = yield from _country(value, path)
    state_country = yield from _state(value, path, country)
    expected = country or state_country
    because = (
        f"country is {country!r}"
        if country
        else f"state {value.get('state')!r} is in {_country_name(expected or '')}"
    )
    yield from _postal_code(value, path, expected, because)
    if value.get("timezone") is not None:
        yield from _timezone(value["timezone"], f"{path}.timezone")


def _country(location: Mapping[str, Any], path: str) -> Checked[str]:
    """Yields the violation, returns the country when it is one Dispatch serves."""
    country = location.get("country")
    if country is None:
        return None
    if country not in COUNTRIES:
        yield Violation(
            f"{path}.country", f"must be US or CA: Dispatch serves the US and Canada only, {_got(country)}"
        )
        return None
    return str(country)


def _state(location: Mapping[str, Any], path: str, country: str | None) -> Checked[str]:
    """Yields the violation, returns the state's country (None when absent or unknown)."""
    state = location.get("state")
    if state is None:
        return None
    found = _COUNTRY_OF_STATE.get(state) if isinstance(state, str) else None
    if found is None:
        yield Violation(f"{path}.state", f"must be {STATE_FORMS}, {_got(state)}")
    elif country is not None and found != country:
        yield Violation(
            f"{path}.state", f"{state!r} is in {_country_name(found)}, but country is {country!r}"
        )
    return found


def _postal_code(
    location: Mapping[str, Any], path: str, expected: str | None, because: str
) -> Iterator[Violation]:
    code = location.get("postal_code")
    if code is None:
        return
    where = f"{path}.postal_code"
    if not isinstance(code, str):
        yield Violation(where, f"must be {POSTAL_FORMS} as a string, {_got(code)}")
        return
    found = "US" if _US_POSTAL.fullmatch(code) else "CA" if _CA_POSTAL.fullmatch(code) else None
    if found is None and _ZIP_PLUS_4.fullmatch(code):
        yield Violation(
            where, f"must be a 5-digit US ZIP code: ZIP+4 is not accepted (send {code[:5]!r}), {_got(code)}"
        )
    elif found is None:
        yield Violation(where, f"must be {POSTAL_FORMS}, {_got(code)}")
    elif expected is not None and found != expected:
        kind = "a US ZIP code" if found == "US" else "a Canadian postal code"
        yield Violation(where, f"{code!r} is {kind}, but {because}")


def _timezone(value: Any, path: str) -> Iterator[Violation]:
    zones = _time_zones()
    if not zones:
        yield Violation(
            path,
            "cannot be checked: this machine has no IANA time zone database "
            "(install the tzdata package or the system's tzdata)",
        )
    elif not isinstance(value, str) or value not in zones:
        yield Violation(path, f"must be an IANA time zone name, e.g. America/New_York, {_got(value)}")


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    """Read once: the set is a scan of the tz database on disk."""
    return frozenset(available_timezones())


def _country_name(country: str) -> str:
    return "the US" if country == "US" else "Canada"


# --- values -------------------------------------------------------------------------------------------------


def _email(value: Any, path: str) -> Iterator[Violation]:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        yield Violation(path, f"must be an email address such as name@example.com, {_got(value)}")


def _phone(value: Any, path: str) -> Iterator[Violation]:
    canonical, reason = _parse_phone(value, "1")
    if canonical is None:
        yield Violation(path, f"must be a phone number in {PHONE_FORMS}: {reason}, {_got(value)}")
    elif not _PHONE_AS_SENT.fullmatch(value.strip()) or value != value.strip():
        yield Violation(
            path,
            f"must be written in {PHONE_FORMS}, {_got(value)} "
            f"(normalize_work_order rewrites it as {canonical!r})",
        )


def _parse_phone(value: Any, default_country: str) -> tuple[str | None, str]:
    """(E.164 number, "") or (None, why not)."""
    if not _COUNTRY_CODE.fullmatch(default_country):
        raise ValueError(f"default_country must be a calling code such as '1', got {default_country!r}")
    if not isinstance(value, str):
        return None, "a phone number is a string"
    text = value.strip()
    if text[:4].lower() == "tel:":
        text = text[4:]
        if not text.startswith("+"):
            return None, "a tel: URI must hold a global number starting with +"
    if ";" in text:
        return None, "extensions and tel: parameters (;ext=, ;phone-context=) are not accepted"
    if not _PHONE_CHARS.fullmatch(text):
        return None, "only digits, a leading +, spaces and - . ( ) may appear"
    if "+" in text[1:]:
        return None, "+ may only start the number"
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        return _international(digits)
    if default_country == "1":
        if len(digits) == 10:
            return f"+1{digits}", ""
        if len(digits) == 11 and digits.startswith("1"):
            return f"+{digits}", ""
        return None, f"a US or Canadian number has 10 digits (11 starting with 1), not {len(digits)}"
    national = digits[1:] if digits.startswith("0") else digits  # the trunk prefix
    return _international(default_country + national)


def _international(digits: str) -> tuple[str | None, str]:
    if digits.startswith("1") and len(digits) != 11:
        return None, f"a +1 (US or Canadian) number has 10 digits after the 1, not {len(digits) - 1}"
    if digits.startswith("0"):
        return None, "a country calling code does not start with 0"
    if not 7 <= len(digits) <= 15:
        return None, f"an international number has 7 to 15 digits, not {len(digits)}"
    return f"+{digits}", ""


def _normalize_field(holder: dict[str, Any], key: str) -> None:
    value = holder.get(key)
    if isinstance(value, str):
        canonical = normalize_phone(value)
        if canonical is not None:
            holder[key] = canonical


def _external_ids(holder: Mapping[str, Any], path: str) -> Iterator[Violation]:
    ids = holder.get("external_ids")
    where = _join(path, "external_ids")
    if ids is None:
        return
    if not isinstance(ids, list):
        yield Violation(where, f"must be a list of non-empty strings, {_got(ids)}")
        return
    for index, item in enumerate(ids):
        if not isinstance(item, str) or not item.strip():
            yield Violation(f"{where}[{index}]", f"must be a non-empty string, {_got(item)}")


def _choice(
    holder: Mapping[str, Any], key: str, allowed: tuple[str, ...], path: str, *, required: bool = False
) -> Iterator[Violation]:
    value = holder.get(key)
    if value is None and not required:
        return
    if value not in allowed:
        shown = ", ".join(allowed)
        yield Violation(_join(path, key), f"must be one of {shown}, {_got(value)}")


def _required_text(holder: Mapping[str, Any], key: str, path: str) -> Iterator[Violation]:
    value = holder.get(key)
    if not isinstance(value, str) or not value.strip():
        yield Violation(_join(path, key), f"required: a non-empty string, {_got(value)}")


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda value: isinstance(value, str), "a string"),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
    "id": (
        lambda value: isinstance(value, int) and not isinstance(value, bool),
        "an integer (Dispatch's id)",
    ),
}


def _optional(holder: Mapping[str, Any], key: str, path: str, kind: str) -> Iterator[Violation]:
    value = holder.get(key)
    accepts, wanted = _KINDS[kind]
    if value is not None and not accepts(value):
        yield Violation(_join(path, key), f"must be {wanted}, {_got(value)}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _got(value: Any) -> str:
    """How a message quotes what it was given: short, and JSON's words for JSON's types."""
    if value is None:
        return "got nothing"
    if isinstance(value, bool):
        return f"got {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "..."
        return f"got {shown!r}"
    if isinstance(value, int | float):
        return f"got {value}"
    if isinstance(value, Mapping):
        return "got an object"
    if isinstance(value, list):
        return f"got a list of {len(value)}"
    return f"got a {type(value).__name__}"


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value

"""A Job Offer (the deprecated v1 entity) as a v3 Work Order, by the migration guide's attribute table.

The table is applied as written; where the guide's example and its table disagree, docs/wire-formats.md
("Converter: where the seed disagrees with itself") says which one this follows. Nothing is dropped silently:
every attribute the Work Order has no place for becomes a warning naming the source file and the path, so a
migration can be checked file by file. The result is not validated here: `validation.validate_work_order`
says whether Dispatch would take it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Location attributes (the guide's Location table, plus `country`, which validation reads)
LOCATION_KEYS = (
    "street_1",
    "street_2",
    "city",
    "state",
    "postal_code",
    "timezone",
    "external_ids",
    "country",
)
# Job Offer attributes the table drops, and the guide's reason
DROPPED = {
    "duration": "expiration is no longer supported",
    "duration_algorithm": "expiration is no longer supported",
    "ui_options": "these are configured per account now, not per work order (ask your account manager)",
}
TYPE_DROPPED = "work orders can only be sent to service providers"
HOME_ADDRESS_DROPPED = "no home address any more: the work order's location is used"
UNKNOWN = "not an attribute the migration guide maps; dropped"
# offer_strategy spellings -> orchestration
ORCHESTRATION_SPELLINGS = {
    "direct": "direct",
    "round_robin": "round_robin",
    "roundrobin": "round_robin",
    "jump_ball": "jump_ball",
    "jumpball": "jump_ball",
}


class NotAJobOffer(ValueError):
    """The document has no `job` object, so it is not a Job Offer (or not one this converter can read)."""


def convert_job_offer(offer: Mapping[str, Any], *, source: str = "") -> tuple[dict[str, Any], list[str]]:
    """The Work Order for `offer` and one warning ("source: path: message") per attribute left behind.

    Raises NotAJobOffer when `offer` is not an object holding a `job` object."""
    if not isinstance(offer, Mapping):
        raise NotAJobOffer("not a job offer: the document is not a JSON object")
    if not isinstance(offer.get("job"), Mapping):
        raise NotAJobOffer('not a job offer: no "job" object')
    notes: list[tuple[str, str]] = []
    order: dict[str, Any] = {"workflow": "service", "orchestration": _orchestration(offer, notes)}
    order.update(_job(offer["job"], notes))
    windows = _windows(offer.get("appointment"), notes)
    if windows is not None:
        order["appointment_windows"] = windows
    if "entities" in offer:
        order["service_providers"] = list(_providers(offer["entities"], notes))
    if offer.get("customer") is not None and _is_object(offer["customer"], "customer", notes):
        order["contacts"] = [_contact(offer["customer"], notes)]
    known = {"offer_strategy", "job", "appointment", "customer", "entities"}
    for key in offer:
        if key in DROPPED:
            notes.append((key, f"dropped: {DROPPED[key]}"))
        elif key not in known:
            notes.append((key, UNKNOWN))
    prefix = f"{source}: " if source else ""
    return order, [
        f"{prefix}{path}: {message}" for path, message in sorted(notes, key=_document_order(offer))
    ]


def _orchestration(offer: Mapping[str, Any], notes: list[tuple[str, str]]) -> Any:
    """`offer_strategy` in v3's spelling; "direct" when absent (job offers were always direct)."""
    strategy = offer.get("offer_strategy")
    if strategy is None:
        return "direct"
    spelled = str(strategy).strip().lower().replace(" ", "_").replace("-", "_")
    if isinstance(strategy, str) and spelled in ORCHESTRATION_SPELLINGS:
        return ORCHESTRATION_SPELLINGS[spelled]
    notes.append(
        (
            "offer_strategy",
            f"{strategy!r} is not an orchestration v3 knows (direct, round_robin, jump_ball); kept",
        )
    )
    return strategy


def _job(job: Mapping[str, Any], notes: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("title", "description", "service_type"):
        if job.get(key) is not None:
            out[key] = job[key]
    if job.get("external_id") is not None:
        out["external_ids"] = [_text(job["external_id"])]
    if job.get("address") is not None:
        out["location"] = _location(job["address"], "job.address", notes)
    _unknown(job, "job", ("title", "description", "service_type", "external_id", "address"), notes)
    return out


def _windows(appointment: Any, notes: list[tuple[str, str]]) -> list[dict[str, Any]] | None:
    if appointment is None or not _is_object(appointment, "appointment", notes):
        return None
    starts = _list(appointment.get("window_start_time"), "appointment.window_start_time", notes)
    ends = _list(appointment.get("window_end_time"), "appointment.window_end_time", notes)
    windows = [{"start_time": start, "end_time": end} for start, end in zip(starts, ends, strict=False)]
    for name, times, other in (("window_start_time", starts, "end"), ("window_end_time", ends, "start")):
        for index in range(len(windows), len(times)):
            notes.append((f"appointment.{name}[{index}]", f"no matching window_{other}_time; dropped"))
    _unknown(appointment, "appointment", ("window_start_time", "window_end_time"), notes)
    return windows


def _contact(customer: Mapping[str, Any], notes: list[tuple[str, str]]) -> dict[str, Any]:
    """The customer as the primary contact: the email first (preferred), then the phones in order."""
    contact: dict[str, Any] = {}
    for key in ("first_name", "last_name"):
        if customer.get(key) is not None:
            contact[key] = customer[key]
    contact["primary"] = True
    if customer.get("billing_address") is not None:
        contact["billing_address"] = _location(customer["billing_address"], "customer.billing_address", notes)
    if customer.get("external_id") is not None:
        contact["external_ids"] = [_text(customer["external_id"])]
    methods: list[dict[str, Any]] = []
    if customer.get("email") is not None:
        methods.append({"method": "email", "preferred": True, "value": customer["email"]})
    methods.extend(_phones(customer.get("phone_numbers"), notes))
    if methods:
        contact["contact_methods"] = methods
    if "home_address" in customer:
        notes.append(("customer.home_address", f"dropped: {HOME_ADDRESS_DROPPED}"))
    known = (
        "first_name",
        "last_name",
        "email",
        "phone_numbers",
        "external_id",
        "billing_address",
        "home_address",
    )
    _unknown(customer, "customer", known, notes)
    return contact


def _phones(numbers: Any, notes: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Each phone number as a phone method; its `primary` becomes `preferred` (see docs/wire-formats.md)."""
    for index, phone in enumerate(_list(numbers, "customer.phone_numbers", notes)):
        path = f"customer.phone_numbers[{index}]"
        if not _is_object(phone, path, notes):
            continue
        method: dict[str, Any] = {"method": "phone"}
        if phone.get("type") is not None:
            method["type"] = phone["type"]
        method["value"] = phone.get("number")
        method["preferred"] = phone.get("primary") is True
        _unknown(phone, path, ("number", "type", "primary"), notes)
        yield method


def _providers(entities: Any, notes: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    for index, entity in enumerate(_list(entities, "entities", notes)):
        path = f"entities[{index}]"
        if not _is_object(entity, path, notes):
            continue
        provider: dict[str, Any] = {}
        if entity.get("id") is not None:
            provider["id"] = entity["id"]
        if entity.get("external_id") is not None:
            provider["external_ids"] = [_text(entity["external_id"])]
        if "type" in entity:
            notes.append((f"{path}.type", f"dropped ({entity['type']!r}): {TYPE_DROPPED}"))
        data = entity.get("data")
        if data is not None and _is_object(data, f"{path}.data", notes):
            provider.update(_provider_data(data, f"{path}.data", notes))
        _unknown(entity, path, ("id", "external_id", "type", "data"), notes)
        yield provider


def _provider_data(data: Mapping[str, Any], path: str, notes: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.get("name") is not None:
        out["name"] = data["name"]
    if data.get("address") is not None:
        out["address"] = _location(data["address"], f"{path}.address", notes)
    for key in ("phone_number", "email"):
        if data.get(key) is not None:
            out[key] = data[key]
    _unknown(data, path, ("name", "address", "phone_number", "email"), notes)
    return out


def _location(address: Any, path: str, notes: list[tuple[str, str]]) -> Any:
    """The address's Location attributes; anything else is a warning. A non-object is kept for validation."""
    if not isinstance(address, Mapping):
        return address
    _unknown(address, path, LOCATION_KEYS, notes)
    return {key: value for key, value in address.items() if key in LOCATION_KEYS}


def _unknown(
    holder: Mapping[str, Any], path: str, known: tuple[str, ...], notes: list[tuple[str, str]]
) -> None:
    notes.extend((f"{path}.{key}", UNKNOWN) for key in holder if key not in known)


def _is_object(value: Any, path: str, notes: list[tuple[str, str]]) -> bool:
    if isinstance(value, Mapping):
        return True
    notes.append((path, "not an object; dropped"))
    return False


def _list(value: Any, path: str, notes: list[tuple[str, str]]) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    notes.append((path, "not a list; dropped"))
    return []


def _text(value: Any) -> Any:
    """An external id as v3's string; other shapes are kept for validation to name."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _document_order(offer: Mapping[str, Any]) -> Any:
    """Warnings in the order of their top-level attribute in the offer (the sort is stable within one)."""
    rank = {key: index for index, key in enumerate(offer)}

    def key(note: tuple[str, str]) -> int:
        return rank.get(note[0].split(".")[0].split("[")[0], len(rank))

    return key

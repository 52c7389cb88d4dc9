"""Look-ups against Dispatch's real-time APIs: who serves a place (Match Orgs), which technicians can take a
visit and when (Match Technicians), when technicians are free (whitespace) or busy (block times).

The playbook documents them by example only (docs/wire-formats.md, "Dispatch look-ups", has the shapes and
our readings). Inputs are checked before anything is sent (a malformed postal code, an end before the
start, a duration of zero would only earn an empty or confusing answer): `LookupRefused` says which input
and what is allowed. Answers are read leniently: an entry that cannot be read is left out and described in
`Found.problems`, the rest is kept; keys the playbook does not show are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from connector.dispatch_v3.validation import _postal_code
from connector.errors import LookupRefused

SEARCH_ORGS_PATH = "/v3/search/oms"
SEARCH_TECHNICIANS_PATH = "/v3/search/contractors"
SLOTS_PATH = "/v1/availability/slots"
SCHEDULE_PATH = "/v1/availability/schedule"
MAX_WINDOW = timedelta(days=62)
_ZIP_PLUS_4 = re.compile(r"(\d{5})-\d{4}")

T = TypeVar("T")


class Getter(Protocol):
    """What a look-up needs of the client: `DispatchV3Client.get` (token, retries)."""

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Found(Generic[T]):
    """What an answer held: the entries read, and one line per entry that could not be (left out)."""

    items: tuple[T, ...]
    problems: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class OrgMatch:
    """An organization (provider) serving the place. `ranking_score` is not in the playbook's sample; it is
    read when Dispatch sends one (or `score`), so "best" can mean the highest score."""

    organization_id: int | None
    external_ids: tuple[str, ...]
    ranking_score: float | None = None


@dataclass(frozen=True)
class TechnicianSlot:
    """A stretch of a technician's free time (times as Dispatch wrote them, with their offset)."""

    start: datetime
    end: datetime
    ranking_score: float | None = None
    miles_from_start: float | None = None
    miles_to_end: float | None = None
    miles_added: float | None = None


@dataclass(frozen=True)
class TechnicianMatch:
    user_id: int | None
    full_name: str | None
    external_ids: tuple[str, ...]
    organization_id: int | None
    organization_external_ids: tuple[str, ...]
    slots: tuple[TechnicianSlot, ...]


@dataclass(frozen=True)
class FreeSlot:
    """Whitespace: a technician is free from `start` to `end`."""

    user_id: int | None
    external_id: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Block:
    """Time a technician is not available; `data` describes the appointment (job, customer) when it is one."""

    start: datetime
    end: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkDay:
    user_id: int | None
    external_id: str | None
    day_start: datetime
    day_end: datetime
    blocks: tuple[Block, ...]


class Lookups:
    """The four look-ups over one client (`DispatchV3Client` or anything with its `get`)."""

    def __init__(self, client: Getter) -> None:
        self.client = client

    def match_orgs(
        self, postal_code: str, *, trades: Sequence[str] = (), **params: str | int | float
    ) -> Found[OrgMatch]:
        """`GET /v3/search/oms`: the organizations serving `postal_code` (and having `trades`). `params` are
        passed as they are: the playbook says Dispatch takes more match parameters than it documents."""
        query: dict[str, Any] = {"postal_code": check_postal_code(postal_code)}
        if trades:
            query["trades"] = _trades(trades)
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise LookupRefused(f"match parameter {name} must be a string or a number, got {value!r}")
            query[name] = value
        answer = self.client.get(SEARCH_ORGS_PATH, query)
        return _read(answer, "account_organizations", _org)

    def match_technicians(
        self,
        postal_code: str,
        address: str,
        appointment_duration_minutes: int,
        availability_start_time: datetime,
        availability_end_time: datetime,
        trades: Sequence[str] = (),
    ) -> Found[TechnicianMatch]:
        """`GET /v3/search/contractors`: technicians near `address` with free time for the appointment."""
        if not isinstance(address, str) or not address.strip():
            raise LookupRefused("address is required: where the job is (street, city, state, postal code)")
        start, end = check_window(availability_start_time, availability_end_time)
        minutes = check_duration(appointment_duration_minutes, start, end)
        query: dict[str, Any] = {
            "postal_code": check_postal_code(postal_code),
            "address": " ".join(address.split()),
            "appointment_duration_minutes": minutes,
            "availability_start_time": wire_time(start),
            "availability_end_time": wire_time(end),
        }
        if trades:
            query["trades"] = _trades(trades)
        return _read(self.client.get(SEARCH_TECHNICIANS_PATH, query), "matches", _technician)

    def availability_slots(
        self, user_external_ids: Sequence[str], start: datetime, end: datetime, duration_minutes: int
    ) -> Found[FreeSlot]:
        """`GET /v1/availability/slots` (whitespace): when each technician has `duration_minutes` free."""
        query = self._availability(user_external_ids, start, end, duration_minutes)
        return _read(self.client.get(SLOTS_PATH, query), "slots", _free_slot)

    def availability_schedule(
        self,
        user_external_ids: Sequence[str],
        start: datetime,
        end: datetime,
        duration_minutes: int | None = None,
    ) -> Found[WorkDay]:
        """`GET /v1/availability/schedule` (block times): each technician's work days and booked time."""
        query = self._availability(user_external_ids, start, end, duration_minutes)
        return _read(self.client.get(SCHEDULE_PATH, query), "days", _work_day)

    def _availability(
        self, users: Sequence[str], start: datetime, end: datetime, duration: int | None
    ) -> dict[str, Any]:
        if isinstance(users, str):
            users = [users]
        ids = list(dict.fromkeys(u.strip() for u in users if isinstance(u, str) and u.strip()))
        if not ids or len(ids) != len([u for u in users if u]):
            raise LookupRefused(
                f"user external ids must be non-empty strings, at least one (the technicians' ids in your "
                f"system), got {list(users)!r}"
            )
        start, end = check_window(start, end)
        query: dict[str, Any] = {
            "user_external_id[]": ids,
            "start_time": wire_time(start),
            "end_time": wire_time(end),
        }
        if duration is not None:
            query["duration"] = check_duration(duration, start, end)
        return query


# -- checks before sending ------------------------------------------------------------------------


def check_postal_code(value: Any) -> str:
    """The postal code to send: a 5-digit US ZIP code (ZIP+4 is cut to its first five: a search needs only
    the area) or a Canadian code in capitals; LookupRefused for anything else."""
    code = " ".join(value.split()).upper() if isinstance(value, str) else value
    if isinstance(code, str) and (plus4 := _ZIP_PLUS_4.fullmatch(code)):
        code = plus4.group(1)
    problem = next(iter(_postal_code({"postal_code": code}, "", None, "")), None)
    if code is None or code == "" or problem is not None:
        reason = problem.message if problem else "is required"
        raise LookupRefused(f"postal code {value!r}: {reason}")
    return str(code)


def check_window(start: Any, end: Any) -> tuple[datetime, datetime]:
    """Both times with an offset (a time without one is ambiguous by hours), end after start, at most
    62 days apart."""
    for name, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime):
            raise LookupRefused(f"{name} time must be a date and time, got {moment!r}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise LookupRefused(f"{name} time {moment.isoformat()} has no time zone: give its offset or zone")
    if end <= start:
        raise LookupRefused(
            f"end time {wire_time(end)} is not after start time {wire_time(start)}: the window is empty"
        )
    if end - start > MAX_WINDOW:
        raise LookupRefused(f"the window from {wire_time(start)} to {wire_time(end)} is longer than 62 days")
    return start, end


def check_duration(minutes: Any, start: datetime, end: datetime) -> int:
    """A whole number of minutes, more than zero, that fits in the window."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
        raise LookupRefused(f"duration must be a whole number of minutes above 0, got {minutes!r}")
    if timedelta(minutes=minutes) > end - start:
        raise LookupRefused(
            f"duration of {minutes} minutes does not fit in the window from {wire_time(start)} to "
            f"{wire_time(end)}"
        )
    return minutes


def wire_time(moment: datetime) -> str:
    """ISO 8601 to whole seconds, with its own offset (`Z` for UTC), as the playbook's requests write it."""
    text = moment.replace(microsecond=0).isoformat()
    return text.removesuffix("+00:00") + "Z" if moment.utcoffset() == timedelta(0) else text


def _trades(trades: Sequence[str]) -> str:
    """Comma-separated, as the REST sample sends them (the managed package joins with `|`)."""
    if isinstance(trades, str):
        trades = [trades]
    names = [t.strip() for t in trades if isinstance(t, str) and t.strip()]
    if len(names) != len(trades) or any("," in t for t in names):
        raise LookupRefused(f"trades must be non-empty names without commas, got {list(trades)!r}")
    return ",".join(dict.fromkeys(names))


# -- reading answers ------------------------------------------------------------------------------


class _Unreadable(ValueError):
    pass


def _read(answer: Mapping[str, Any], key: str, parse: Any) -> Found[Any]:
    entries = answer.get(key)
    if entries is None:
        return Found((), (f"the answer has no {key!r} list; read as none",))
    if not isinstance(entries, list):
        return Found((), (f"{key}: not a list ({type(entries).__name__}); read as none",))
    items, problems = [], []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise _Unreadable(f"not an object ({type(entry).__name__})")
            items.append(parse(entry))
        except _Unreadable as exc:
            problems.append(f"{key}[{index}]: {exc}; left out")
    return Found(tuple(items), tuple(problems))


def _org(entry: Mapping[str, Any]) -> OrgMatch:
    score = _number(entry.get("ranking_score", entry.get("score")))
    return OrgMatch(_integer(entry.get("organization_id")), _ids(entry.get("external_ids")), score)


def _technician(entry: Mapping[str, Any]) -> TechnicianMatch:
    user = _object(entry.get("entity"))
    organization = _object(user.get("organization"))
    slots = []
    for index, slot in enumerate(entry.get("slots") or []):
        if not isinstance(slot, dict):
            raise _Unreadable(f"slots[{index}] is not an object")
        where = f"slots[{index}]."
        slots.append(
            TechnicianSlot(
                start=_time(slot, "start", where),
                end=_time(slot, "end", where),
                ranking_score=_number(slot.get("ranking_score")),
                miles_from_start=_number(slot.get("miles_from_start")),
                miles_to_end=_number(slot.get("miles_to_end")),
                miles_added=_number(slot.get("miles_added")),
            )
        )
    full_name = user.get("full_name")
    return TechnicianMatch(
        user_id=_integer(user.get("id", entry.get("entity_id"))),
        full_name=str(full_name) if full_name is not None else None,
        external_ids=_ids(user.get("external_ids")),
        organization_id=_integer(user.get("organization_id", organization.get("id"))),
        organization_external_ids=_ids(organization.get("external_ids")),
        slots=tuple(slots),
    )


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _free_slot(entry: Mapping[str, Any]) -> FreeSlot:
    external_id = entry.get("external_id")
    return FreeSlot(
        _integer(entry.get("entity_id")),
        str(external_id) if external_id is not None else None,
        _time(entry, "start_time"),
        _time(entry, "end_time"),
    )


def _work_day(entry: Mapping[str, Any]) -> WorkDay:
    blocks = []
    for index, block in enumerate(entry.get("blocks") or []):
        if not isinstance(block, dict):
            raise _Unreadable(f"blocks[{index}] is not an object")
        data = block.get("data")
        blocks.append(
            Block(
                _time(block, "start", f"blocks[{index}]."),
                _time(block, "end", f"blocks[{index}]."),
                dict(data) if isinstance(data, dict) else {},
            )
        )
    external_id = entry.get("external_id")
    return WorkDay(
        _integer(entry.get("user_id")),
        str(external_id) if external_id is not None else None,
        _time(entry, "day_start"),
        _time(entry, "day_end"),
        tuple(blocks),
    )


def _time(entry: Mapping[str, Any], key: str, where: str = "") -> datetime:
    value = entry.get(key)
    try:
        moment = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise _Unreadable(f"{where}{key} {value!r} is not an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _ids(value: Any) -> tuple[str, ...]:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return (str(value),)
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool) and str(v))

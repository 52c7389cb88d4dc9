"""What the Dispatch v3 emulator knows for the look-ups: technicians with their work hours and booked time,
and the service areas and trades of providers. Built to docs/wire-formats.md ("Dispatch look-ups").

Whitespace (`/v1/availability/slots`) is each technician's working hours minus the time booked, cut to the
request's window, keeping the free stretches that hold `duration` minutes; block times
(`/v1/availability/schedule`) are the working days and the booked time in them; Match Technicians searches the
same free time among the technicians who serve a postal code and have every trade asked for; Match Orgs lists
the providers whose service area holds the postal code. The emulator has no map: the distances Match
Technicians reports are seeded per technician.

The days looked at are the calendar dates from the window's start to its end as the request writes them (with
its own offset): `2022-10-24T04:00:00Z .. 2022-10-25T03:59:59Z` covers the 24th and the 25th, which is how
the playbook's block-times sample lists a second, empty day. `LookupControl` is mixed into the emulator:
`add_technician`, `book_technician`, `add_provider` (also `POST /control/<name>`), `technicians()`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.sandbox.dispatch_v3.store import Record, V3Store

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Interval = tuple[datetime, datetime]


@dataclass
class Booking:
    """Time a technician is not available: an appointment (with the playbook's `data`) or an event."""

    start: datetime
    end: datetime
    data: dict[str, Any] | None = None


@dataclass
class Technician:
    id: int
    external_id: str
    full_name: str
    postal_codes: frozenset[str]
    trades: frozenset[str]
    zone: ZoneInfo
    work_days: frozenset[int]
    hours: tuple[time, time]
    organization: Record | None = None
    miles: tuple[float, float] = (0.0, 0.0)  # from the technician's start to the job, from the job to the end
    bookings: list[Booking] = field(default_factory=list)

    def record(self) -> Record:
        """As the control API shows it."""
        return {
            "id": self.id,
            "external_id": self.external_id,
            "full_name": self.full_name,
            "postal_codes": sorted(self.postal_codes),
            "trades": sorted(self.trades),
            "timezone": self.zone.key,
            "work_days": [WEEKDAYS[d] for d in sorted(self.work_days)],
            "hours": [self.hours[0].strftime("%H:%M"), self.hours[1].strftime("%H:%M")],
            "organization_id": self.organization["id"] if self.organization else None,
            "miles_from_start": self.miles[0],
            "miles_to_end": self.miles[1],
            "booked": [
                {"start": iso(b.start), "end": iso(b.end), **({"data": b.data} if b.data else {})}
                for b in self.bookings
            ],
        }

    def work_day(self, day: date) -> Interval | None:
        """The working hours on a local date, in UTC; None on a day off."""
        if day.weekday() not in self.work_days:
            return None
        start = datetime.combine(day, self.hours[0], self.zone).astimezone(UTC)
        return start, datetime.combine(day, self.hours[1], self.zone).astimezone(UTC)

    def blocks(self, day: Interval) -> list[Booking]:
        """Booked time inside a working day, cut to it, in time order."""
        inside = [
            Booking(max(b.start, day[0]), min(b.end, day[1]), b.data)
            for b in self.bookings
            if b.start < day[1] and b.end > day[0]
        ]
        return sorted(inside, key=lambda b: (b.start, b.end))

    def free(self, day: Interval) -> list[Interval]:
        """The working day minus its booked time."""
        free: list[Interval] = []
        cursor = day[0]
        for block in self.blocks(day):
            if block.start > cursor:
                free.append((cursor, block.start))
            cursor = max(cursor, block.end)
        if cursor < day[1]:
            free.append((cursor, day[1]))
        return free

    def whitespace(self, window: Interval, duration: timedelta) -> list[Interval]:
        """Free stretches inside the window that hold `duration`, in time order."""
        found = []
        for day in self.days(window):
            for start, end in self.free(day):
                start, end = max(start, window[0]), min(end, window[1])
                if end > start and end - start >= duration:
                    found.append((start, end))
        return found

    def days(self, window: Interval) -> Iterator[Interval]:
        """The working days of the dates the window names (see the module's docstring)."""
        day = window[0].date()
        while day <= window[1].date():
            hours = self.work_day(day)
            if hours is not None:
                yield hours
            day += timedelta(days=1)


class LookupBook:
    """Technicians by id; providers live in the store (`store.providers`), so a work order naming a seeded
    provider's external id is matched to it. Uses the store's lock and id sequence."""

    def __init__(self, store: V3Store) -> None:
        self.store = store
        self.technicians: dict[int, Technician] = {}

    def technician(self, ref: Any) -> Technician:
        with self.store.lock:
            for tech in self.technicians.values():
                if ref == tech.id or str(ref) == tech.external_id or str(ref) == str(tech.id):
                    return tech
        raise KeyError(f"no technician {ref!r}")

    def by_external_ids(self, external_ids: Iterable[str]) -> list[Technician]:
        """The technicians named, in the order asked (an unknown id names no one)."""
        with self.store.lock:
            by_id = {t.external_id: t for t in self.technicians.values()}
            return [by_id[x] for x in dict.fromkeys(external_ids) if x in by_id]

    def serving(self, postal_code: str, trades: Iterable[str]) -> list[Technician]:
        wanted = {trade_key(t) for t in trades}
        code = postal_key(postal_code)
        with self.store.lock:
            return [t for t in self.technicians.values() if code in t.postal_codes and wanted <= t.trades]

    def providers_serving(self, postal_code: str, trades: Iterable[str]) -> list[Record]:
        wanted = {trade_key(t) for t in trades}
        code = postal_key(postal_code)
        with self.store.lock:
            return [
                copy.deepcopy(p)
                for p in self.store.providers.values()
                if code in p.get("postal_codes", ()) and wanted <= set(p.get("trades", ()))
            ]

    def provider(self, ref: Any) -> Record:
        with self.store.lock:
            for provider in self.store.providers.values():
                if ref == provider["id"] or str(ref) in provider["external_ids"]:
                    return provider
        raise KeyError(f"no provider {ref!r}")


class LookupControl:
    """The seeding side, mixed into `DispatchV3Emulator` (which provides `store` and `lookups`)."""

    store: V3Store
    lookups: LookupBook

    def add_technician(
        self,
        external_id: str,
        full_name: str = "",
        postal_codes: Sequence[str] = (),
        trades: Sequence[str] = (),
        timezone: str = "America/New_York",
        work_days: Sequence[str] = WEEKDAYS[:5],
        hours: Sequence[str] = ("08:00", "17:00"),
        organization: int | str | None = None,
        booked: Sequence[dict[str, Any]] = (),
        miles_from_start: float = 0.0,
        miles_to_end: float | None = None,
        id: int | None = None,  # the wire's name; a chosen id reproduces a sample answer
    ) -> Record:
        """A technician (a Dispatch user) who works `hours` (local, "HH:MM") on `work_days` in `timezone`,
        serves `postal_codes`, has `trades`, belongs to the provider `organization` (Dispatch id or external
        id), and is booked for `booked` (`{"start", "end", "data"?}`, ISO 8601). Returns it as
        `GET /control/technicians` shows it."""
        if not isinstance(external_id, str) or not external_id.strip():
            raise ValueError("external_id must be a non-empty string")
        tech_id = _new_id(id, self.store, self.lookups.technicians)
        with self.store.lock:
            if any(t.external_id == external_id for t in self.lookups.technicians.values()):
                raise ValueError(f"a technician with external id {external_id!r} exists")
            tech = Technician(
                id=tech_id,
                external_id=external_id,
                full_name=str(full_name),
                postal_codes=frozenset(postal_key(c) for c in _strings(postal_codes, "postal_codes")),
                trades=frozenset(trade_key(t) for t in _strings(trades, "trades")),
                zone=_zone(timezone),
                work_days=_work_days(work_days),
                hours=_hours(hours),
                organization=self.lookups.provider(organization) if organization is not None else None,
                miles=_miles(miles_from_start, miles_to_end),
                bookings=[_booking(**_booking_args(b)) for b in booked],
            )
            self.lookups.technicians[tech.id] = tech
            return tech.record()

    def book_technician(
        self, technician: int | str, start: str, end: str, data: dict[str, Any] | None = None
    ) -> Record:
        """Book time for a technician (by Dispatch id or external id); returns the technician."""
        booking = _booking(start, end, data)
        with self.store.lock:
            tech = self.lookups.technician(technician)
            tech.bookings.append(booking)
            return tech.record()

    def add_provider(
        self,
        external_ids: Sequence[str],
        name: str = "",
        postal_codes: Sequence[str] = (),
        trades: Sequence[str] = (),
        id: int | None = None,
    ) -> Record:
        """A provider (an organization) serving `postal_codes` with `trades`. One that already holds one of
        the external ids (e.g. made by a work order) gets the service area and trades instead."""
        ids = list(dict.fromkeys(_strings(external_ids, "external_ids")))
        if not ids:
            raise ValueError("external_ids must name at least one id")
        area = {
            "postal_codes": sorted({postal_key(c) for c in _strings(postal_codes, "postal_codes")}),
            "trades": sorted({trade_key(t) for t in _strings(trades, "trades")}),
        }
        with self.store.lock:
            found = [p for p in self.store.providers.values() if set(ids) & set(p["external_ids"])]
            if found:
                provider = found[0]
                provider["external_ids"] = list(dict.fromkeys([*provider["external_ids"], *ids]))
            else:
                provider = {
                    "id": _new_id(id, self.store, self.lookups.technicians),
                    "name": name,
                    "external_ids": ids,
                }
                for key in ("address", "email", "phone_number"):
                    provider[key] = None
                self.store.providers[provider["id"]] = provider
            provider.update(area, name=name or provider.get("name"))
            return copy.deepcopy(provider)

    def technicians(self) -> list[Record]:
        with self.store.lock:
            return [t.record() for t in self.lookups.technicians.values()]


def iso(moment: datetime) -> str:
    """UTC with `Z`, whole seconds: the availability endpoints' form."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_iso(moment: datetime, zone: ZoneInfo) -> str:
    """With the local offset (`2020-08-15T08:00:00-07:00`): Match Technicians' form."""
    return moment.astimezone(zone).isoformat(timespec="seconds")


def postal_key(code: str) -> str:
    return "".join(str(code).split()).upper()


def trade_key(trade: str) -> str:
    return " ".join(str(trade).split()).lower()


def parse_time(text: Any) -> datetime:
    """An ISO 8601 time (no offset means UTC); ValueError naming the value."""
    try:
        parsed = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time, e.g. 2022-10-24T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _booking(start: Any, end: Any, data: Any = None) -> Booking:
    begins, ends = parse_time(start), parse_time(end)
    if ends <= begins:
        raise ValueError(f"a booking must end after it starts ({start} .. {end})")
    if data is not None and not isinstance(data, dict):
        raise ValueError("a booking's data must be an object")
    return Booking(begins, ends, data)


def _booking_args(value: Any) -> dict[str, Any]:
    if (
        not isinstance(value, dict)
        or not {"start", "end"} <= set(value)
        or set(value) - {"start", "end", "data"}
    ):
        raise ValueError(f"each booked entry is {{start, end, data?}}, got {value!r}")
    return value


def _new_id(wanted: Any, store: V3Store, technicians: Iterable[int]) -> int:
    """The store's next id, or the one wanted (a sample's id) when no record holds it."""
    if wanted is None:
        return store.next_id()
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted <= 0:
        raise ValueError("id must be a positive integer")
    with store.lock:
        taken = {*store.jobs, *store.appointments, *store.customers, *store.providers, *technicians}
    if wanted in taken:
        raise ValueError(f"id {wanted} is taken")
    return wanted


def _strings(values: Any, name: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{name} must be a list of non-empty strings")
    return list(values)


def _zone(name: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not an IANA time zone, e.g. America/New_York") from None


def _work_days(days: Any) -> frozenset[int]:
    names = [d.lower()[:3] for d in _strings(days, "work_days")]
    unknown = [d for d in names if d not in WEEKDAYS]
    if unknown:
        raise ValueError(f"work_days: {unknown[0]!r} is not a day ({', '.join(WEEKDAYS)})")
    return frozenset(WEEKDAYS.index(d) for d in names)


def _hours(hours: Any) -> tuple[time, time]:
    parts = _strings(hours, "hours")
    try:
        start, end = (time.fromisoformat(p) for p in parts)
    except ValueError:
        raise ValueError(f'hours must be ["HH:MM", "HH:MM"], got {hours!r}') from None
    if end <= start:
        raise ValueError(f"hours must end after they start, got {hours!r}")
    return start, end


def _miles(from_start: Any, to_end: Any) -> tuple[float, float]:
    values = (from_start, from_start if to_end is None else to_end)
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values):
        raise ValueError("miles_from_start and miles_to_end must be numbers >= 0")
    return float(values[0]), float(values[1])

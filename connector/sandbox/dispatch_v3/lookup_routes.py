"""The look-up endpoints of the Dispatch v3 emulator, answered in the playbook's shapes (docs/wire-formats.md,
"Dispatch look-ups"): Match Orgs, Match Technicians, whitespace and block times.

A request the emulator cannot read (no postal code, a time that is not ISO 8601, an end before the start, a
duration that is not a positive number of minutes) is a 400 `{"error"}` naming the parameter. Trades are a
comma-separated list (the REST sample) or `|`-separated (the managed package's); each technician or provider
must have every trade asked for. Unknown parameters are ignored, as Dispatch documents more of them later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from connector.sandbox.dispatch_v3.lookups import (
    Interval,
    LookupBook,
    Technician,
    iso,
    local_iso,
    parse_time,
)

#: Path -> endpoint name (the name faults and API-call accounting use).
LOOKUP_ENDPOINTS = {
    "/v3/search/oms": "search.oms",
    "/v3/search/contractors": "search.contractors",
    "/v1/availability/slots": "availability.slots",
    "/v1/availability/schedule": "availability.schedule",
}
MAX_WINDOW = timedelta(days=62)


class LookupQueryError(ValueError):
    """Answered 400 with its message."""


class LookupApi:
    def __init__(self, book: LookupBook) -> None:
        self.book = book

    def handler(self, endpoint: str) -> Callable[[Request, int | None], Response]:
        answer: Callable[[MultiDict[str, str]], Any] = {
            "search.oms": self.match_orgs,
            "search.contractors": self.match_technicians,
            "availability.slots": self.slots,
            "availability.schedule": self.schedule,
        }[endpoint]

        def handle(request: Request, _: int | None) -> Response:
            try:
                body = answer(request.args)
            except LookupQueryError as exc:
                return _json({"error": str(exc)}, 400)
            return _json(body, 200)

        return handle

    # -- the four answers ------------------------------------------------------------------------

    def match_orgs(self, args: MultiDict[str, str]) -> dict[str, Any]:
        providers = self.book.providers_serving(_required(args, "postal_code"), _trades(args))
        return {
            "account_organizations": [
                {"organization_id": p["id"], "external_ids": list(p["external_ids"])} for p in providers
            ]
        }

    def match_technicians(self, args: MultiDict[str, str]) -> dict[str, Any]:
        postal_code = _required(args, "postal_code")
        window = _window(args, "availability_start_time", "availability_end_time")
        duration = _minutes(args, "appointment_duration_minutes", required=True)
        matches = []
        for tech in self.book.serving(postal_code, _trades(args)):
            slots = tech.whitespace(window, duration)
            if slots:
                matches.append(_match(tech, slots))
        return {"matches": matches}

    def slots(self, args: MultiDict[str, str]) -> dict[str, Any]:
        technicians, window = self._users(args)
        duration = _minutes(args, "duration", required=False)
        return {
            "slots": [
                {
                    "entity_type": "user",
                    "entity_id": tech.id,
                    "external_id": tech.external_id,
                    "start_time": iso(start),
                    "end_time": iso(end),
                }
                for tech in technicians
                for start, end in tech.whitespace(window, duration)
            ]
        }

    def schedule(self, args: MultiDict[str, str]) -> dict[str, Any]:
        technicians, window = self._users(args)
        _minutes(args, "duration", required=False)  # read for its errors; block times do not depend on it
        days = []
        for tech in technicians:
            for day in tech.days(window):
                blocks = [
                    {"start": iso(b.start), "end": iso(b.end), **({"data": b.data} if b.data else {})}
                    for b in tech.blocks(day)
                ]
                days.append(
                    {
                        "user_id": tech.id,
                        "external_id": tech.external_id,
                        "day_start": iso(day[0]),
                        "day_end": iso(day[1]),
                        "blocks": blocks,
                    }
                )
        return {"days": days}

    def _users(self, args: MultiDict[str, str]) -> tuple[list[Technician], Interval]:
        ids = [x for x in args.getlist("user_external_id[]") + args.getlist("user_external_id") if x]
        if not ids:
            raise LookupQueryError("user_external_id[] is required (one per technician)")
        return self.book.by_external_ids(ids), _window(args, "start_time", "end_time")


def _match(tech: Technician, slots: list[Interval]) -> dict[str, Any]:
    organization = tech.organization
    entity: dict[str, Any] = {
        "id": tech.id,
        "full_name": tech.full_name,
        "external_ids": [tech.external_id],
        "organization_id": organization["id"] if organization else None,
    }
    if organization:
        entity["organization"] = {
            "id": organization["id"],
            "external_ids": list(organization["external_ids"]),
        }
    from_start, to_end = tech.miles
    return {
        "entity": entity,
        "entity_type": "user",
        "entity_id": tech.id,
        "slots": [
            {
                "start": local_iso(start, tech.zone),
                "end": local_iso(end, tech.zone),
                "ranking_score": 0,
                "miles_from_start": from_start,
                "miles_to_end": to_end,
                "miles_added": round(from_start + to_end, 6),
            }
            for start, end in slots
        ],
    }


def _required(args: MultiDict[str, str], name: str) -> str:
    value = (args.get(name) or "").strip()
    if not value:
        raise LookupQueryError(f"{name} is required")
    return value


def _trades(args: MultiDict[str, str]) -> list[str]:
    raw = args.get("trades") or ""
    return [t.strip() for t in raw.replace("|", ",").split(",") if t.strip()]


def _window(args: MultiDict[str, str], start_name: str, end_name: str) -> Interval:
    times: list[datetime] = []
    for name in (start_name, end_name):
        try:
            times.append(parse_time(_required(args, name)))
        except ValueError as exc:
            raise LookupQueryError(f"{name}: {exc}") from None
    start, end = times
    if end <= start:
        raise LookupQueryError(f"{end_name} must be after {start_name}")
    if end - start > MAX_WINDOW:
        raise LookupQueryError(f"the window from {start_name} to {end_name} may span {MAX_WINDOW.days} days")
    return start, end


def _minutes(args: MultiDict[str, str], name: str, *, required: bool) -> timedelta:
    raw = (args.get(name) or "").strip()
    if not raw and not required:
        return timedelta(0)
    try:
        minutes = int(raw)
    except ValueError:
        raise LookupQueryError(f"{name} must be a positive whole number of minutes, got {raw!r}") from None
    if minutes <= 0:
        raise LookupQueryError(f"{name} must be a positive whole number of minutes, got {raw!r}")
    return timedelta(minutes=minutes)


def _json(data: Any, status: int) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")

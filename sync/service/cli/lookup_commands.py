"""`match orgs|technicians` and `availability slots|schedule`: Dispatch's real-time look-ups from the command
line, over the configured Dispatch v3 back end's OAuth client.

Each takes its inputs as options or reads them from a CRM work order (`--work-order ID`, through the
mapping's `lookups:` block); an option wins over the record. Times are shown in the work order's zone (its
time zone field, else its state's main zone; `--tz` overrides) and in UTC; a time typed without an offset is
in that zone. `--json` prints one document. Exit codes as docs/cli.md: a bad option 2, a work order whose
data cannot be searched or `--assign` without one best match 3, Dispatch or Salesforce failing 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import click

from connector.dispatch_v3.lookups import Found, Lookups, TechnicianMatch, check_postal_code, wire_time
from connector.errors import LookupRefused
from sync.context import SyncContext
from sync.errors import NeedsAttention, UsageError
from sync.service import lookups as service
from sync.service.cli import lookup_render as render
from sync.service.cli.common import _Ctx, pass_ctx

DEFAULT_DAYS = 7


@dataclass
class _Run:
    """One look-up command's inputs: the client, the CRM record (if any), how times are shown."""

    ctx: SyncContext
    lookups: Lookups
    site: service.WorkSite | None
    shown: render.Shown

    @property
    def record_id(self) -> str | None:
        return self.site.record_id if self.site else None

    def need(self, typed: Any, option: str, key: str, attribute: str | None = None) -> Any:
        """An input from its option, else from the record (its `attribute`, read from the lookups block's
        `key` field); when neither has it: a usage error, or the record needs a person."""
        if typed not in (None, "", ()):
            return typed
        if self.site is None:
            raise UsageError(f"give {option} or --work-order ID")
        recorded = getattr(self.site, attribute or key)
        if recorded not in (None, ""):
            return recorded
        field = getattr(self.site.spec, key)
        if field is None:
            raise UsageError(f"give {option}: the mapping's lookups block names no {key} field")
        raise NeedsAttention(f"{self.site.label} has no {field}: fill it in or give {option}")

    def window(self, start: str | None, end: str | None) -> tuple[datetime, datetime]:
        zone = self.shown.zone
        begins = _when(start, zone, "--start", end_of_day=False) if start else _now()
        ends = _when(end, zone, "--end", end_of_day=True) if end else begins + timedelta(days=DEFAULT_DAYS)
        if ends <= begins:
            raise UsageError(f"--end {wire_time(ends)} is not after --start {wire_time(begins)}")
        return begins, ends

    def emit(
        self, lookup: str, query: dict[str, Any], found: Found[Any], rows: list[Any], **more: Any
    ) -> None:
        document = self.shown.document(lookup, self.record_id, query, found, rows)
        click.echo(json.dumps({**document, **more}, indent=2))


def _common(func: Any) -> Any:
    options = (
        click.option(
            "--work-order", "work_order", metavar="ID", help="Read the inputs from this CRM record."
        ),
        click.option(
            "--object", "object_name", default="WorkOrder", show_default=True, help="Its CRM object."
        ),
        click.option("--backend", help="The Dispatch v3 back end to ask (default: the one configured)."),
        click.option("--tz", help="Show times in this IANA zone (default: the work order's, else UTC)."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document."),
    )
    for option in reversed(options):
        func = option(func)
    return func


def _window(func: Any) -> Any:
    end_help = f"Window end (ISO 8601; a date means its end; default: start + {DEFAULT_DAYS} days)."
    func = click.option("--end", help=end_help)(func)
    start_help = "Window start (ISO 8601; without an offset: in the zone shown; default: now)."
    return click.option("--start", help=start_help)(func)


def _users_option(func: Any) -> Any:
    users_help = "A technician's id in your system (repeat for several)."
    return click.option("--user", "users", multiple=True, metavar="EXTERNAL_ID", help=users_help)(func)


def _postal(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    try:
        return check_postal_code(value) if value else None
    except LookupRefused as exc:
        raise click.BadParameter(str(exc)) from None


def _open(ctx: _Ctx, work_order: str | None, object_name: str, backend: str | None, tz: str | None) -> _Run:
    sync_ctx = service.lookup_context(ctx.settings)
    lookups = service.lookups_for(sync_ctx, backend)  # no v3 back end: exit 2 before Salesforce is asked
    site = service.read_work_site(sync_ctx, object_name, work_order) if work_order else None
    zone, source = service.display_zone(site, tz)
    return _Run(sync_ctx, lookups, site, render.Shown(zone, source))


@click.group("match")
def match() -> None:
    """Which organizations or technicians can take a job (Dispatch Match Orgs / Match Technicians)."""


@match.command("orgs")
@click.option("--postal-code", callback=_postal, help="The job's postal code (US ZIP or Canadian).")
@click.option("--trade", "trades", multiple=True, help="A trade the organization must have (repeat).")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="Another match parameter (repeat)."
)
@click.option(
    "--assign", is_flag=True, help="Set the work order's provider field to the best match's Account."
)
@_common
@pass_ctx
def match_orgs(
    ctx: _Ctx, postal_code: str | None, trades: tuple[str, ...], params: tuple[str, ...], assign: bool,
    work_order: str | None, object_name: str, backend: str | None, tz: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Organizations serving a postal code (GET /v3/search/oms); --assign writes the best one to the CRM."""
    if assign and not work_order:
        raise UsageError("--assign needs --work-order ID: it sets that record's provider field")
    extra = dict(_pair(p) for p in params)
    run = _open(ctx, work_order, object_name, backend, tz)
    site = run.site
    wanted = list(trades) or list(site.trades if site else ())
    with service.refusals(site if not postal_code else None):
        code = check_postal_code(run.need(postal_code, "--postal-code", "postal_code"))
        found = run.lookups.match_orgs(code, trades=wanted, **extra)
    assigned = None
    if assign and site is not None:
        best = service.best_match(found, site, code, wanted)
        assigned = service.assign_provider(run.ctx, site, best, postal_code=code)
    if as_json:
        query = {"postal_code": code, "trades": wanted, **extra}
        run.emit("match orgs", query, found, render.org_rows(found), assigned=render.assigned_json(assigned))
        return
    render.org_table(found, code)
    if assigned is not None:
        render.assigned_line(assigned)


@match.command("technicians")
@click.option("--postal-code", callback=_postal, help="The job's postal code.")
@click.option("--address", help="Where the job is: street, city, state postal code.")
@click.option("--duration", type=click.IntRange(min=1), help="Appointment length in minutes.")
@click.option("--trade", "trades", multiple=True, help="A trade the technician must have (repeat).")
@_window
@_common
@pass_ctx
def match_technicians(
    ctx: _Ctx, postal_code: str | None, address: str | None, duration: int | None, trades: tuple[str, ...],
    start: str | None, end: str | None, work_order: str | None, object_name: str, backend: str | None,
    tz: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Technicians with free time for the job in the window (GET /v3/search/contractors)."""
    run = _open(ctx, work_order, object_name, backend, tz)
    found, query = _technicians(run, postal_code, address, duration, trades, run.window(start, end))
    if as_json:
        run.emit("match technicians", query, found, render.technician_rows(found, run.shown))
        return
    title = f"Technicians for {query['postal_code']}, {query['appointment_duration_minutes']} min"
    render.technician_table(found, run.shown, title)


def _technicians(
    run: _Run, postal_code: str | None, address: str | None, duration: int | None, trades: Sequence[str],
    window: tuple[datetime, datetime],
) -> tuple[Found[TechnicianMatch], dict[str, Any]]:  # fmt: skip
    site = run.site
    typed = bool(postal_code and address and duration)
    with service.refusals(site if site is not None and not typed else None):
        code = check_postal_code(run.need(postal_code, "--postal-code", "postal_code"))
        where = run.need(address, "--address", "street", "address")
        minutes = run.need(duration, "--duration", "duration_minutes")
        wanted = list(trades) or list(site.trades if site else ())
        found = run.lookups.match_technicians(code, where, minutes, window[0], window[1], wanted)
    query = {
        "postal_code": code,
        "address": where,
        "appointment_duration_minutes": minutes,
        "availability_start_time": wire_time(window[0]),
        "availability_end_time": wire_time(window[1]),
        "trades": wanted,
    }
    return found, query


@click.group("availability")
def availability() -> None:
    """When technicians are free (whitespace) or busy (block times)."""


@availability.command("slots")
@_users_option
@click.option(
    "--duration", type=click.IntRange(min=1), help="Minutes a slot must hold (default: the work order's)."
)
@_window
@_common
@pass_ctx
def availability_slots(
    ctx: _Ctx, users: tuple[str, ...], duration: int | None, start: str | None, end: str | None,
    work_order: str | None, object_name: str, backend: str | None, tz: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Free time of technicians (GET /v1/availability/slots). With --work-order and no --user: the
    technicians Match Technicians finds for the work order."""
    run = _open(ctx, work_order, object_name, backend, tz)
    window = run.window(start, end)
    minutes = run.need(duration, "--duration", "duration_minutes")
    ids = _users(run, users, minutes, window)
    with service.refusals(run.site if duration is None else None):
        found = run.lookups.availability_slots(ids, window[0], window[1], minutes)
    if as_json:
        query = {
            "user_external_ids": ids,
            "start_time": wire_time(window[0]),
            "end_time": wire_time(window[1]),
        }
        run.emit(
            "availability slots", {**query, "duration": minutes}, found, render.slot_rows(found, run.shown)
        )
        return
    render.slot_table(found, run.shown, minutes)


@availability.command("schedule")
@_users_option
@_window
@_common
@pass_ctx
def availability_schedule(
    ctx: _Ctx, users: tuple[str, ...], start: str | None, end: str | None, work_order: str | None,
    object_name: str, backend: str | None, tz: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Work days and booked time of technicians (GET /v1/availability/schedule)."""
    run = _open(ctx, work_order, object_name, backend, tz)
    window = run.window(start, end)
    ids = _users(run, users, run.site.duration_minutes if run.site else None, window)
    with service.refusals(None):
        found = run.lookups.availability_schedule(ids, window[0], window[1])
    if as_json:
        query = {
            "user_external_ids": ids,
            "start_time": wire_time(window[0]),
            "end_time": wire_time(window[1]),
        }
        run.emit("availability schedule", query, found, render.day_rows(found, run.shown))
        return
    render.day_table(found, run.shown)


def _users(
    run: _Run, users: Sequence[str], minutes: int | None, window: tuple[datetime, datetime]
) -> list[str]:
    """The technicians asked for, else those Match Technicians finds for the work order (an hour's visit
    when the work order gives no duration)."""
    if users:
        return list(users)
    if run.site is None:
        raise UsageError("give --user EXTERNAL_ID (repeat for several) or --work-order ID")
    found, _ = _technicians(run, None, None, minutes or 60, (), window)
    ids = list(dict.fromkeys(m.external_ids[0] for m in found if m.external_ids))
    if not ids:
        raise NeedsAttention(f"no technician matches {run.site.label} in the window: give --user EXTERNAL_ID")
    return ids


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or name.strip() in ("postal_code", "trades"):
        raise UsageError(
            f"--param {text!r}: write NAME=VALUE, for a parameter other than postal_code and trades"
        )
    return name.strip(), value


def _when(text: str, zone: Any, option: str, *, end_of_day: bool) -> datetime:
    """An ISO 8601 date or date-time; without an offset, in `zone`; a date alone is its start (or end)."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip()) + timedelta(days=1 if end_of_day else 0)
            return datetime.combine(day, time(0), zone)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not an ISO 8601 date or time, e.g. 2022-10-24T08:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)

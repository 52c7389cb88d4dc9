"""How the look-up commands show their answers: a rich table per look-up (columns fold, so a long id wraps
onto the next line and is never cut) and the rows of the `--json` document. Every time is shown twice: in the
zone the command chose (the work order's) and in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from connector.dispatch_v3.lookups import Found, FreeSlot, OrgMatch, TechnicianMatch, WorkDay, wire_time
from sync.service.cli.common import console
from sync.service.lookups import Assignment


@dataclass(frozen=True)
class Shown:
    """The zone times are shown in, and where it came from."""

    zone: ZoneInfo
    source: str

    def json(self, moment: datetime) -> dict[str, str]:
        return {"utc": wire_time(moment.astimezone(UTC)), "local": wire_time(moment.astimezone(self.zone))}

    def local(self, start: datetime, end: datetime) -> str:
        return _span(start.astimezone(self.zone), end.astimezone(self.zone), "")

    def utc(self, start: datetime, end: datetime) -> str:
        return _span(start.astimezone(UTC), end.astimezone(UTC), "Z")

    def document(
        self, lookup: str, record_id: str | None, query: dict[str, Any], found: Found[Any], rows: list[Any]
    ) -> dict[str, Any]:
        return {
            "lookup": lookup,
            "work_order": record_id,
            "query": query,
            "timezone": {"name": self.zone.key, "source": self.source},
            "results": rows,
            "problems": list(found.problems),
        }


# -- match orgs -----------------------------------------------------------------------------------


def org_rows(found: Found[OrgMatch]) -> list[dict[str, Any]]:
    return [
        {
            "organization_id": m.organization_id,
            "external_ids": list(m.external_ids),
            "ranking_score": m.ranking_score,
        }
        for m in found
    ]


def org_table(found: Found[OrgMatch], postal_code: str) -> None:
    table = _table(
        f"Organizations for postal code {postal_code}", "#", "organization id", "external ids", "score"
    )
    for index, m in enumerate(found, 1):
        score = "" if m.ranking_score is None else f"{m.ranking_score:g}"
        table.add_row(str(index), str(m.organization_id), "\n".join(m.external_ids), score)
    _print(table, found, "no organization matches")


def assigned_json(assigned: Assignment | None) -> dict[str, Any] | None:
    if assigned is None:
        return None
    return {
        "field": assigned.record.spec.provider_field,
        "account_id": assigned.account_id,
        "account_name": assigned.account_name,
        "organization_id": assigned.organization_id,
        "changed": assigned.changed,
    }


def assigned_line(assigned: Assignment) -> None:
    record, account = assigned.record, f"{assigned.account_id} ({assigned.account_name or 'no name'})"
    console.print(
        f"{'set' if assigned.changed else 'already'}: {record.label} {record.spec.provider_field} = Account "
        f"{account}, organization {assigned.organization_id}",
        soft_wrap=True,
    )


# -- match technicians ----------------------------------------------------------------------------


def technician_rows(found: Found[TechnicianMatch], shown: Shown) -> list[dict[str, Any]]:
    return [
        {
            "user_id": m.user_id,
            "full_name": m.full_name,
            "external_ids": list(m.external_ids),
            "organization_id": m.organization_id,
            "organization_external_ids": list(m.organization_external_ids),
            "slots": [
                {"start": shown.json(s.start), "end": shown.json(s.end)}
                | {"ranking_score": s.ranking_score, "miles_added": s.miles_added}
                for s in m.slots
            ],
        }
        for m in found
    ]


def technician_table(found: Found[TechnicianMatch], shown: Shown, title: str) -> None:
    """One row per free stretch; the technician is named on the first of them."""
    columns = ("technician", "user id", "external ids", "organization", f"free ({shown.zone.key})")
    table = _table(title, *columns, "free (UTC)", "miles added", lines=False)
    for m in found:
        organization = " ".join(
            filter(None, [str(m.organization_id or ""), ", ".join(m.organization_external_ids)])
        )
        who = [m.full_name or "", str(m.user_id), "\n".join(m.external_ids), organization]
        for index, s in enumerate(m.slots):
            miles = "" if s.miles_added is None else f"{s.miles_added:g}"
            cells = who if index == 0 else [""] * len(who)
            last = index == len(m.slots) - 1
            table.add_row(
                *cells, shown.local(s.start, s.end), shown.utc(s.start, s.end), miles, end_section=last
            )
    _print(table, found, "no technician is free for this job in the window")


# -- availability ---------------------------------------------------------------------------------


def slot_rows(found: Found[FreeSlot], shown: Shown) -> list[dict[str, Any]]:
    return [
        {
            "user_id": s.user_id,
            "external_id": s.external_id,
            "start": shown.json(s.start),
            "end": shown.json(s.end),
        }
        for s in found
    ]


def slot_table(found: Found[FreeSlot], shown: Shown, minutes: int) -> None:
    table = _table(
        f"Free for {minutes} min", "technician", "user id", f"free ({shown.zone.key})", "free (UTC)"
    )
    for s in found:
        table.add_row(
            s.external_id or "", str(s.user_id), shown.local(s.start, s.end), shown.utc(s.start, s.end)
        )
    _print(table, found, "no free time in the window")


def day_rows(found: Found[WorkDay], shown: Shown) -> list[dict[str, Any]]:
    return [
        {
            "user_id": d.user_id,
            "external_id": d.external_id,
            "day_start": shown.json(d.day_start),
            "day_end": shown.json(d.day_end),
            "blocks": [
                {"start": shown.json(b.start), "end": shown.json(b.end), "data": dict(b.data)}
                for b in d.blocks
            ],
        }
        for d in found
    ]


def day_table(found: Found[WorkDay], shown: Shown) -> None:
    zone = shown.zone.key
    columns = ("technician", "user id", f"day ({zone})", "day (UTC)", f"booked ({zone})", "booked (UTC)")
    table = _table("Work days and booked time", *columns)
    for d in found:
        table.add_row(
            d.external_id or "",
            str(d.user_id),
            shown.local(d.day_start, d.day_end),
            shown.utc(d.day_start, d.day_end),
            "\n".join(shown.local(b.start, b.end) + _about(b.data) for b in d.blocks) or "-",
            "\n".join(shown.utc(b.start, b.end) for b in d.blocks) or "-",
        )
    _print(table, found, "no work days in the window")


def _about(data: Mapping[str, Any]) -> str:
    """An appointment's block names its job and customer (the playbook's `data`)."""
    parts = [f"job {data['job_id']}" if data.get("job_id") else "", str(data.get("customer_full_name") or "")]
    text = ", ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _span(start: datetime, end: datetime, suffix: str) -> str:
    """`2022-10-24 08:00 - 09:00` within a day, both dates otherwise."""
    ends = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M}{suffix} - {ends}{suffix}"


def _table(title: str, *columns: str, lines: bool = True) -> Table:
    table = Table(title=title, title_justify="left", show_lines=lines)
    for column in columns:
        table.add_column(column, overflow="fold")  # ids wrap onto the next line, never cut
    return table


def _print(table: Table, found: Found[Any], empty: str) -> None:
    console.print(table if found.items else empty)
    for problem in found.problems:
        click.echo(f"warning: Dispatch's answer: {problem}", err=True)

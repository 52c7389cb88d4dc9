"""`log`, `status`, `inbox`, `replay`, `retry`: what support reads and the manual fixes it applies."""

from __future__ import annotations

import json
from datetime import timedelta

import click
from rich.table import Table

from sync.errors import NeedsAttention
from sync.service.cli.common import _context, _Ctx, console, pass_ctx


def parse_since(value: str | None) -> timedelta | None:
    """'90s', '15m', '2h', '3d' -> timedelta."""
    if not value:
        return None
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"{value!r}: use a number and a unit, e.g. 90s, 15m, 2h, 3d")
    return timedelta(**{units[unit]: int(number)})


@click.command("log")
@click.option("--record", help="CRM record id or external id.")
@click.option("--entity", help="job, appointment, customer, organization, ...")
@click.option("--direction", type=click.Choice(["in", "out", "internal"]))
@click.option("--since", help="Only rows newer than this, e.g. 2h.")
@click.option(
    "--level", type=click.Choice(["debug", "info", "warning", "error"]), help="This level and worse."
)
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def log_command(
    ctx: _Ctx,
    record: str | None,
    entity: str | None,
    direction: str | None,
    since: str | None,
    level: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Read the sync log (newest first)."""
    from sync.store.db import session_scope
    from sync.store.dbtypes import utcnow
    from sync.store.synclog import query_log

    window = parse_since(since)
    with session_scope(ctx.engine()) as session:
        rows = query_log(
            session,
            record=record,
            entity=entity,
            direction=direction,
            level=level,
            since=utcnow() - window if window else None,
            limit=limit,
        )
    if as_json:
        for row in rows:
            click.echo(row.model_dump_json())
        return
    table = Table("time", "level", "dir", "entity", "CRM id", "external id", "msg id", "message")
    for row in rows:
        at = row.at.strftime("%Y-%m-%d %H:%M:%S") if row.at else ""
        table.add_row(
            at,
            row.level,
            row.direction,
            row.entity or "",
            row.crm_record_id or "",
            row.external_id or "",
            row.msg_id or "",
            row.message,
        )
    console.print(table)


@click.command()
@click.argument("record_id")
@pass_ctx
def status(ctx: _Ctx, record_id: str) -> None:
    """Show what the connector knows of one CRM record (or external id)."""
    from sync.service.admin import record_status

    known = record_status(_context(ctx), record_id)
    click.echo(json.dumps(known, indent=2, default=str))
    if known.get("known") is False:
        raise NeedsAttention(
            f"no record {record_id!r} in the store: it was never flagged and published, or the id is wrong"
        )


@click.command()
@pass_ctx
def inbox(ctx: _Ctx) -> None:
    """Inbox depth by status."""
    from sync.inbound.processor import inbox_depth

    depth = inbox_depth(_context(ctx))
    for name in ("new", "processed", "dead"):
        click.echo(f"{name:10} {depth.get(name, 0)}")


@click.command()
@click.argument("message_id")
@pass_ctx
def replay(ctx: _Ctx, message_id: str) -> None:
    """Process one stored message again."""
    from sync.inbound.processor import replay as replay_message

    if not replay_message(_context(ctx), message_id):
        raise NeedsAttention(f"no inbox message {message_id!r}; see `dispatch-connector inbox`")
    click.echo(f"replayed {message_id}")


@click.command()
@click.option("--dead", is_flag=True, required=True, help="Requeue every dead message.")
@pass_ctx
def retry(ctx: _Ctx, dead: bool) -> None:
    """Requeue dead inbox messages for processing."""
    from sync.inbound.processor import retry_dead

    click.echo(f"requeued {retry_dead(_context(ctx))} dead message(s)")

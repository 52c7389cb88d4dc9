"""`log`, `status`, `inbox`, `replay`, `retry`: what support reads and the manual fixes it applies.

Each listing prints for people by default (ids whole, text wrapped: `render.py`) and the raw records with
`--json`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import click

from sync.errors import NeedsAttention, UsageError
from sync.service.cli.common import _context, _Ctx, console, pass_ctx
from sync.service.cli.render import MESSAGE_WIDTH, Field, print_fields, print_records

LOG_FIELDS = (
    Field("time", head=True),
    Field("level", head=True),
    Field("dir", head=True),
    Field("entity", head=True),
    Field("CRM id", key=True),
    Field("external id", key=True),
    Field("msg id", key=True),
    Field("message", min_width=MESSAGE_WIDTH),
)
INBOX_FIELDS = (
    Field("message id", key=True, head=True),
    Field("status", head=True),
    Field("type"),
    Field("system"),
    Field("attempts"),
    Field("received"),
    Field("last error", min_width=MESSAGE_WIDTH),
)


def parse_since(value: str | None) -> timedelta | None:
    """'90s', '15m', '2h', '3d' -> timedelta."""
    if not value:
        return None
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"{value!r}: use a number and a unit, e.g. 90s, 15m, 2h, 3d")
    return timedelta(**{units[unit]: int(number)})


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


@click.command("log")
@click.option("--record", help="CRM record id or external id.")
@click.option("--entity", help="job, appointment, customer, organization, ...")
@click.option("--direction", type=click.Choice(["in", "out", "internal"]))
@click.option("--since", help="Only rows newer than this, e.g. 2h.")
@click.option(
    "--level", type=click.Choice(["debug", "info", "warning", "error"]), help="This level and worse."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Newest rows shown."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
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
    cells = [
        (
            _when(row.at),
            row.level,
            row.direction,
            row.entity,
            row.crm_record_id,
            row.external_id,
            row.msg_id,
            row.message,
        )
        for row in rows
    ]
    print_records(console, LOG_FIELDS, cells)


@click.command()
@click.argument("record_id")
@click.option("--json", "as_json", is_flag=True, help="Everything the store holds for it, as JSON.")
@pass_ctx
def status(ctx: _Ctx, record_id: str, as_json: bool) -> None:
    """Show what the connector knows of one CRM record (or external id). Exit 3 if it knows nothing."""
    from sync.service.admin import record_status

    known = record_status(_context(ctx), record_id)
    if as_json:
        click.echo(json.dumps(known, indent=2, default=str))
    elif known.get("known"):
        print_fields(console, f"{known['object']} {known['record']}", status_lines(known))
    if not known.get("known"):
        raise NeedsAttention(
            f"no record {record_id!r} in the store: it was never flagged and published, or the id is wrong"
        )


def status_lines(known: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The status summary a person reads: where the record went, how far it got, what is still to do."""
    batch = known["last_message_id"]
    state = known["state"] or "no job event yet"
    if known["status_message"]:
        state += f" ({known['status_message']})"
    lines = [
        ("back end", known["system"]),
        ("external id", known["external_id"] or ""),
        ("remote id", known["remote_id"] or "not assigned yet"),
        ("flagged", "yes" if known["flagged"] else "no"),
        ("last published", _when(known["published_at"]) or "never"),
        ("last batch", f"{batch} ({known['batch_status'] or 'unknown'})" if batch else "none"),
        ("last confirmed", _when(known["confirmed_at"]) or "not yet"),
        ("job state", state),
    ]
    milestones = list((known["milestones"] or {}).items()) or [("none", "")]
    lines += [
        ("milestones" if n == 0 else "", f"{name} {at}".strip()) for n, (name, at) in enumerate(milestones)
    ]
    lines.append(("last error", known["last_error"] or "none"))
    writebacks = known["writebacks"]
    lines.append(("write-backs", f"{len(writebacks)} pending or failed" if writebacks else "none pending"))
    for wb in writebacks:
        detail = f"#{wb['id']} {wb['status']} {wb['operation']} {', '.join(wb['fields'])}"
        if wb["last_error"]:
            detail += f"; {wb['attempts']} attempt(s), last error: {wb['last_error']}"
        lines.append(("", detail))
    lines += [("recent errors" if n == 0 else "", error) for n, error in enumerate(known["recent_errors"])]
    return lines


@click.command()
@click.option(
    "--status", "wanted", type=click.Choice(["new", "processed", "dead"]), help="Only messages in this state."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Newest messages shown."
)
@click.option("--json", "as_json", is_flag=True, help="Depth and messages as one JSON document.")
@pass_ctx
def inbox(ctx: _Ctx, wanted: str | None, limit: int, as_json: bool) -> None:
    """Inbox depth by status, then the newest messages (ids for `replay`)."""
    from sync.inbound.processor import inbox_depth
    from sync.service.admin import INBOX_STATUSES, inbox_messages

    sync_ctx = _context(ctx)
    depth = {name: inbox_depth(sync_ctx).get(name, 0) for name in INBOX_STATUSES}
    messages = inbox_messages(sync_ctx, status=wanted, limit=limit)
    if as_json:
        click.echo(json.dumps({"depth": depth, "messages": messages}, indent=2, default=str))
        return
    for name, count in depth.items():
        click.echo(f"{name:10} {count}")
    if not messages:
        return
    click.echo()
    cells = [
        (
            m["message_id"],
            m["status"],
            m["type"],
            m["system"],
            str(m["attempts"]),
            _when(m["received_at"]),
            m["last_error"],
        )
        for m in messages
    ]
    print_records(console, INBOX_FIELDS, cells)
    total = depth[wanted] if wanted else sum(depth.values())
    if total > len(messages):
        click.echo(f"showing the newest {len(messages)} of {total}; see --status and --limit")


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
@click.option("--dead", is_flag=True, help="Requeue every dead inbox message.")
@click.option("--writebacks", is_flag=True, help="Queue every failed CRM write-back again.")
@click.option("--object", "crm_object", help="With --writebacks: only this CRM object's (e.g. WorkOrder).")
@pass_ctx
def retry(ctx: _Ctx, dead: bool, writebacks: bool, crm_object: str | None) -> None:
    """Requeue what gave up: dead inbox messages (--dead), failed CRM write-backs (--writebacks)."""
    if not (dead or writebacks):
        raise UsageError(
            "retry what? --dead requeues dead inbox messages, --writebacks queues failed CRM write-backs "
            "again (both may be given)"
        )
    if crm_object and not writebacks:
        raise UsageError("--object chooses which failed write-backs to retry: give it with --writebacks")
    sync_ctx = _context(ctx)
    if dead:
        from sync.inbound.processor import retry_dead

        click.echo(f"requeued {retry_dead(sync_ctx)} dead message(s)")
    if writebacks:
        from sync.writeback.queue import retry_failed_writebacks

        count = retry_failed_writebacks(sync_ctx.engine, crm_object=crm_object)
        click.echo(f"queued {count} failed write-back(s) again")

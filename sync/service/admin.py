"""Admin and support operations behind the CLI: bulk flagging, a record's sync status, the inbox listing."""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter
from typing import Any

from simple_salesforce import format_soql
from sqlmodel import col, select

from sync.context import SyncContext
from sync.errors import UsageError
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, InboxMessage, OutboxBatch, SyncLog, TrackedRecord, WriteBack
from sync.store.synclog import write_log

FORBIDDEN_IN_WHERE = (";", "--", "/*")
INBOX_STATUSES = ("new", "processed", "dead")


def flag_records(
    ctx: SyncContext,
    crm_object: str,
    where: str,
    *,
    params: dict[str, Any] | None = None,
    unset: bool = False,
) -> int:
    """Set (or clear) the mapping's flag on every record matching a SOQL condition.

    The condition is the admin's own SOQL; it is checked to be one condition (no statement separators or
    comments) and the object name comes from the mapping, so nothing can be appended to the query."""
    spec = ctx.mapping.object(crm_object)
    condition = soql_condition(where, params or {})
    ids = [row["Id"] for row in ctx.crm.query_iter(f"SELECT Id FROM {crm_object} WHERE {condition}")]
    if spec.flag.when == "true":
        value: Any = not unset
    else:
        value = None if unset else utcnow().isoformat()
    results = ctx.crm.update_records(crm_object, [{"Id": i, spec.flag.field: value} for i in ids])
    failed = [r for r in results if not r.success]
    with session_scope(ctx.engine) as session:
        write_log(
            session,
            f"{'un' if unset else ''}flagged {len(ids) - len(failed)} {crm_object} record(s) where {where}",
            direction="internal",
            entity=crm_object,
        )
    return len(ids) - len(failed)


def soql_condition(where: str, params: Mapping[str, Any]) -> str:
    """The `--where` condition with each `{name}` placeholder replaced by its `--param` value, quoted.

    Checked before anything is sent: one condition (no statement separators or comments), every placeholder
    named and given, every given parameter used. A placeholder left raw would reach Salesforce as SOQL it
    cannot parse, and an unused parameter is most likely a misspelt name. A literal brace is written twice."""
    if any(token in where for token in FORBIDDEN_IN_WHERE) or not where.strip():
        raise UsageError(
            "--where must be one SOQL condition without ';' or comments, e.g. \"Status = 'New'\""
        )
    try:
        names = [name for _, name, _, _ in Formatter().parse(where) if name is not None]
    except ValueError as exc:
        raise UsageError(f"--where: {exc}; write a literal brace twice ({{{{ or }}}})") from None
    if any(not name.isidentifier() for name in names):
        raise UsageError('--where placeholders must be named, e.g. "City = {city}" with --param city=Boston')
    given = ", ".join(params) or "none"
    missing = [name for name in dict.fromkeys(names) if name not in params]
    if missing:
        wanted = ", ".join(f"--param {name}=VALUE" for name in missing)
        raise UsageError(
            f"--where uses {{{missing[0]}}} but no value was given: add {wanted} (given: {given})"
        )
    unused = [name for name in params if name not in names]
    if unused:
        placeholders = ", ".join(f"{{{name}}}" for name in dict.fromkeys(names)) or "none"
        raise UsageError(
            f"--param {unused[0]} is not used: --where has no {{{unused[0]}}} "
            f"(its placeholders: {placeholders})"
        )
    return quoted(where, **params)


def quoted(template: str, **values: Any) -> str:
    """SOQL with values quoted safely (simple-salesforce's format_soql)."""
    return str(format_soql(template, **values))


def record_status(ctx: SyncContext, record_id: str) -> dict[str, Any]:
    """What the store knows of one CRM record (by CRM id or external id): `known` False when nothing.

    A record moved between back ends has a tracked row on each; the flagged one, most recently published,
    is the one shown."""
    with session_scope(ctx.engine) as session:
        tracked = session.exec(
            select(TrackedRecord)
            .where((col(TrackedRecord.crm_id) == record_id) | (col(TrackedRecord.external_id) == record_id))
            .order_by(col(TrackedRecord.flagged).desc(), col(TrackedRecord.published_at).desc())
        ).first()
        if tracked is None:
            return {"record": record_id, "known": False}
        entity = session.exec(
            select(EntityStateRow).where(
                col(EntityStateRow.system) == tracked.system,
                col(EntityStateRow.external_id) == tracked.external_id,
                col(EntityStateRow.kind) == "job",
            )
        ).first()
        batch = session.get(OutboxBatch, tracked.last_message_id) if tracked.last_message_id else None
        errors = session.exec(
            select(SyncLog)
            .where(col(SyncLog.crm_record_id) == tracked.crm_id, col(SyncLog.level) == "error")
            .order_by(col(SyncLog.at).desc())
            .limit(5)
        ).all()
        writebacks = session.exec(
            select(WriteBack)
            .where(col(WriteBack.crm_id) == tracked.crm_id, col(WriteBack.status).in_(("pending", "failed")))
            .order_by(col(WriteBack.id))
        ).all()
        return {
            "record": tracked.crm_id,
            "known": True,
            "object": tracked.crm_object,
            "system": tracked.system,
            "external_id": tracked.external_id,
            "remote_id": tracked.remote_id,
            "flagged": tracked.flagged,
            "snapshot": tracked.snapshot,
            "last_message_id": tracked.last_message_id,
            "batch_status": batch.status if batch else None,
            "published_at": tracked.published_at,
            "confirmed_at": tracked.confirmed_at,
            "last_error": tracked.last_error,
            "state": entity.state if entity else None,
            "status_message": entity.status_message if entity else None,
            "milestones": entity.milestones if entity else None,
            "writebacks": [
                {
                    "id": row.id,
                    "status": row.status,
                    "operation": row.operation,
                    "fields": sorted(row.fields or {}),
                    "attempts": row.attempts,
                    "next_attempt_at": row.next_attempt_at,
                    "last_error": row.last_error,
                }
                for row in writebacks
            ],
            "recent_errors": [f"{e.at:%Y-%m-%d %H:%M:%S} {e.message}" for e in errors],
        }


def inbox_messages(ctx: SyncContext, *, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest stored messages (of one status if given), for support to pick one to `replay`."""
    query = select(InboxMessage).order_by(col(InboxMessage.received_at).desc()).limit(limit)
    if status is not None:
        query = query.where(col(InboxMessage.status) == status)
    with session_scope(ctx.engine) as session:
        return [
            {
                "message_id": row.message_id,
                "status": row.status,
                "type": row.type,
                "system": row.system,
                "attempts": row.attempts,
                "deliveries": row.deliveries,
                "received_at": row.received_at,
                "processed_at": row.processed_at,
                "next_attempt_at": row.next_attempt_at,
                "last_error": row.last_error,
            }
            for row in session.exec(query).all()
        ]

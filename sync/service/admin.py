"""Admin and support operations behind the CLI: bulk flagging and a record's sync status."""

from __future__ import annotations

from typing import Any

from simple_salesforce import format_soql
from sqlmodel import col, select

from sync.context import SyncContext
from sync.errors import UsageError
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, OutboxBatch, SyncLog, TrackedRecord
from sync.store.synclog import write_log

FORBIDDEN_IN_WHERE = (";", "--", "/*")


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
    if any(token in where for token in FORBIDDEN_IN_WHERE) or not where.strip():
        raise UsageError(
            "--where must be one SOQL condition without ';' or comments, e.g. \"Status = 'New'\""
        )
    condition = quoted(where, **params) if params else where
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


def quoted(template: str, **values: Any) -> str:
    """SOQL with values quoted safely (simple-salesforce's format_soql)."""
    return str(format_soql(template, **values))


def record_status(ctx: SyncContext, record_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        tracked = session.exec(
            select(TrackedRecord).where(
                (col(TrackedRecord.crm_id) == record_id) | (col(TrackedRecord.external_id) == record_id)
            )
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
        return {
            "record": tracked.crm_id,
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
            "recent_errors": [f"{e.at:%Y-%m-%d %H:%M:%S} {e.message}" for e in errors],
        }

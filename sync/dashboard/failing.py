"""The CRM write-backs that are failing, for the health page: support sees them while they are retried,
not only once the queue has given up (issue 17).

One line per record and failure (a generation of rows that failed together shares its error and next
try), retrying ones first, newest failure first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from sync.store.models import WriteBack
from sync.writeback.timing import last_attempt_at

MAX_ROWS_READ = 2000  # a store full of failures still renders quickly; the count says when more exist


@dataclass
class FailingWriteBack:
    crm_object: str
    record: str  # the CRM id (update) or the external id (create)
    operation: str
    status: str  # pending (will retry) | failed (gave up)
    fields: dict[str, object]
    error: str
    attempts: int
    last_attempt: datetime | None
    next_try: datetime | None
    rows: int


def failing_write_backs(session: Session, limit: int = 50) -> tuple[list[FailingWriteBack], int]:
    """(the first `limit` failing write-backs, how many there are in the rows read)."""
    failing = or_(
        col(WriteBack.status) == "failed",
        and_(col(WriteBack.status) == "pending", col(WriteBack.last_error).is_not(None)),
    )
    rows = session.exec(
        select(WriteBack).where(failing).order_by(col(WriteBack.id).desc()).limit(MAX_ROWS_READ)
    ).all()
    groups: dict[tuple[object, ...], FailingWriteBack] = {}
    for row in reversed(rows):  # oldest first, so later values win in the merged fields
        record = row.crm_id or row.external_id or ""
        key = (row.operation, row.crm_object, record, row.status, row.next_attempt_at, row.last_error)
        line = groups.get(key)
        if line is None:
            line = groups[key] = FailingWriteBack(
                crm_object=row.crm_object,
                record=record,
                operation=row.operation,
                status=row.status,
                fields={},
                error=row.last_error or "",
                attempts=row.attempts,
                last_attempt=last_attempt_at(row.status, row.attempts, row.next_attempt_at, row.flushed_at),
                next_try=row.next_attempt_at if row.status == "pending" else None,
                rows=0,
            )
        line.fields.update(row.fields or {})
        line.rows += 1
    ordered = sorted(
        groups.values(),
        key=lambda f: (f.status != "pending", -(f.last_attempt.timestamp() if f.last_attempt else 0)),
    )
    return ordered[:limit], len(ordered)

"""The sync log support staff read: one row per error, warning or notable event, in either direction.

Rows are written inside the caller's transaction, so a log line exists exactly when the effect it
describes does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, select

from sync.dbtypes import utcnow
from sync.models import SyncLog

LEVELS = ("debug", "info", "warning", "error")
DIRECTIONS = ("out", "in", "internal")


def write_log(
    session: Session,
    message: str,
    *,
    level: str = "info",
    direction: str = "internal",
    entity: str | None = None,
    crm_record_id: str | None = None,
    external_id: str | None = None,
    msg_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> SyncLog:
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {LEVELS}")
    row = SyncLog(
        at=utcnow(),
        level=level,
        direction=direction,
        entity=entity,
        crm_record_id=crm_record_id,
        external_id=external_id,
        msg_id=msg_id,
        message=message,
        details=details,
    )
    session.add(row)
    return row


def query_log(
    session: Session,
    *,
    record: str | None = None,
    entity: str | None = None,
    direction: str | None = None,
    level: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> Sequence[SyncLog]:
    """Newest first. `level` means "this level and worse", as support staff expect."""
    query = select(SyncLog)
    if record:
        query = query.where((col(SyncLog.crm_record_id) == record) | (col(SyncLog.external_id) == record))
    if entity:
        query = query.where(col(SyncLog.entity) == entity)
    if direction:
        query = query.where(col(SyncLog.direction) == direction)
    if level:
        query = query.where(col(SyncLog.level).in_(LEVELS[LEVELS.index(level) :]))
    if since:
        query = query.where(col(SyncLog.at) >= since)
    return session.exec(query.order_by(col(SyncLog.at).desc(), col(SyncLog.id).desc()).limit(limit)).all()


def purge_log(session: Session, older_than: timedelta) -> int:
    result = session.exec(delete(SyncLog).where(col(SyncLog.at) < utcnow() - older_than))  # type: ignore[call-overload]
    return int(result.rowcount or 0)

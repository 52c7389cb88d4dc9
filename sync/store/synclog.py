"""The sync log support staff read: one row per error, warning or notable event, in either direction.

Rows are written inside the caller's transaction, so a log line exists exactly when the effect it
describes does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlmodel import Session, col, delete, select

from sync.store.dbtypes import utcnow
from sync.store.models import SyncLog

LEVELS = ("debug", "info", "warning", "error")
DIRECTIONS = ("out", "in", "internal")
LOUD = ("warning", "error")
_COLLECTORS = "sync_log_collectors"  # key in Session.info: the open one_loud_row scopes, innermost last
# Where SQLAlchemy's text of a database error turns into the statement, its parameters and a web link.
_SQL_TAILS = ("[SQL:", "[parameters:", "(Background on this error at:")


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
    collectors = session.info.get(_COLLECTORS)
    if collectors:
        collectors[-1].append(row)
    return row


def error_words(exc: BaseException) -> str:
    """An exception as support should read it: `Type: what went wrong`, never SQL.

    SQLAlchemy's text of a database error appends the statement, its parameters (record values, which may
    be anyone's data) and a link; a PostgreSQL message quotes the statement and the row below its first
    line. A database error is said by its driver's first line (`IntegrityError: UNIQUE constraint failed:
    tracked_record.crm_object, tracked_record.crm_id`); any other error keeps its text, less SQL tails."""
    name = type(exc).__name__
    if isinstance(exc, StatementError) and exc.orig is not None:
        return f"{name}: {_first_line(str(exc.orig))}" if str(exc.orig).strip() else name
    if isinstance(exc, SQLAlchemyError):
        return f"{name}: {_first_line(str(exc))}" if str(exc).strip() else name
    text = without_sql(str(exc))
    return f"{name}: {text}" if text else name


def without_sql(text: str) -> str:
    """`text` cut where SQLAlchemy's statement, parameters or link begin (rows written before
    error_words existed still hold them)."""
    cut = min((i for i in (text.find(tail) for tail in _SQL_TAILS) if i >= 0), default=len(text))
    return text[:cut].rstrip()


def _first_line(text: str) -> str:
    lines = without_sql(text).strip().splitlines()
    return lines[0].strip() if lines else ""


@contextmanager
def one_loud_row(session: Session) -> Iterator[None]:
    """Merge every warning and error written inside into one row.

    One bad item (an event with a wrong-typed attribute, no `updated_at` and no CRM record) should reach
    support as one row that says everything wrong with it, not as three rows to correlate by hand. The row
    kept is the first of the highest level; it takes the others' messages and fills its empty fields
    from theirs."""
    rows: list[SyncLog] = []
    session.info.setdefault(_COLLECTORS, []).append(rows)
    try:
        yield
    finally:
        session.info[_COLLECTORS].pop()
    _merge(session, [r for r in rows if r.level in LOUD])


def _merge(session: Session, loud: list[SyncLog]) -> None:
    if len(loud) < 2:
        return
    keep = max(loud, key=lambda r: LOUD.index(r.level))  # max() keeps the first of equals
    others = [r for r in loud if r is not keep]
    keep.message = "; ".join(r.message for r in [keep, *others])
    for field in ("entity", "crm_record_id", "external_id"):
        if getattr(keep, field) is None:
            setattr(keep, field, next((getattr(r, field) for r in others if getattr(r, field)), None))
    for row in others:
        if row in session.new:
            session.expunge(row)
        else:
            session.delete(row)


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

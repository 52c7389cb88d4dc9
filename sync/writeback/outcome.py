"""One Collections call of the write-back queue, and what its answer does to the queued rows.

A record Salesforce refuses for fields it names (INVALID_FIELD, a value too long, a read-only field ...) is
sent again at once without them, so its other values land; only the named fields stay queued, carrying the
error. Every failure is told to support when it first happens (a warning row naming the record, the fields
and Salesforce's words, and when it is tried again), not only when the queue gives up on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from connector.errors import ConnectorError
from sync.store.db import IN_CLAUSE_CHUNK, chunked, session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import CRM_ONLY, WRITE_BACKS, TrackedRecord, WriteBack
from sync.store.synclog import write_log
from sync.writeback.plan import Unit
from sync.writeback.timing import backoff

GONE = "ENTITY_IS_DELETED"  # the record was deleted in the CRM: its writes are skipped, not retried
MAX_SPLITS = 5  # resends of one record without the fields Salesforce named, within one call's settling
ONE_MICROSECOND = timedelta(microseconds=1)


def utc_words(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


class CrmWriter(Protocol):
    def update_records(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]: ...
    def create_records(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]: ...


@dataclass(frozen=True)
class SfError:
    code: str
    message: str
    fields: tuple[str, ...] = ()

    def words(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


@dataclass
class FlushReport:
    records_written: int = 0  # records whose write (or part of it) landed
    rows_done: int = 0
    calls: int = 0
    failures: list[str] = field(default_factory=list)  # one message per failing record or failed call
    records_failed: int = 0  # records with a write that failed in this flush (retrying or given up)
    rows_failed: int = 0  # rows that gave up in this flush (status failed)
    rows_pending_retry: int = 0  # rows that failed in this flush and will be tried again

    @property
    def all_failed(self) -> bool:
        """Something was to be written and nothing landed: the run needs attention."""
        return self.records_failed > 0 and self.records_written == 0

    def add(self, other: FlushReport) -> None:
        self.records_written += other.records_written
        self.rows_done += other.rows_done
        self.calls += other.calls
        self.failures.extend(other.failures)
        self.records_failed += other.records_failed
        self.rows_failed += other.rows_failed
        self.rows_pending_retry += other.rows_pending_retry


@dataclass
class Outcome:
    """What happened to one unit in this call (and its resends)."""

    unit: Unit
    sending: dict[str, Any]
    written: dict[str, Any] | None = None
    created_id: str | None = None
    gone: bool = False
    bad: set[str] = field(default_factory=set)
    errors: list[SfError] = field(default_factory=list)
    call_error: str | None = None


def flush_chunk(
    engine: Engine,
    crm: CrmWriter,
    operation: str,
    crm_object: str,
    units: list[Unit],
    report: FlushReport,
    max_attempts: int,
) -> None:
    outcomes = [Outcome(unit, dict(unit.fields)) for unit in units]
    todo = outcomes
    for resend in range(MAX_SPLITS + 1):
        todo = _send(crm, operation, crm_object, todo, report, last=resend == MAX_SPLITS)
        if not todo:
            break
    with session_scope(engine) as session:
        done: list[int] = []
        for outcome in outcomes:
            done.extend(_settle_outcome(session, outcome, report, max_attempts))
        settle(session, done, "done")  # one statement for a call's written rows


def _send(
    crm: CrmWriter, operation: str, crm_object: str, todo: list[Outcome], report: FlushReport, last: bool
) -> list[Outcome]:
    """One call; returns the records to send again without the fields Salesforce named."""
    if operation == "update":
        payload = [{"Id": o.unit.key, **o.sending} for o in todo]
    else:
        payload = [dict(o.sending) for o in todo]
    try:
        call = crm.update_records if operation == "update" else crm.create_records
        results = list(call(crm_object, payload))
        report.calls += 1
    except ConnectorError as exc:  # the whole call failed (outage, limit, session): every record retries
        for outcome in todo:
            outcome.call_error = str(exc)
        return []
    again: list[Outcome] = []
    for outcome, result in zip(todo, results, strict=True):
        if getattr(result, "success", False):
            outcome.written = outcome.sending
            outcome.created_id = str(result.id) if getattr(result, "id", None) else None
            continue
        errors = sf_errors(getattr(result, "errors", None))
        if GONE in {e.code for e in errors}:
            outcome.gone = True
            continue
        outcome.errors.extend(errors)
        named = {name for e in errors for name in e.fields} & set(outcome.sending)
        rest = {k: v for k, v in outcome.sending.items() if k not in named}
        outcome.bad |= named
        if named and rest and not last:
            outcome.sending = rest
            again.append(outcome)
    return again


def sf_errors(errors: Any) -> list[SfError]:
    """Salesforce's per-record errors, as the gateway's RecordError objects or as raw JSON dicts."""
    if not errors:
        return [SfError("", "Salesforce refused the write without a reason")]
    found = []
    for error in errors if isinstance(errors, list | tuple) else [errors]:
        if isinstance(error, Mapping):
            code = error.get("statusCode") or error.get("errorCode") or ""
            found.append(SfError(str(code), str(error.get("message", "")), tuple(error.get("fields") or ())))
        elif hasattr(error, "code"):
            fields = tuple(getattr(error, "fields", ()) or ())
            found.append(SfError(str(error.code), str(getattr(error, "message", "")), fields))
        else:
            found.append(SfError("", str(error)))
    return found


def _describe(outcome: Outcome) -> str:
    if outcome.call_error is not None and not outcome.errors:
        return outcome.call_error
    text = "; ".join(dict.fromkeys(e.words() for e in outcome.errors))
    if outcome.call_error is not None:
        text += f"; then the call failed: {outcome.call_error}"
    return text


def _settle_outcome(session: Session, outcome: Outcome, report: FlushReport, max_attempts: int) -> list[int]:
    """Settle what failed or was skipped; returns the rows that are done (settled by the caller at once)."""
    unit = outcome.unit
    if outcome.gone:
        _mark_gone(session, unit.ids, f"{unit.crm_object} {unit.key} was deleted in the CRM; nothing written")
        report.rows_done += len(unit.ids)
        return []
    message = f"{unit.crm_object} {unit.key}: {_describe(outcome)}"
    if outcome.written is None:
        _failed(session, outcome, unit.ids, message, report, max_attempts)
        return []
    report.records_written += 1
    if unit.operation == "create" and outcome.created_id:
        session.add(
            TrackedRecord(
                system=_created_for(session, unit.ids),
                crm_object=unit.crm_object,
                crm_id=outcome.created_id,
                external_id=unit.key,
                flagged=False,
                confirmed_at=utcnow(),
            )
        )
    failing = _keep_only_bad_fields(session, outcome) if outcome.bad else []
    done = [i for i in unit.ids if i not in failing]
    report.rows_done += len(done)
    if failing:
        _failed(session, outcome, failing, message, report, max_attempts)
    elif unit.attempts:
        _log(session, unit, f"CRM write-back of {unit.crm_object} {unit.key} written on attempt "
             f"{unit.attempts + 1}", "info", None)  # fmt: skip
    return done


def _keep_only_bad_fields(session: Session, outcome: Outcome) -> list[int]:
    """The unit's other values landed: its rows keep only the fields Salesforce refused (the rows holding
    none of them are done). A create that landed this way leaves its refused fields as an update of the
    record it made."""
    unit = outcome.unit
    rows = session.execute(
        core_select(WRITE_BACKS.c.id, WRITE_BACKS.c.fields).where(WRITE_BACKS.c.id.in_(unit.ids))
    ).all()
    failing = []
    for row_id, fields in rows:
        kept = {k: v for k, v in (fields or {}).items() if k in outcome.bad}
        if not kept:
            continue
        failing.append(row_id)
        values: dict[str, Any] = {"fields": kept}
        if unit.operation == "create" and outcome.created_id:
            values.update(operation="update", crm_id=outcome.created_id)
        session.execute(update(WRITE_BACKS).where(WRITE_BACKS.c.id == row_id).values(**values))
    return failing


def _failed(
    session: Session, outcome: Outcome, ids: list[int], message: str, report: FlushReport, max_attempts: int
) -> None:
    """Count the attempt on the rows still failing. The first failure (or a new error) is a warning row at
    once; giving up is an error row."""
    unit = outcome.unit
    attempts = unit.attempts + 1
    report.failures.append(message)
    report.records_failed += 1
    now = utcnow()
    details = _details(outcome, attempts, max_attempts)
    if attempts >= max_attempts:
        _update(session, ids, status="failed", attempts=attempts, last_error=message, flushed_at=now,
                next_attempt_at=None)  # fmt: skip
        report.rows_failed += len(ids)
        gave_up = (
            f"CRM write-back gave up after {attempts} attempts: {message}. Fix the cause, then "
            "`dispatch-connector retry --writebacks`"
        )
        _log(session, unit, gave_up, "error", details)
        return
    retry_at = now + backoff(attempts)
    while retry_at in unit.record.generations:  # a generation is known by its next_attempt_at
        retry_at += ONE_MICROSECOND
    unit.record.generations.add(retry_at)
    _update(session, ids, attempts=attempts, last_error=message, next_attempt_at=retry_at)
    report.rows_pending_retry += len(ids)
    if message in unit.record.errors:
        return  # said already: one row per failing record and error
    unit.record.errors.add(message)
    details["next_attempt_at"] = utc_words(retry_at)
    _log(session, unit, _warning(outcome, attempts, max_attempts, retry_at), "warning", details)


def _warning(outcome: Outcome, attempts: int, max_attempts: int, retry_at: datetime) -> str:
    unit = outcome.unit
    what = f"CRM write-back of {unit.crm_object} {unit.key} failed"
    if outcome.bad:
        names = ", ".join(sorted(outcome.bad))
        what += f" on field{'s' if len(outcome.bad) > 1 else ''} {names}"
    what += f": {_describe(outcome)}"
    if outcome.bad and outcome.written is not None:
        what += f"; its other fields were written without {'them' if len(outcome.bad) > 1 else 'it'}"
    return f"{what}; will retry at {utc_words(retry_at)} (attempt {attempts} of {max_attempts})"


def _details(outcome: Outcome, attempts: int, max_attempts: int) -> dict[str, Any]:
    """The values still failing (all of the unit's, or only the refused ones when the rest landed)."""
    fields = outcome.unit.fields
    if outcome.written is not None:
        fields = {name: value for name, value in fields.items() if name in outcome.bad}
    details: dict[str, Any] = {"fields": fields, "attempt": attempts, "max_attempts": max_attempts}
    if outcome.bad:
        details["bad_fields"] = sorted(outcome.bad)
    if outcome.errors:
        details["errors"] = [
            {"code": e.code, "message": e.message, "fields": list(e.fields)} for e in outcome.errors
        ]
    if outcome.written:
        details["written"] = sorted(outcome.written)
    return details


def _log(session: Session, unit: Unit, message: str, level: str, details: dict[str, Any] | None) -> None:
    """A row about the record: its CRM id for an update, its external id for a create."""
    crm_id, external_id = (unit.key, None) if unit.operation == "update" else (None, unit.key)
    write_log(
        session,
        message,
        level=level,
        direction="in",
        entity=unit.crm_object,
        crm_record_id=crm_id,
        external_id=external_id,
        details=details,
    )


def _update(session: Session, ids: list[int], **values: Any) -> None:
    for chunk in chunked(ids, IN_CLAUSE_CHUNK):
        session.execute(
            update(WRITE_BACKS)
            .where(WRITE_BACKS.c.id.in_(chunk), WRITE_BACKS.c.status == "pending")
            .values(**values)
        )


def settle(session: Session, ids: list[int], status: str, error: str | None = None) -> None:
    """Mark rows settled with set-based UPDATEs: a 200-record Collections call settles in one statement."""
    _update(session, ids, status=status, flushed_at=utcnow(), last_error=error)


def _mark_gone(session: Session, ids: list[int], message: str) -> None:
    """A deleted record will never take the write: retrying it would only end in a false alarm."""
    rows = list(session.exec(select(WriteBack).where(col(WriteBack.id).in_(ids))).all())
    settle(session, ids, "skipped", message)
    if rows:
        write_log(
            session,
            message,
            direction="in",
            entity=rows[0].crm_object,
            crm_record_id=rows[0].crm_id,
            external_id=rows[0].external_id,
            details={"fields": [row.fields for row in rows]},
        )


def _created_for(session: Session, ids: list[int]) -> str:
    """The back end a created record's link belongs to: the one whose report queued it (creates are rare:
    jobs born in the field, notes; one query each), or CRM_ONLY for the connector's own log rows."""
    systems = session.exec(select(WriteBack.system).where(col(WriteBack.id).in_(ids))).all()
    return next((system for system in systems if system), CRM_ONLY)

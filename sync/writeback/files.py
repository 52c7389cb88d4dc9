"""Files from the field into the CRM: a note's file or a billing document's PDF, stored once as a Salesforce
File.

Processing a message only queues the file (`file_fetch`, in the message's transaction: no I/O there, see
docs/engine.md "Exactly one effect per event"); the write-back job flushes the queue: download through the
back end's `FileSource` (connector.ports), upload as a ContentVersion first published on the CRM record (which
makes its ContentDocument and the link to the record), then `content_version_id` is set once. A file is
queued once per (system, token, CRM record), so redeliveries and replays store it once. A row is claimed
(attempts + 1, next try set) in its own commit before any I/O: a crash between the upload and the record of
its id is found again by looking the file up (its Description names the token) before uploading anew.

A download or upload that fails (a token Dispatch does not know or that expired, a file over the mapping's
`max_bytes`, an outage) leaves the row pending with the error and writes one warning row naming the token
(the same error again writes nothing more); after MAX_ATTEMPTS the row is `failed` with an error row. No
message waits on a file.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from connector.errors import ConnectorError
from connector.mapping_writes import FilesSpec
from connector.ports import FetchedFile, ReportedEvent, file_source
from sync.context import SyncContext
from sync.errors import SyncError
from sync.inbound.event_context import EventContext
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, FileFetch, TrackedRecord
from sync.store.synclog import error_words, write_log
from sync.writeback.timing import backoff

BILLING_PDF = "billing_pdf"  # the format of a queued billing document PDF; its token is "<job id>/<doc id>"
DEFAULT_MAX_BYTES = FilesSpec().max_bytes
MAX_ATTEMPTS = 8
FLUSH_LIMIT = 50  # files per flush (each one a download and an upload)
CONTENT_VERSION = "ContentVersion"


@dataclass
class FileFlushReport:
    stored: int = 0
    failed: int = 0  # tried and not stored in this flush (retrying or given up)
    gave_up: int = 0


# --- queueing (inside a message's transaction: no I/O) ---------------------------------------------
def enqueue_note_file(ctx: EventContext, link: tuple[str, str, Any], values: Mapping[str, Any]) -> bool:
    """Queue the file of a note or attachment on the linked CRM record, when the mapping stores files."""
    spec: FilesSpec | None = link[2].write_back.files
    token = values.get("file_token")
    if spec is None or not isinstance(token, str) or not token.strip() or values.get("deleted"):
        return False
    name = values.get("name")
    title = str(name) if isinstance(name, str) and name.strip() else token
    return _enqueue(ctx.session, ctx.system, token.strip(), link[0], link[1], spec.format, title)


def enqueue_billing_pdf(ctx: EventContext, event: ReportedEvent) -> bool:
    """Queue the PDF of an estimate or invoice on its job's CRM record (`write_back.billing_pdfs`)."""
    job_external = event.parent_external_id
    job_remote = event.parent_remote_id or _job_remote_id(ctx, job_external)
    if not job_external or not job_remote or not event.remote_id:
        return False
    tracked = ctx.session.exec(
        select(TrackedRecord).where(
            col(TrackedRecord.external_id) == job_external, col(TrackedRecord.system) == ctx.system
        )
    ).first()
    spec = ctx.mapping.objects.get(tracked.crm_object) if tracked is not None else None
    if tracked is None or spec is None or not spec.write_back.billing_pdfs:
        return False
    title = f"{event.kind.capitalize()} {event.attributes.get('number') or event.remote_id}"
    token = f"{job_remote}/{event.remote_id}"
    return _enqueue(ctx.session, ctx.system, token, tracked.crm_object, tracked.crm_id, BILLING_PDF, title)


def _job_remote_id(ctx: EventContext, job_external: str | None) -> str | None:
    if not job_external:
        return None
    return ctx.session.exec(
        select(EntityStateRow.remote_id).where(
            col(EntityStateRow.system) == ctx.system,
            col(EntityStateRow.kind) == "job",
            col(EntityStateRow.external_id) == job_external,
        )
    ).first()


def _enqueue(
    session: Session, system: str, token: str, crm_object: str, crm_id: str, file_format: str, title: str
) -> bool:
    exists = session.exec(
        select(FileFetch.id).where(
            col(FileFetch.system) == system,
            col(FileFetch.token) == token,
            col(FileFetch.crm_object) == crm_object,
            col(FileFetch.crm_id) == crm_id,
        )
    ).first()
    if exists is not None:
        return False
    row = FileFetch(token=token, system=system, crm_object=crm_object, crm_id=crm_id, format=file_format)
    row.title, row.next_attempt_at = title[:255], utcnow()
    session.add(row)
    return True


# --- flushing (the write-back job, outside any message) --------------------------------------------
def flush_file_fetches(
    ctx: SyncContext, *, now: datetime | None = None, limit: int = FLUSH_LIMIT
) -> FileFlushReport:
    """Store the due files. Each is claimed in a commit of its own first, so no two workers take one."""
    report = FileFlushReport()
    now = now or utcnow()
    with session_scope(ctx.engine) as session:
        due = session.exec(
            select(FileFetch)
            .where(col(FileFetch.status) == "pending", col(FileFetch.next_attempt_at) <= now)
            .order_by(col(FileFetch.next_attempt_at), col(FileFetch.id))
            .limit(limit)
        ).all()
        rows = [(r.id, r.attempts) for r in due]
    for row_id, attempts in rows:
        claimed = _claim(ctx, row_id, attempts, now)
        if claimed is not None:
            _store_one(ctx, claimed, now, report)
    return report


def _claim(ctx: SyncContext, row_id: int | None, attempts: int, now: datetime) -> FileFetch | None:
    with session_scope(ctx.engine) as session:
        claimed = session.execute(
            update(FileFetch)
            .where(col(FileFetch.id) == row_id, col(FileFetch.attempts) == attempts)
            .where(col(FileFetch.status) == "pending")
            .values(attempts=attempts + 1, next_attempt_at=now + backoff(attempts + 1))
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = session.get(FileFetch, row_id)
        if row is None:
            return None
        session.expunge(row)
        return row


def _store_one(ctx: SyncContext, row: FileFetch, now: datetime, report: FileFlushReport) -> None:
    try:
        version_id = _already_stored(ctx, row) if row.attempts > 1 else None
        if version_id is None:
            fetched = _download(ctx, row)
            version_id = ctx.crm.create(CONTENT_VERSION, _content_version(row, fetched))
    except (ConnectorError, SyncError) as exc:
        report.failed += 1
        report.gave_up += _failed(ctx, row, now, _words(exc))
        return
    with session_scope(ctx.engine) as session:
        session.execute(
            update(FileFetch)
            .where(col(FileFetch.id) == row.id, col(FileFetch.content_version_id).is_(None))
            .values(status="done", content_version_id=version_id, last_error=None)
        )
        again = f" on attempt {row.attempts}" if row.attempts > 1 else ""
        write_log(
            session,
            f"file {row.token} ({row.title}) stored on {row.crm_object} {row.crm_id} as {version_id}{again}",
            direction="in",
            entity="file",
            crm_record_id=row.crm_id,
            details={"token": row.token, "format": row.format, "content_version_id": version_id},
        )
    report.stored += 1


def _download(ctx: SyncContext, row: FileFetch) -> FetchedFile:
    source = file_source(ctx.backend(row.system))
    if source is None:
        raise SyncError(f"back end {row.system!r} holds no files")
    max_bytes = _max_bytes(ctx, row.crm_object)
    if row.format != BILLING_PDF:
        return source.fetch_file(row.token, row.format, max_bytes=max_bytes)
    job, _, document = row.token.partition("/")
    pdfs = source.billing_pdfs(job, max_bytes=max_bytes)
    if document not in pdfs:
        raise SyncError(f"no PDF of billing document {document} on job {job} (yet)")
    return pdfs[document]


def _max_bytes(ctx: SyncContext, crm_object: str) -> int:
    spec = ctx.mapping.objects.get(crm_object)
    files = spec.write_back.files if spec is not None else None
    return files.max_bytes if files is not None else DEFAULT_MAX_BYTES


def _content_version(row: FileFetch, fetched: FetchedFile) -> dict[str, Any]:
    title = row.title or fetched.name or row.token
    path = title if "." in title.rsplit("/", 1)[-1] else title + (_extension(fetched.mime_type))
    return {
        "Title": title,
        "PathOnClient": path,
        "Description": _marker(row),
        "VersionData": base64.b64encode(fetched.content).decode("ascii"),
        "FirstPublishLocationId": row.crm_id,
    }


def _extension(mime_type: str) -> str:
    return mimetypes.guess_extension(mime_type, strict=False) or ""


def _marker(row: FileFetch) -> str:
    """What finds a file stored before its id was recorded (a crash between the two)."""
    return f"Dispatch file {row.token}"


def _already_stored(ctx: SyncContext, row: FileFetch) -> str | None:
    soql = (
        f"SELECT Id FROM {CONTENT_VERSION} WHERE FirstPublishLocationId = '{_quoted(row.crm_id)}' "
        f"AND Description = '{_quoted(_marker(row))}' LIMIT 1"
    )
    found = ctx.crm.query_all(soql)
    return str(found[0]["Id"]) if found else None


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _words(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ConnectorError | SyncError) else error_words(exc)


def _failed(ctx: SyncContext, row: FileFetch, now: datetime, error: str) -> int:
    """Keep the row for a later try (one warning per token and error), or give up after MAX_ATTEMPTS."""
    gave_up = row.attempts >= MAX_ATTEMPTS
    with session_scope(ctx.engine) as session:
        values: dict[str, Any] = {"last_error": error[:2000]}
        if gave_up:
            values["status"] = "failed"
        session.execute(update(FileFetch).where(col(FileFetch.id) == row.id).values(**values))
        where = f"file {row.token} ({row.title}) for {row.crm_object} {row.crm_id} not stored: {error}"
        if gave_up:
            message, level = f"{where}; gave up after {row.attempts} attempts", "error"
        elif error != row.last_error:
            retry_at = (now + backoff(row.attempts)).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = f"{where}; will retry at {retry_at} (attempt {row.attempts} of {MAX_ATTEMPTS})"
            level = "warning"
        else:
            return 0
        write_log(
            session,
            message,
            level=level,
            direction="in",
            entity="file",
            crm_record_id=row.crm_id,
            details={"token": row.token, "format": row.format},
        )
    return int(gave_up)


def pending_files(ctx: SyncContext) -> list[dict[str, Any]]:
    """Files not stored yet (pending or given up), for support."""
    with session_scope(ctx.engine) as session:
        rows = session.exec(select(FileFetch).where(col(FileFetch.status) != "done")).all()
        return [r.model_dump() for r in rows]

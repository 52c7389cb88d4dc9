"""Files from the field into the CRM over real sockets: a note's file token becomes one Salesforce File on the
work order, whatever the redeliveries; a token Dispatch does not know, or a file over the limit, is a warning
naming the token and a later retry, never a blocked message; billing documents as PDFs when mapped."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from connector.mapping import MappingConfig
from connector.mapping_writes import FilesSpec
from connector.sandbox.dispatch_connect.files import pdf, png
from sync.store.dbtypes import utcnow
from sync.store.models import FileFetch, InboxMessage, SyncLog
from sync.writeback.files import MAX_ATTEMPTS, flush_file_fetches
from tests.e2e.conftest import Harness

TOKEN = "37f3cf22-f1c5-437c-a078-8608e25a0b2b"


def files_on(harness: Harness, *, billing_pdfs: bool = False, off: bool = False, **files: Any) -> None:
    """The bundled mapping with `write_back.files` (and `billing_pdfs`) on the work order, or (`off`) none."""
    mapping = harness.ctx.mapping
    work_order = mapping.objects["WorkOrder"]
    write_back = work_order.write_back.model_copy(
        update={"files": None if off else FilesSpec(**files), "billing_pdfs": billing_pdfs}
    )
    objects = {**mapping.objects, "WorkOrder": work_order.model_copy(update={"write_back": write_back})}
    harness.ctx.mapping = MappingConfig(mapping.spec.model_copy(update={"objects": objects}), mapping.source)


def published_job(harness: Harness) -> str:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    return wo


def step(harness: Harness, action: Any, *args: Any, **kwargs: Any) -> Any:
    harness.clock.advance(60)
    result = action(*args, **kwargs)
    harness.round_trip()
    return result


def records(harness: Harness, name: str) -> list[dict[str, Any]]:
    return [harness.sf.get(name, i) for i in harness.sf.record_ids(name)]


def logged(harness: Harness, level: str) -> list[str]:
    with Session(harness.ctx.engine) as session:
        rows = session.exec(select(SyncLog).where(col(SyncLog.level) == level)).all()
        return [r.message for r in rows]


def queue(harness: Harness) -> list[FileFetch]:
    with Session(harness.ctx.engine) as session:
        return list(session.exec(select(FileFetch)).all())


def later(minutes: int) -> Any:
    return utcnow() + timedelta(minutes=minutes)


def test_a_note_file_is_one_file_on_the_work_order_whatever_the_redeliveries(harness: Harness) -> None:
    files_on(harness)
    wo = published_job(harness)
    d = harness.dispatch
    d.set_queue_faults(duplicate_rate=1.0)  # every event delivered twice
    item = step(harness, d.add_attachment, wo, "leak.png", TOKEN)
    assert flush_file_fetches(harness.ctx).stored == 1
    step(harness, d._note_event, item)  # the same file reported again (a new message)
    assert flush_file_fetches(harness.ctx, now=later(60)).stored == 0
    [version] = records(harness, "ContentVersion")
    assert version["FirstPublishLocationId"] == wo and version["Title"] == "leak.png"
    assert version["PathOnClient"] == "leak.png" and base64.b64decode(version["VersionData"]) == png(64, 48)
    [link] = records(harness, "ContentDocumentLink")
    assert (link["LinkedEntityId"], link["ContentDocumentId"]) == (wo, version["ContentDocumentId"])
    [row] = queue(harness)
    assert (row.status, row.content_version_id, row.token) == ("done", version["Id"], TOKEN)
    assert any(
        m.startswith(f"file {TOKEN} (leak.png) stored on WorkOrder {wo}") for m in logged(harness, "info")
    )


def test_the_mapping_format_is_fetched(harness: Harness) -> None:
    files_on(harness, format="square_250")
    wo = published_job(harness)
    step(harness, harness.dispatch.add_attachment, wo, "leak", TOKEN)
    flush_file_fetches(harness.ctx)
    [version] = records(harness, "ContentVersion")
    assert base64.b64decode(version["VersionData"]) == png(250, 250)
    assert version["PathOnClient"] == "leak.png"  # the answer's Content-Type gives the extension


def test_an_unknown_token_is_a_warning_and_a_retry_and_the_note_is_kept(harness: Harness) -> None:
    files_on(harness)
    wo = published_job(harness)
    d = harness.dispatch
    step(harness, d.add_attachment, wo, "leak.png", TOKEN)
    del d.held_files[TOKEN]  # Dispatch does not know the token (yet)
    report = flush_file_fetches(harness.ctx)
    assert (report.stored, report.failed) == (0, 1)
    [warning] = logged(harness, "warning")
    assert f"file {TOKEN} (leak.png) for WorkOrder {wo} not stored" in warning
    assert "unknown to Dispatch (HTTP 404)" in warning and "attempt 1 of 8" in warning
    assert [n["File_Token__c"] for n in records(harness, "Dispatch_Note__c")] == [TOKEN]
    with Session(harness.ctx.engine) as session:
        assert {m.status for m in session.exec(select(InboxMessage)).all()} == {"processed"}
    assert records(harness, "ContentVersion") == []
    flush_file_fetches(harness.ctx, now=later(60))  # same error again: no second warning
    assert len(logged(harness, "warning")) == 1
    d.put_file(TOKEN)
    assert flush_file_fetches(harness.ctx, now=later(120)).stored == 1
    assert len(records(harness, "ContentVersion")) == 1


def test_a_file_over_the_limit_is_a_warning_and_nothing_is_stored(harness: Harness) -> None:
    files_on(harness, max_bytes=1000)
    wo = published_job(harness)
    d = harness.dispatch
    d.put_file(TOKEN, size=5000)
    step(harness, d.add_attachment, wo, "huge.png", TOKEN)
    assert flush_file_fetches(harness.ctx).failed == 1
    [warning] = logged(harness, "warning")
    assert f"file {TOKEN}" in warning and "5000 bytes, over the limit of 1000 bytes" in warning
    assert records(harness, "ContentVersion") == []
    assert [n["Name__c"] for n in records(harness, "Dispatch_Note__c")] == ["huge.png"]
    [row] = queue(harness)
    assert row.status == "pending" and row.next_attempt_at is not None


def test_a_file_that_never_comes_is_given_up_with_an_error_row(harness: Harness) -> None:
    files_on(harness)
    wo = published_job(harness)
    step(harness, harness.dispatch.add_attachment, wo, "leak.png", TOKEN)
    harness.dispatch.expire_file(TOKEN)
    for attempt in range(MAX_ATTEMPTS):
        flush_file_fetches(harness.ctx, now=later(60 * (attempt + 1)))
    [row] = queue(harness)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    [error] = logged(harness, "error")
    assert f"file {TOKEN}" in error and "has expired" in error and "gave up after 8 attempts" in error


def test_files_are_not_fetched_without_the_mapping_block(harness: Harness) -> None:
    files_on(harness, off=True)
    wo = published_job(harness)
    step(harness, harness.dispatch.add_attachment, wo, "leak.png", TOKEN)
    assert queue(harness) == [] and flush_file_fetches(harness.ctx).stored == 0


def test_a_crash_after_the_upload_does_not_store_the_file_twice(harness: Harness) -> None:
    files_on(harness)
    wo = published_job(harness)
    step(harness, harness.dispatch.add_attachment, wo, "leak.png", TOKEN)
    flush_file_fetches(harness.ctx)
    with Session(harness.ctx.engine) as session:  # as if the id had never been recorded
        row = session.exec(select(FileFetch)).one()
        row.status, row.content_version_id = "pending", None
        session.add(row)
        session.commit()
    assert flush_file_fetches(harness.ctx, now=later(60)).stored == 1
    [version] = records(harness, "ContentVersion")
    assert queue(harness)[0].content_version_id == version["Id"]


def test_billing_documents_are_stored_as_pdfs_when_mapped(harness: Harness, monkeypatch: Any) -> None:
    """`write_back.billing_pdfs`: the estimate/invoice handler queues its PDF, once per document."""
    files_on(harness, billing_pdfs=True)
    wo = published_job(harness)
    d = harness.dispatch
    invoice = step(harness, d.create_invoice, wo, number="1005")
    step(harness, d.set_billing_status, invoice, "sent")  # a second event of the document: still one PDF
    assert flush_file_fetches(harness.ctx).stored == 1
    [version] = records(harness, "ContentVersion")
    assert version["Title"] == "Invoice 1005" and version["PathOnClient"] == "Invoice 1005.pdf"
    assert base64.b64decode(version["VersionData"]) == pdf(f"Invoice {invoice}")
    assert version["FirstPublishLocationId"] == wo


def test_billing_pdfs_are_off_by_default(harness: Harness, monkeypatch: Any) -> None:
    files_on(harness)
    wo = published_job(harness)
    step(harness, harness.dispatch.create_invoice, wo)
    assert queue(harness) == []


def test_the_bundled_mapping_stores_field_files_by_default(harness: Harness) -> None:
    assert harness.ctx.mapping.objects["WorkOrder"].write_back.files == FilesSpec()
    wo = published_job(harness)
    step(harness, harness.dispatch.add_attachment, wo, "leak.png", TOKEN)
    assert flush_file_fetches(harness.ctx).stored == 1
    [version] = records(harness, "ContentVersion")
    assert version["FirstPublishLocationId"] == wo

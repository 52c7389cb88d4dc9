"""The files-api and billing-PDF client against the Dispatch Connect emulator, over sockets."""

from __future__ import annotations

import base64

import pytest

from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient, DispatchUnavailable
from connector.dispatch_connect.files import DEFAULT_MAX_BYTES, DispatchFiles
from connector.errors import FileUnavailable
from connector.ports import file_source
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.dispatch_connect.files import pdf, png

TOKEN = "37f3cf22-f1c5-437c-a078-8608e25a0b2b"
ADDRESS = {"street_1": "1 Main St", "city": "Boston", "state": "MA", "postal_code": "02118"}


@pytest.fixture
def files(dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient) -> DispatchFiles:
    files = file_source(from_client(dispatch_client))
    assert isinstance(files, DispatchFiles)
    return files


def _job(emulator: DispatchEmulator) -> int:
    return emulator.create_job(
        title="Leak", address=ADDRESS, customer={"first_name": "Ann"}, external_id="WO-1"
    )


def test_an_attachment_added_in_the_field_is_served_as_a_png(
    dispatch_emulator: DispatchEmulator, files: DispatchFiles
) -> None:
    _job(dispatch_emulator)
    dispatch_emulator.add_attachment("WO-1", "leak.png", TOKEN)
    got = files.fetch_file(TOKEN, max_bytes=DEFAULT_MAX_BYTES)
    assert got.mime_type == "image/png" and got.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert dispatch_emulator.counts["files"] == 1


def test_a_format_is_a_rendering_of_that_size(
    dispatch_emulator: DispatchEmulator, files: DispatchFiles
) -> None:
    dispatch_emulator.put_file(TOKEN)
    got = files.fetch_file(TOKEN, "square_250", max_bytes=DEFAULT_MAX_BYTES)
    assert got.content == png(250, 250)


def test_an_unknown_token_is_unavailable_naming_it(files: DispatchFiles) -> None:
    with pytest.raises(FileUnavailable, match=f"file {TOKEN}: the token is unknown to Dispatch") as info:
        files.fetch_file(TOKEN, max_bytes=DEFAULT_MAX_BYTES)
    assert info.value.reason == "not_found"


def test_an_expired_token_says_so(dispatch_emulator: DispatchEmulator, files: DispatchFiles) -> None:
    dispatch_emulator.put_file(TOKEN)
    dispatch_emulator.expire_file(TOKEN)
    with pytest.raises(FileUnavailable, match="has expired") as info:
        files.fetch_file(TOKEN, max_bytes=DEFAULT_MAX_BYTES)
    assert info.value.reason == "expired"


def test_a_file_over_the_limit_is_refused(dispatch_emulator: DispatchEmulator, files: DispatchFiles) -> None:
    dispatch_emulator.put_file(TOKEN, size=5000)
    with pytest.raises(FileUnavailable, match="5000 bytes, over the limit of 1000") as info:
        files.fetch_file(TOKEN, max_bytes=1000)
    assert info.value.reason == "too_large"


def test_an_unknown_format_is_refused_before_asking(
    dispatch_emulator: DispatchEmulator, files: DispatchFiles
) -> None:
    with pytest.raises(FileUnavailable, match="unknown format 'huge'"):
        files.fetch_file(TOKEN, "huge", max_bytes=DEFAULT_MAX_BYTES)
    assert "files" not in dispatch_emulator.counts


def test_outages_are_retried_then_transient(
    dispatch_emulator: DispatchEmulator, files: DispatchFiles
) -> None:
    dispatch_emulator.put_file(TOKEN)
    dispatch_emulator.set_faults("files", error_rate=1.0, error_status=503)
    with pytest.raises(DispatchUnavailable):
        files.fetch_file(TOKEN, max_bytes=DEFAULT_MAX_BYTES)
    assert dispatch_emulator.counts["files"] == files.client.max_attempts


def test_billing_documents_come_as_pdfs_by_document_id(
    dispatch_emulator: DispatchEmulator, files: DispatchFiles
) -> None:
    job_id = _job(dispatch_emulator)
    estimate = dispatch_emulator.create_estimate("WO-1", external_id="EST-1")
    invoice = dispatch_emulator.create_invoice("WO-1")
    pdfs = files.billing_pdfs(str(job_id), max_bytes=DEFAULT_MAX_BYTES)
    assert set(pdfs) == {str(estimate), str(invoice)}
    assert pdfs[str(estimate)].content == pdf(f"Estimate {estimate}")
    assert pdfs[str(estimate)].mime_type == "application/pdf"
    assert dispatch_emulator.counts["agent/billing_document_pdfs"] == 1


def test_a_minimal_pdf_is_well_formed() -> None:
    body = pdf("Invoice 7")
    startxref = int(body.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert body.startswith(b"%PDF-1.4") and body[startxref:].startswith(b"xref")
    assert base64.b64decode(base64.b64encode(body)) == body

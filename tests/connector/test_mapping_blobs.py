"""File-body markers resolved before the outbox commit: base64 in place, one download per file, and a
failed or oversized download named precisely."""

from __future__ import annotations

import base64

import pytest

from connector.crm import CrmError, CrmNotFound, CrmUnavailable
from connector.mapping_blobs import BlobRefused, is_marker, resolve_blobs
from connector.mapping_values import BLOB_MARKER


def marker(version_id: str, max_bytes: int = 100) -> dict[str, object]:
    return {BLOB_MARKER: version_id, "max_bytes": max_bytes, "at": "attachment.file", "field": "Photo__c"}


def test_markers_become_base64_and_one_file_is_downloaded_once() -> None:
    calls: list[str] = []

    def fetch(version_id: str) -> bytes:
        calls.append(version_id)
        return version_id.encode()

    records = [
        {"record_type": "profile_picture", "record": {"external_id": "u1"}, "attachment": marker("068A")},
        {"record_type": "attachment", "record": {"external_id": "a1", "files": [{"body": marker("068A")}]}},
    ]
    assert resolve_blobs(records, fetch) == 2
    encoded = base64.b64encode(b"068A").decode()
    assert records[0]["attachment"] == encoded and records[1]["record"]["files"] == [{"body": encoded}]
    assert calls == ["068A"]


def test_records_without_markers_are_untouched() -> None:
    records = [
        {"record_type": "job", "record": {"external_id": "j", "tags": ["a"], "address": {"city": "X"}}}
    ]
    assert resolve_blobs(records, lambda _id: b"") == 0
    assert records[0]["record"] == {"external_id": "j", "tags": ["a"], "address": {"city": "X"}}


def test_failed_download_names_the_file_the_field_and_the_cause() -> None:
    def fetch(version_id: str) -> bytes:
        raise CrmNotFound(f"ContentVersion {version_id} not found")

    records = [{"record_type": "attachment", "record": {"external_id": "a", "file": marker("068X")}}]
    with pytest.raises(BlobRefused) as info:
        resolve_blobs(records, fetch)
    assert str(info.value) == (
        "cannot download file 068X (from Photo__c) for attachment.file: ContentVersion 068X not found"
    )


def test_file_over_max_bytes_is_refused() -> None:
    records = [{"record_type": "attachment", "record": {"external_id": "a", "file": marker("068Y", 3)}}]
    with pytest.raises(
        BlobRefused, match=r"^file 068Y \(from Photo__c\) for attachment.file is 4 bytes, over"
    ):
        resolve_blobs(records, lambda _id: b"abcd")


def test_an_outage_is_not_a_refusal_it_propagates_for_the_cycle_to_retry() -> None:
    def fetch(version_id: str) -> bytes:
        raise CrmUnavailable(f"Salesforce unavailable reading {version_id}")

    records = [{"record_type": "attachment", "record": {"external_id": "a", "file": marker("068Z")}}]
    with pytest.raises(CrmError, match="unavailable") as info:
        resolve_blobs(records, fetch)
    assert not isinstance(info.value, BlobRefused)
    assert is_marker(records[0]["record"]["file"])  # nothing half-resolved

"""Salesforce Files in the emulator, through the gateway over sockets: a ContentVersion insert makes its
ContentDocument and the ContentDocumentLink to the record named by FirstPublishLocationId; its bytes come
back from the VersionData blob resource (gateway `version_data`)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest

from connector.crm import CrmNotFound, CrmRejected, CrmUnavailable, SalesforceGateway
from connector.sandbox.salesforce.emulator import SalesforceEmulator

if TYPE_CHECKING:
    from tests.connector.sf_fixtures import SleepRecorder

pytest_plugins = ["tests.connector.sf_fixtures"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def _work_order(gateway: SalesforceGateway) -> str:
    return str(gateway.query_all("SELECT Id FROM WorkOrder LIMIT 1")[0]["Id"])


def _file(work_order: str, **changes: object) -> dict[str, object]:
    return {
        "Title": "leak.png",
        "PathOnClient": "leak.png",
        "VersionData": base64.b64encode(PNG).decode(),
        "FirstPublishLocationId": work_order,
        **changes,
    }


def test_a_version_makes_its_document_and_the_link_to_the_record(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    work_order = _work_order(sf_gateway)
    version_id = sf_gateway.create("ContentVersion", _file(work_order))
    [version] = sf_gateway.query_all(
        "SELECT Id, Title, ContentDocumentId, ContentSize, FileExtension, IsLatest, VersionData "
        f"FROM ContentVersion WHERE FirstPublishLocationId = '{work_order}'"
    )
    assert version["Id"] == version_id and version["Title"] == "leak.png"
    assert (version["ContentSize"], version["FileExtension"], version["IsLatest"]) == (len(PNG), "png", True)
    assert base64.b64decode(version["VersionData"]) == PNG
    [link] = sf_gateway.query_all(
        f"SELECT ContentDocumentId, ShareType FROM ContentDocumentLink WHERE LinkedEntityId = '{work_order}'"
    )
    assert link["ContentDocumentId"] == version["ContentDocumentId"]
    document_id = link["ContentDocumentId"]
    [document] = sf_gateway.query_all(
        f"SELECT Title, LatestPublishedVersionId FROM ContentDocument WHERE Id = '{document_id}'"
    )
    assert document == {**document, "Title": "leak.png", "LatestPublishedVersionId": version_id}


def test_version_data_that_is_not_base64_is_refused_and_nothing_is_made(
    sf_gateway: SalesforceGateway,
) -> None:
    work_order = _work_order(sf_gateway)
    with pytest.raises(CrmRejected, match="INVALID_FIELD"):
        sf_gateway.create("ContentVersion", _file(work_order, VersionData="not base64!"))
    assert sf_gateway.count("SELECT COUNT() FROM ContentDocument") == 0
    assert sf_gateway.count("SELECT COUNT() FROM ContentVersion") == 0


def test_a_version_needs_its_path_on_client(sf_gateway: SalesforceGateway) -> None:
    with pytest.raises(CrmRejected, match="REQUIRED_FIELD_MISSING"):
        sf_gateway.create("ContentVersion", _file(_work_order(sf_gateway), PathOnClient=None))


def test_version_data_reads_the_bytes_back(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    version_id = sf_gateway.create("ContentVersion", _file(_work_order(sf_gateway)))
    assert sf_gateway.version_data(version_id) == PNG
    assert sf_emulator.counts["blob_get"] == 1


def test_the_blob_resource_answers_binary_not_json(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    version_id = sf_gateway.create("ContentVersion", _file(_work_order(sf_gateway)))
    response = sf_emulator.session().get(
        f"{sf_emulator.base_url}/services/data/v59.0/sobjects/ContentVersion/{version_id}/VersionData",
        headers={"Authorization": f"Bearer {sf_gateway.sf.session_id}"},
    )
    assert response.status_code == 200 and response.content == PNG
    assert response.headers["Content-Type"].startswith("application/octetstream")


def test_a_missing_version_is_not_found_naming_it(sf_gateway: SalesforceGateway) -> None:
    missing = "068000000000000AAA"
    with pytest.raises(CrmNotFound) as exc:
        sf_gateway.version_data(missing)
    assert missing in str(exc.value) and exc.value.status == 404 and not exc.value.retriable
    assert sf_gateway.sf.session_id not in str(exc.value)


def test_version_data_is_retried_when_salesforce_is_unavailable(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_sleep: SleepRecorder
) -> None:
    version_id = sf_gateway.create("ContentVersion", _file(_work_order(sf_gateway)))
    sf_emulator.faults.set("blob_get", error_rate=1.0, error_status=503)
    with pytest.raises(CrmUnavailable, match=version_id):
        sf_gateway.version_data(version_id)
    assert sf_emulator.counts["blob_get"] == 4 and len(sf_sleep.calls) == 3

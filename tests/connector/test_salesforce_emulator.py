"""Contract tests: simple-salesforce 1.12 against the emulator over HTTPS on a real socket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from connector.crm import login_domain
from connector.sandbox.salesforce.emulator import DEMO_CLIENT_ID as SF_CLIENT_ID
from connector.sandbox.salesforce.emulator import DEMO_CLIENT_SECRET as SF_CLIENT_SECRET
from connector.sandbox.salesforce.emulator import DEMO_PASSWORD as SF_PASSWORD
from connector.sandbox.salesforce.emulator import DEMO_USERNAME as SF_USER
from connector.sandbox.salesforce.emulator import SalesforceEmulator

if TYPE_CHECKING:
    from tests.connector.sf_fixtures import SfClock

pytest_plugins = ["tests.connector.sf_fixtures"]


def error_code(exc: pytest.ExceptionInfo[Exception]) -> str:
    content = exc.value.content  # type: ignore[attr-defined]
    return str(content[0]["errorCode"])


def test_soap_login_returns_the_emulator_as_instance(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator
) -> None:
    assert sf_client.sf_instance == sf_emulator.base_url.removeprefix("https://")
    assert sf_emulator.counts["login"] == 1


def test_soap_login_with_wrong_password_is_refused(sf_emulator: SalesforceEmulator) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(
            username=SF_USER,
            password="nope",
            security_token="",
            domain=login_domain(sf_emulator.base_url),
            session=sf_emulator.session(),
        )
    assert exc.value.code == "INVALID_LOGIN"


def test_oauth_password_grant(sf_emulator: SalesforceEmulator) -> None:
    sf = Salesforce(
        username=SF_USER,
        password=SF_PASSWORD,
        consumer_key=SF_CLIENT_ID,
        consumer_secret=SF_CLIENT_SECRET,
        domain=login_domain(sf_emulator.base_url),
        session=sf_emulator.session(),
    )
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 3
    assert sf_emulator.counts["token"] == 1


def test_oauth_client_credentials(sf_emulator: SalesforceEmulator) -> None:
    sf = Salesforce(
        consumer_key=SF_CLIENT_ID,
        consumer_secret=SF_CLIENT_SECRET,
        domain=login_domain(sf_emulator.base_url),
        session=sf_emulator.session(),
    )
    assert sf.query("SELECT COUNT() FROM WorkOrder")["totalSize"] == 3


def test_oauth_with_wrong_secret_is_refused(sf_emulator: SalesforceEmulator) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(
            consumer_key=SF_CLIENT_ID,
            consumer_secret="wrong",
            domain=login_domain(sf_emulator.base_url),
            session=sf_emulator.session(),
        )
    assert exc.value.code == "invalid_client"


def test_session_without_the_ca_is_rejected(sf_emulator: SalesforceEmulator) -> None:
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{sf_emulator.base_url}/services/data/v59.0/limits")


def test_query_all_iter_pages_with_next_records_url(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.insert_many("Account", ({"Name": f"Bulk {i:03d}"} for i in range(250)))
    sf_emulator.app.page_size = 100
    names = [r["Name"] for r in sf_client.query_all_iter("SELECT Name FROM Account WHERE Name LIKE 'Bulk%'")]
    assert names == [f"Bulk {i:03d}" for i in range(250)]
    assert sf_emulator.counts["query"] == 1
    assert sf_emulator.counts["query_more"] == 2


def test_first_page_reports_total_size_and_next_url(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.app.page_size = 2
    page = sf_client.query("SELECT Id FROM WorkOrder")
    assert (page["totalSize"], page["done"], len(page["records"])) == (3, False, 2)
    assert page["nextRecordsUrl"].startswith("/services/data/v59.0/query/")


def test_parent_fields_are_nested_with_attributes(sf_client: Salesforce) -> None:
    rows = sf_client.query(
        "SELECT Subject, Account.Name, LastModifiedBy.Name, Contact.Account.Name FROM WorkOrder "
        "WHERE WorkOrderNumber = '00000101'"
    )["records"]
    row = rows[0]
    assert row["Account"]["Name"] == "Acme Facilities"
    assert row["Account"]["attributes"]["type"] == "Account"
    assert row["LastModifiedBy"]["Name"] == "Org Admin"
    assert row["Contact"]["Account"]["Name"] == "Acme Facilities"


def test_missing_parent_is_null(sf_client: Salesforce) -> None:
    row = sf_client.query("SELECT Contact.LastName FROM WorkOrder WHERE WorkOrderNumber = '00000103'")[
        "records"
    ][0]
    assert row["Contact"] is None


def test_unknown_field_is_invalid_field(sf_client: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf_client.query("SELECT Nope__c FROM WorkOrder")
    assert error_code(exc) == "INVALID_FIELD"


def test_syntax_error_is_malformed_query(sf_client: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf_client.query("SELECT Id FROM WorkOrder WHERE")
    assert error_code(exc) == "MALFORMED_QUERY"


def test_quoted_datetime_is_refused_like_salesforce(sf_client: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf_client.query("SELECT Id FROM WorkOrder WHERE SystemModstamp > '2026-01-01T00:00:00Z'")
    assert error_code(exc) == "INVALID_FIELD"


def test_crud_round_trip(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    created = sf_client.Account.create({"Name": "New Co", "Dispatch_Me__c": True})
    assert created["success"] and created["id"].startswith("001") and len(created["id"]) == 18
    assert sf_client.Account.update(created["id"], {"Name": "Renamed Co"}) == 204
    assert sf_client.Account.get(created["id"])["Name"] == "Renamed Co"
    assert sf_client.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf_client.Account.get(created["id"])
    assert sf_emulator.counts["create"] == 1 and sf_emulator.counts["delete"] == 1


def test_upsert_by_external_id_creates_then_updates(sf_client: Salesforce) -> None:
    assert sf_client.Account.upsert("Dispatch_External_Id__c/SP-2000", {"Name": "New SP"}) == 201
    assert sf_client.Account.upsert("Dispatch_External_Id__c/SP-2000", {"Name": "Same SP"}) == 200
    rows = sf_client.query("SELECT Name FROM Account WHERE Dispatch_External_Id__c = 'SP-2000'")
    assert [r["Name"] for r in rows["records"]] == ["Same SP"]
    assert sf_client.Account.get_by_custom_id("Dispatch_External_Id__c", "SP-2000")["Name"] == "Same SP"


def test_writes_stamp_audit_fields_with_the_writing_user(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    wo = sf_emulator.record_ids("WorkOrder")[0]
    before = sf_emulator.get("WorkOrder", wo)
    assert before["LastModifiedById"] == sf_emulator.admin_user_id
    sf_clock.advance(60)
    sf_client.WorkOrder.update(wo, {"Dispatch_Status__c": "accepted"})
    after = sf_emulator.get("WorkOrder", wo)
    assert after["LastModifiedById"] == sf_emulator.user_id(SF_USER)
    assert after["SystemModstamp"] == after["LastModifiedDate"] == sf_clock.now
    assert after["CreatedDate"] == before["CreatedDate"]


def test_watermark_query_sees_only_later_changes(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    sf_clock.advance(3600)
    wo = sf_emulator.record_ids("WorkOrder")[1]
    sf_emulator.update("WorkOrder", wo, {"Subject": "Changed by admin"})
    rows = sf_client.query(
        "SELECT Id, LastModifiedById FROM WorkOrder WHERE SystemModstamp > 2026-11-25T09:30:00+00:00"
    )["records"]
    assert [r["Id"] for r in rows] == [wo]


def collection(records: list[dict[str, object]], all_or_none: bool) -> dict[str, object]:
    return {"allOrNone": all_or_none, "records": records}


def test_collections_partial_failure(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    ok, missing = sf_emulator.record_ids("WorkOrder")[0], "0WO5g00000009ZZAAA"
    result = sf_client.restful(
        "composite/sobjects",
        method="PATCH",
        json=collection(
            [
                {"attributes": {"type": "WorkOrder"}, "Id": ok, "Dispatch_Status__c": "scheduled"},
                {"attributes": {"type": "WorkOrder"}, "Id": missing, "Dispatch_Status__c": "x"},
            ],
            False,
        ),
    )
    assert result[0] == {"id": ok, "success": True, "errors": []}
    assert result[1]["success"] is False and result[1]["errors"][0]["statusCode"] == "NOT_FOUND"
    assert sf_emulator.get("WorkOrder", ok)["Dispatch_Status__c"] == "scheduled"


def test_collections_all_or_none_rolls_back(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    ok = sf_emulator.record_ids("WorkOrder")[0]
    result = sf_client.restful(
        "composite/sobjects",
        method="PATCH",
        json=collection(
            [
                {"attributes": {"type": "WorkOrder"}, "Id": ok, "Dispatch_Status__c": "scheduled"},
                {"attributes": {"type": "WorkOrder"}, "Id": ok, "No_Such__c": 1},
            ],
            True,
        ),
    )
    assert result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert result[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert sf_emulator.get("WorkOrder", ok)["Dispatch_Status__c"] is None


def test_collections_create_returns_ids(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    result = sf_client.restful(
        "composite/sobjects",
        method="POST",
        json=collection([{"attributes": {"type": "Dispatch_Log__c"}, "Error__c": "boom"}], False),
    )
    assert result[0]["success"] and result[0]["id"].startswith("a0L")


def test_collections_refuse_more_than_200(sf_client: Salesforce) -> None:
    records = [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf_client.restful("composite/sobjects", method="POST", json=collection(records, False))
    assert error_code(exc) == "EXCEEDED_ID_LIMIT"


def test_unable_to_lock_row_is_per_record(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    locked, free = sf_emulator.record_ids("WorkOrder")[:2]
    sf_emulator.lock_records([locked])
    records = [{"attributes": {"type": "WorkOrder"}, "Id": i, "Subject": "s"} for i in (locked, free)]
    result = sf_client.restful("composite/sobjects", method="PATCH", json=collection(records, False))
    assert result[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert result[1]["success"] is True


def test_limits_report_api_usage(sf_client: Salesforce) -> None:
    sf_client.query("SELECT Id FROM Account")
    limits = sf_client.limits()
    assert limits["DailyApiRequests"]["Max"] - limits["DailyApiRequests"]["Remaining"] == 2


def test_api_limit_reached_answers_request_limit_exceeded(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.set_api_limit(10, used=10)
    with pytest.raises(Exception) as exc:
        sf_client.query("SELECT Id FROM Account")
    assert error_code(exc) == "REQUEST_LIMIT_EXCEEDED"
    assert exc.value.status == 403  # type: ignore[attr-defined]


def test_expired_session_answers_invalid_session_id(sf_emulator: SalesforceEmulator) -> None:
    sf = Salesforce(
        session_id="00D!not-a-session", instance_url=sf_emulator.base_url, session=sf_emulator.session()
    )
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Account")
    assert error_code(exc) == "INVALID_SESSION_ID"


def test_simple_salesforce_relogs_in_after_ttl(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    sf_clock.advance(7200)
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == 3
    assert sf_emulator.counts["login"] == 2


def test_injected_5xx_fault(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.faults.set("query", error_rate=1.0, error_status=503)
    with pytest.raises(Exception) as exc:
        sf_client.query("SELECT Id FROM Account")
    assert exc.value.status == 503  # type: ignore[attr-defined]


def test_injected_drop_closes_the_connection(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.faults.set("query", drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        sf_client.query("SELECT Id FROM Account")


def test_control_api_sets_faults_and_reads_counts(sf_emulator: SalesforceEmulator) -> None:
    http = sf_emulator.session()
    base = sf_emulator.base_url
    http.post(f"{base}/control/request_limit", json={"count": 2}).raise_for_status()
    assert sf_emulator.app.forced_limit_exceeded == 2
    created = http.post(f"{base}/control/records/Account", json={"Name": "Via control"}).json()
    record = http.get(f"{base}/control/records/Account/{created['id']}").json()
    assert record["Name"] == "Via control"
    assert http.get(f"{base}/control/counts").json() == {}


def test_datetime_values_use_salesforce_format(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator
) -> None:
    wo = sf_emulator.record_ids("WorkOrder")[0]
    sf_client.WorkOrder.update(wo, {"Dispatch_Accepted_At__c": "2026-11-25T10:15:00+01:00"})
    row = sf_client.WorkOrder.get(wo)
    assert row["Dispatch_Accepted_At__c"] == "2026-11-25T09:15:00.000+0000"
    assert sf_emulator.get("WorkOrder", wo)["Dispatch_Accepted_At__c"] == datetime(
        2026, 11, 25, 9, 15, tzinfo=UTC
    )


def test_deleted_record_is_in_query_all_only(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    wo = sf_emulator.record_ids("WorkOrder")[0]
    assert sf_client.WorkOrder.delete(wo) == 204
    soql = f"SELECT Id, IsDeleted FROM WorkOrder WHERE Id = '{wo}'"
    assert sf_client.query(soql)["records"] == []
    (row,) = sf_client.query(soql, include_deleted=True)["records"]
    assert row["IsDeleted"] is True
    with pytest.raises(SalesforceResourceNotFound, match="ENTITY_IS_DELETED"):
        sf_client.WorkOrder.get(wo)
    result = sf_client.restful(
        "composite/sobjects",
        method="PATCH",
        json=collection([{"attributes": {"type": "WorkOrder"}, "Id": wo, "Dispatch_Status__c": "x"}], False),
    )
    assert result[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


def test_query_all_pages_stay_on_query_all(sf_client: Salesforce, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.app.page_size = 2
    doomed = sf_emulator.record_ids("WorkOrder")[0]
    sf_client.WorkOrder.delete(doomed)
    page = sf_client.query("SELECT Id, IsDeleted FROM WorkOrder", include_deleted=True)
    assert page["nextRecordsUrl"].startswith("/services/data/v59.0/queryAll/")
    rows = list(sf_client.query_all_iter("SELECT Id, IsDeleted FROM WorkOrder", include_deleted=True))
    assert {r["Id"]: r["IsDeleted"] for r in rows}[doomed] is True and len(rows) == 3


def test_rolled_back_create_leaves_no_deleted_record(
    sf_client: Salesforce, sf_emulator: SalesforceEmulator
) -> None:
    sf_client.restful(
        "composite/sobjects",
        method="POST",
        json=collection(
            [{"attributes": {"type": "Account"}, "Name": "Ghost"}, {"attributes": {"type": "Nope__c"}}], True
        ),
    )
    rows = sf_client.query("SELECT Id FROM Account WHERE Name = 'Ghost'", include_deleted=True)["records"]
    assert rows == []

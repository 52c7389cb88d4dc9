"""The CRM gateway against the emulator: login flows, paging, Collections, retries and error translation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests
import responses

from connector.crm import (
    CrmAuthenticationError,
    CrmNotFound,
    CrmRejected,
    CrmRequestLimitExceeded,
    CrmUnavailable,
    RetryPolicy,
    SalesforceGateway,
    _Salesforce,
    connect_salesforce,
    format_soql,
    login_domain,
)
from connector.errors import ConfigurationError
from connector.sandbox.salesforce.emulator import DEMO_CLIENT_ID as SF_CLIENT_ID
from connector.sandbox.salesforce.emulator import DEMO_CLIENT_SECRET as SF_CLIENT_SECRET
from connector.sandbox.salesforce.emulator import DEMO_PASSWORD as SF_PASSWORD
from connector.sandbox.salesforce.emulator import DEMO_SECURITY_TOKEN as SF_TOKEN
from connector.sandbox.salesforce.emulator import DEMO_USERNAME as SF_USER
from connector.sandbox.salesforce.emulator import SalesforceEmulator

if TYPE_CHECKING:
    from tests.connector.sf_fixtures import SfClock, SleepRecorder

pytest_plugins = ["tests.connector.sf_fixtures"]


def work_order_ids(emulator: SalesforceEmulator) -> list[str]:
    return emulator.record_ids("WorkOrder")


def test_login_domain_for_my_domain_and_emulator() -> None:
    assert login_domain("https://acme.my.salesforce.com") == "acme.my"
    assert login_domain("https://127.0.0.1:8443") == "127.0.0.1:8443/services/login#"


def test_login_domain_refuses_plain_http() -> None:
    with pytest.raises(ConfigurationError):
        login_domain("http://127.0.0.1:8443")


def test_client_credentials_login(sf_emulator: SalesforceEmulator) -> None:
    gw = connect_salesforce(
        sf_emulator.base_url,
        client_id=SF_CLIENT_ID,
        client_secret=SF_CLIENT_SECRET,
        session=sf_emulator.session(),
    )
    assert gw.count("SELECT COUNT() FROM WorkOrder") == 3
    assert sf_emulator.counts["token"] == 1


def test_wrong_password_raises_auth_error_without_secrets(sf_emulator: SalesforceEmulator) -> None:
    with pytest.raises(CrmAuthenticationError) as exc:
        connect_salesforce(
            sf_emulator.base_url,
            username=SF_USER,
            password="hunter2-secret",
            security_token=SF_TOKEN,
            session=sf_emulator.session(),
        )
    assert not exc.value.retriable
    assert "hunter2-secret" not in str(exc.value) and SF_TOKEN not in str(exc.value)


def test_query_iter_streams_pages(sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.insert_many("Account", ({"Name": f"Bulk {i}"} for i in range(45)))
    sf_emulator.app.page_size = 10
    rows = sf_gateway.query_iter("SELECT Id FROM Account WHERE Name LIKE 'Bulk %'")
    first = next(rows)
    assert first["attributes"]["type"] == "Account"
    assert sf_emulator.counts.get("query_more", 0) == 0
    assert len(list(rows)) == 44
    assert sf_emulator.counts["query_more"] == 4
    assert sf_gateway.api_calls == 5


def test_update_records_returns_per_record_results(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    ok = work_order_ids(sf_emulator)[0]
    results = sf_gateway.update_records(
        "WorkOrder", [{"Id": ok, "Dispatch_Status__c": "accepted"}, {"Id": ok, "Bogus__c": 1}]
    )
    assert results[0].success and results[0].id == ok
    assert not results[1].success and results[1].error_codes == ("INVALID_FIELD",)
    assert sf_emulator.get("WorkOrder", ok)["Dispatch_Status__c"] == "accepted"


def test_update_records_chunks_at_200(sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator) -> None:
    ids = sf_emulator.insert_many("Account", ({"Name": f"A{i}"} for i in range(450)))
    results = sf_gateway.update_records("Account", [{"Id": i, "Dispatch_Me__c": True} for i in ids])
    assert all(r.success for r in results) and len(results) == 450
    assert sf_emulator.counts["collections"] == 3


def test_create_records(sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator) -> None:
    results = sf_gateway.create_records(
        "Dispatch_Log__c", [{"Error__c": "x", "Direction__c": "inbound"}, {"Nope__c": 1}]
    )
    assert results[0].success and results[0].id is not None
    assert sf_emulator.get("Dispatch_Log__c", results[0].id)["Error__c"] == "x"
    assert results[1].error_codes == ("INVALID_FIELD",)


def test_connector_writes_are_attributed_to_the_integration_user(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    wo = work_order_ids(sf_emulator)[0]
    sf_clock.advance(10)
    sf_gateway.update_records("WorkOrder", [{"Id": wo, "Dispatch_Error__c": None}])
    record = sf_emulator.get("WorkOrder", wo)
    assert record["LastModifiedById"] == sf_emulator.user_id(SF_USER) != sf_emulator.admin_user_id
    assert record["SystemModstamp"] == sf_clock.now


def test_expired_session_relogs_in_transparently(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.expire_sessions()
    record = sf_gateway.get("WorkOrder", work_order_ids(sf_emulator)[0])
    assert record["Subject"]
    assert sf_emulator.counts["login"] == 2
    assert sf_gateway.login_calls == 2


def test_session_ttl_relogin_mid_paging(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    sf_emulator.app.page_size = 1
    rows = sf_gateway.query_iter("SELECT Id FROM WorkOrder")
    next(rows)
    sf_clock.advance(7200)
    assert len(list(rows)) == 2
    assert sf_emulator.counts["login"] == 2


def test_request_limit_exceeded_backs_off_then_succeeds(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_sleep: SleepRecorder
) -> None:
    sf_emulator.fail_next_with_request_limit(2)
    assert sf_gateway.count("SELECT COUNT() FROM Account") == 3
    assert len(sf_sleep.calls) == 2 and sf_sleep.calls[0] <= sf_sleep.calls[1]
    assert sf_emulator.counts["query"] == 3


def test_request_limit_that_persists_raises_retriable_error(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.set_api_limit(5, used=5)
    with pytest.raises(CrmRequestLimitExceeded) as exc:
        sf_gateway.count("SELECT COUNT() FROM Account")
    assert exc.value.retriable and exc.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert sf_emulator.counts["query"] == 4


def test_locked_row_is_retried_alone(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_sleep: SleepRecorder
) -> None:
    locked, free = work_order_ids(sf_emulator)[:2]
    sf_emulator.lock_records([locked], times=2)
    results = sf_gateway.update_records(
        "WorkOrder", [{"Id": locked, "Subject": "L"}, {"Id": free, "Subject": "F"}]
    )
    assert [r.success for r in results] == [True, True]
    assert sf_emulator.counts["collections"] == 3
    assert len(sf_sleep.calls) == 2
    assert sf_emulator.get("WorkOrder", locked)["Subject"] == "L"


def test_5xx_is_retried(sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.faults.set("collections", error_rate=1.0, error_status=503)
    wo = work_order_ids(sf_emulator)[0]
    with pytest.raises(CrmUnavailable) as exc:
        sf_gateway.update_records("WorkOrder", [{"Id": wo, "Subject": "x"}])
    assert exc.value.status == 503 and exc.value.retriable
    assert sf_emulator.counts["collections"] == 4


def test_dropped_connection_on_update_is_retried(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.faults.set("collections", drop_rate=1.0)
    with pytest.raises(CrmUnavailable):
        sf_gateway.update_records("WorkOrder", [{"Id": work_order_ids(sf_emulator)[0]}])
    assert sf_emulator.counts["collections"] == 4


def test_dropped_connection_on_create_is_not_resent(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.faults.set("collections", drop_rate=1.0)
    with pytest.raises(CrmUnavailable) as exc:
        sf_gateway.create_records("Dispatch_Log__c", [{"Error__c": "x"}])
    assert exc.value.maybe_applied
    assert sf_emulator.counts["collections"] == 1


def test_latency_beyond_timeout_is_unavailable(
    sf_emulator: SalesforceEmulator, sf_sleep: SleepRecorder
) -> None:
    gw = connect_salesforce(
        sf_emulator.base_url,
        username=SF_USER,
        password=SF_PASSWORD,
        security_token=SF_TOKEN,
        session=sf_emulator.session(),
        timeout_s=0.2,
        retry=RetryPolicy(attempts=2, sleep=sf_sleep),
    )
    sf_emulator.faults.set("query", latency_s=0.5)
    with pytest.raises(CrmUnavailable):
        gw.count("SELECT COUNT() FROM Account")
    assert sf_emulator.counts["query"] == 2


def test_latency_within_timeout_succeeds(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.faults.set("query", latency_s=0.05)
    assert sf_gateway.count("SELECT COUNT() FROM Account") == 3


def test_bad_soql_is_rejected_not_retried(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    with pytest.raises(CrmRejected) as exc:
        sf_gateway.query_all("SELECT Id FROM WorkOrder WHERE")
    assert exc.value.error_code == "MALFORMED_QUERY" and not exc.value.retriable
    assert sf_emulator.counts["query"] == 1


def test_get_missing_record_is_not_found(sf_gateway: SalesforceGateway) -> None:
    with pytest.raises(CrmNotFound):
        sf_gateway.get("WorkOrder", "0WO5g00000009ZZAAA")


def test_format_soql_keeps_quotes_inside_the_literal(
    sf_gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.insert("Account", {"Name": "O'Brien' OR Name != '"})
    hostile = "x' OR Name != 'y"
    assert sf_gateway.query_all(format_soql("SELECT Id FROM Account WHERE Name = {}", hostile)) == []
    rows = sf_gateway.query_all(
        format_soql("SELECT Name FROM Account WHERE Name = {}", "O'Brien' OR Name != '")
    )
    assert [r["Name"] for r in rows] == ["O'Brien' OR Name != '"]


def test_format_soql_datetime_is_a_valid_filter(
    sf_gateway: SalesforceGateway, sf_clock: SfClock, sf_emulator: SalesforceEmulator
) -> None:
    watermark = sf_clock.now
    sf_clock.advance(5)
    sf_emulator.update("WorkOrder", work_order_ids(sf_emulator)[2], {"Subject": "later"})
    soql = format_soql("SELECT Subject FROM WorkOrder WHERE SystemModstamp > {}", watermark)
    assert [r["Subject"] for r in sf_gateway.query_all(soql)] == ["later"]


def test_limits(sf_gateway: SalesforceGateway) -> None:
    assert sf_gateway.limits()["DailyApiRequests"]["Max"] > 0


def test_an_answer_that_is_not_json_is_a_gateway_error_not_a_crash() -> None:
    # request/answer shape only (responses): the emulator never sends a garbled body
    instance = "https://acme.my.salesforce.com"
    gateway = SalesforceGateway(
        lambda http: _Salesforce(instance_url=instance, session_id="token", session=http),
        requests.Session(),
        retry=RetryPolicy(attempts=2, sleep=lambda _s: None),
    )
    with responses.RequestsMock() as mock:
        mock.get(f"{instance}/services/data/v59.0/query/", body=b'{"records": [', status=200)
        with pytest.raises(CrmUnavailable, match="JSONDecodeError"):
            gateway.query_all("SELECT Id FROM WorkOrder")
        assert len(mock.calls) == 2  # retried like any garbled transfer, then reported

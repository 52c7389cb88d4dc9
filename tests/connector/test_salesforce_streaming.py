"""The emulator's Streaming API (CometD/Bayeux) and Change Data Capture, spoken raw over HTTPS on a real
socket. Error texts are Salesforce's (Streaming API Error Codes); retention and the daily allocation run on
the emulator's injected clock (sessions do not expire here: the clock moves by days)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests

from connector.crm import SalesforceGateway
from connector.sandbox.salesforce.emulator import DEMO_FIXTURE, SalesforceEmulator
from connector.sandbox.salesforce.streaming import change_channel

if TYPE_CHECKING:
    from tests.connector.sf_fixtures import SfClock

pytest_plugins = ["tests.connector.sf_fixtures"]

WO = "/data/WorkOrderChangeEvent"
INVALID_REPLAY = (
    "400::The replayId {{{}}} you provided was invalid. Please provide a valid ID, -2 to replay all events, "
    "or -1 to replay only new events."
)


class Bayeux:
    """A bare Bayeux client: what the tests send is exactly what is on the wire."""

    def __init__(self, emulator: SalesforceEmulator, token: str | None) -> None:
        self.http = emulator.session()
        self.url = f"{emulator.base_url}/cometd/{emulator.api_version}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client_id = ""

    def send(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.http.post(self.url, json=list(messages), headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    def handshake(self) -> dict[str, Any]:
        reply = self.send(
            {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        )
        self.client_id = reply[0].get("clientId", "")
        return reply[0]

    def subscribe(self, channel: str = WO, replay: int = -1) -> dict[str, Any]:
        message = {"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": channel}
        return self.send({**message, "ext": {"replay": {channel: replay}}})[0]

    def connect(self, wait_ms: int = 0) -> list[dict[str, Any]]:
        return self.send(
            {
                "channel": "/meta/connect",
                "clientId": self.client_id,
                "connectionType": "long-polling",
                "advice": {"timeout": wait_ms},
            }
        )

    def events(self, wait_ms: int = 0) -> list[dict[str, Any]]:
        replies = self.connect(wait_ms)
        assert replies[-1]["successful"] is True, replies[-1]
        return [r for r in replies if r["channel"] != "/meta/connect"]


@pytest.fixture
def sf_emulator(sf_clock: SfClock) -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(DEMO_FIXTURE, clock=sf_clock) as emulator:
        yield emulator


@pytest.fixture
def bayeux(sf_emulator: SalesforceEmulator, sf_gateway: SalesforceGateway) -> Bayeux:
    client = Bayeux(sf_emulator, sf_gateway.sf.session_id)
    assert client.handshake()["successful"] is True
    assert client.subscribe()["successful"] is True
    return client


def header(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = event["data"]["payload"]["ChangeEventHeader"]
    return result


def first_work_order(emulator: SalesforceEmulator) -> str:
    return sorted(emulator.record_ids("WorkOrder"))[0]


# --- event shapes ------------------------------------------------------------------------------------


def test_update_by_the_connector_carries_only_the_changed_fields(
    bayeux: Bayeux, sf_emulator: SalesforceEmulator, sf_gateway: SalesforceGateway, sf_clock: SfClock
) -> None:
    wo = first_work_order(sf_emulator)
    subject = sf_emulator.get("WorkOrder", wo)["Subject"]
    sf_gateway.update_records("WorkOrder", [{"Id": wo, "Subject": subject, "Status": "In Progress"}])
    [event] = bayeux.events()
    head = header(event)
    assert event["channel"] == WO
    assert isinstance(event["data"]["schema"], str) and event["data"]["event"]["replayId"] == 1
    assert head["entityName"] == "WorkOrder" and head["recordIds"] == [wo] and head["changeType"] == "UPDATE"
    # Subject was sent unchanged: not a change. The integration user differs from the fixture's admin.
    assert head["changedFields"] == ["LastModifiedById", "Status", "LastModifiedDate"]
    assert head["commitUser"] == sf_emulator.user_id("integration@demo.example")
    assert head["changeOrigin"] == "com/salesforce/api/rest/59.0"
    assert head["commitTimestamp"] == int(sf_clock.now.timestamp() * 1000)
    assert event["data"]["payload"]["Status"] == "In Progress" and "Subject" not in event["data"]["payload"]


def test_update_to_null_is_listed_in_nulled_fields(bayeux: Bayeux, sf_emulator: SalesforceEmulator) -> None:
    wo = first_work_order(sf_emulator)
    sf_emulator.update("WorkOrder", wo, {"Subject": None})
    head = header(bayeux.events()[0])
    assert head["nulledFields"] == ["Subject"]
    assert head["changedFields"] == ["Subject", "LastModifiedDate"]


def test_create_delete_and_undelete_events(bayeux: Bayeux, sf_emulator: SalesforceEmulator) -> None:
    rid = sf_emulator.insert("WorkOrder", {"Subject": "Leaking tap"})
    sf_emulator.delete("WorkOrder", rid)
    response = sf_emulator.session().post(
        f"{sf_emulator.base_url}/control/undelete/WorkOrder/{rid}", timeout=5
    )
    assert response.status_code == 204
    create, delete, undelete = bayeux.events()
    assert [header(e)["changeType"] for e in (create, delete, undelete)] == ["CREATE", "DELETE", "UNDELETE"]
    assert header(create)["changedFields"] == [] and create["data"]["payload"]["Subject"] == "Leaking tap"
    assert "CreatedDate" in create["data"]["payload"] and "Id" not in create["data"]["payload"]
    assert set(delete["data"]["payload"]) == {"ChangeEventHeader"}
    assert undelete["data"]["payload"]["Subject"] == "Leaking tap"
    assert sf_emulator.get("WorkOrder", rid)["IsDeleted"] is False
    assert [e["data"]["event"]["replayId"] for e in (create, delete, undelete)] == [1, 2, 3]


def test_objects_not_selected_for_cdc_publish_nothing(
    bayeux: Bayeux, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.insert("Contact", {"LastName": "Nobody"})
    assert bayeux.events() == []


def test_custom_object_channel_after_enabling_it(sf_emulator: SalesforceEmulator, bayeux: Bayeux) -> None:
    sf_emulator.define_object("Visit__c", {"Notes__c": "string"})
    answer = sf_emulator.session().post(
        f"{sf_emulator.base_url}/control/streaming/enable", json={"object": "Visit__c"}, timeout=5
    )
    assert answer.json() == {"channel": "/data/Visit__ChangeEvent"} == {"channel": change_channel("Visit__c")}
    assert bayeux.subscribe("/data/Visit__ChangeEvent")["successful"] is True
    sf_emulator.insert("Visit__c", {"Notes__c": "gate code 4411"})
    assert header(bayeux.events()[0])["entityName"] == "Visit__c"


def test_long_poll_answers_as_soon_as_an_event_is_published(
    bayeux: Bayeux, sf_emulator: SalesforceEmulator
) -> None:
    replies: list[list[dict[str, Any]]] = []
    waiting = threading.Thread(target=lambda: replies.append(bayeux.connect(wait_ms=8000)))
    connects = sf_emulator.counts.get("streaming_connect", 0)
    waiting.start()
    while sf_emulator.counts.get("streaming_connect", 0) == connects:  # synchronisation, not timing
        time.sleep(0.01)
    sf_emulator.update("WorkOrder", first_work_order(sf_emulator), {"Status": "Scheduled"})
    waiting.join(timeout=5)
    assert not waiting.is_alive()
    assert [r["channel"] for r in replies[0]] == [WO, "/meta/connect"]


# --- accounting ----------------------------------------------------------------------------------------


def test_streaming_is_counted_apart_and_not_charged_to_the_api_limit(
    bayeux: Bayeux, sf_emulator: SalesforceEmulator
) -> None:
    used = sf_emulator.app.api_used
    sf_emulator.update("WorkOrder", first_work_order(sf_emulator), {"Status": "Scheduled"})
    bayeux.events()
    bayeux.events()
    counts = sf_emulator.counts
    assert counts["streaming_handshake"] == 1 and counts["streaming_subscribe"] == 1
    assert counts["streaming_connect"] == 2 and counts["streaming_events_delivered"] == 1
    assert sf_emulator.app.api_used == used


# --- errors, in Salesforce's words -------------------------------------------------------------------


def test_unknown_client_must_handshake_again(bayeux: Bayeux, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.streaming.drop_clients()
    [reply] = bayeux.connect()
    assert reply["successful"] is False and reply["error"] == "403::Unknown client"
    assert reply["advice"] == {"reconnect": "handshake", "interval": 0}


def test_subscribing_to_a_channel_without_cdc_is_refused(bayeux: Bayeux) -> None:
    reply = bayeux.subscribe("/data/ContactChangeEvent")
    assert reply["successful"] is False
    assert (
        reply["error"]
        == "400::The channel you requested to subscribe to does not exist {/data/ContactChangeEvent}"
    )


def test_handshake_without_a_valid_session_is_denied(sf_emulator: SalesforceEmulator) -> None:
    reply = Bayeux(sf_emulator, "00D5g000000EMUL!not-a-session").handshake()
    assert reply["successful"] is False and reply["error"] == "403::Handshake denied"
    assert reply["ext"] == {"sfdc": {"failureReason": "401::Authentication invalid"}}


def test_cometd_without_an_api_version_is_refused(sf_emulator: SalesforceEmulator) -> None:
    response = requests.post(
        f"{sf_emulator.base_url}/cometd", json=[], verify=str(sf_emulator.ca_path), timeout=5
    )
    assert response.status_code == 400
    assert response.json()["error"] == "400::API version in the URI is mandatory. URI format: '/cometd/59.0'"


# --- replay and retention ---------------------------------------------------------------------------


def test_replay_after_an_id_and_all_retained(
    sf_emulator: SalesforceEmulator, sf_gateway: SalesforceGateway
) -> None:
    wo = first_work_order(sf_emulator)
    for status in ("Scheduled", "In Progress", "Completed"):
        sf_emulator.update("WorkOrder", wo, {"Status": status})
    after_one = Bayeux(sf_emulator, sf_gateway.sf.session_id)
    after_one.handshake()
    assert after_one.subscribe(replay=1)["ext"] == {"replay": {WO: 1}}
    assert [e["data"]["event"]["replayId"] for e in after_one.events()] == [2, 3]
    everything = Bayeux(sf_emulator, sf_gateway.sf.session_id)
    everything.handshake()
    everything.subscribe(replay=-2)
    assert [e["data"]["event"]["replayId"] for e in everything.events()] == [1, 2, 3]


def test_replay_id_older_than_the_retention_window_is_invalid(
    sf_emulator: SalesforceEmulator, sf_gateway: SalesforceGateway, sf_clock: SfClock
) -> None:
    wo = first_work_order(sf_emulator)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    sf_clock.advance(71 * 3600)
    sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
    sf_clock.advance(2 * 3600)  # the first event is now 73 h old: gone; the second is 2 h old
    client = Bayeux(sf_emulator, sf_gateway.sf.session_id)
    client.handshake()
    reply = client.subscribe(replay=0)
    assert reply["successful"] is False and reply["error"] == INVALID_REPLAY.format(0)
    assert client.subscribe(replay=1)["successful"] is True  # nothing after 1 was lost
    assert [e["data"]["event"]["replayId"] for e in client.events()] == [2]


def test_retention_window_is_configurable(
    sf_emulator: SalesforceEmulator, sf_clock: SfClock, bayeux: Bayeux
) -> None:
    answer = sf_emulator.session().post(
        f"{sf_emulator.base_url}/control/streaming/retention", json={"seconds": 3600}, timeout=5
    )
    assert answer.json() == {"retention_s": 3600.0}
    sf_emulator.update("WorkOrder", first_work_order(sf_emulator), {"Status": "Scheduled"})
    sf_clock.advance(3601)
    assert bayeux.events() == []
    assert bayeux.subscribe(replay=0)["error"] == INVALID_REPLAY.format(0)


# --- faults ------------------------------------------------------------------------------------------


def test_injected_gaps_carry_only_the_header_and_record_ids(
    bayeux: Bayeux, sf_emulator: SalesforceEmulator
) -> None:
    wo = first_work_order(sf_emulator)
    sf_emulator.streaming.inject_gaps(1)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    sf_emulator.streaming.inject_gaps(1, overflow=True)
    sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
    sf_emulator.update("WorkOrder", wo, {"Status": "Closed"})
    gap, overflow, normal = bayeux.events()
    assert header(gap)["changeType"] == "GAP_UPDATE" and header(gap)["recordIds"] == [wo]
    assert set(gap["data"]["payload"]) == {"ChangeEventHeader"} and header(gap)["changedFields"] == []
    assert header(overflow)["changeType"] == "GAP_OVERFLOW"
    assert header(normal)["changeType"] == "UPDATE"


def test_daily_allocation_used_up_refuses_connect_until_the_next_day(
    bayeux: Bayeux, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    sf_emulator.streaming.set_allocation(2)
    wo = first_work_order(sf_emulator)
    for status in ("Scheduled", "In Progress", "Completed"):
        sf_emulator.update("WorkOrder", wo, {"Status": status})
    assert len(bayeux.events()) == 2  # delivery stops at the allocation
    [refused] = bayeux.connect()
    assert refused["successful"] is False
    assert refused["error"] == "403::Organization total events daily limit exceeded"
    assert refused["advice"]["reconnect"] == "none"
    sf_clock.advance(24 * 3600)
    assert [header(e)["changeType"] for e in bayeux.events()] == ["UPDATE"]

"""connector.crm_stream against the emulator's Streaming API over HTTPS on a real socket.

The emulator's clock is injected: retention and the daily allocation are moved, never waited for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from connector import crm_stream
from connector.crm import RetryPolicy, SalesforceGateway, connect_salesforce
from connector.crm_stream import (
    AllocationExhausted,
    ChangeEvent,
    ChangeStream,
    ReplayIdTooOld,
    StreamError,
    StreamUnavailable,
    channel_for,
)
from connector.sandbox.salesforce.emulator import (
    DEMO_FIXTURE,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceEmulator,
)

if TYPE_CHECKING:
    from tests.connector.sf_fixtures import SfClock

pytest_plugins = ["tests.connector.sf_fixtures"]

WO = "/data/WorkOrderChangeEvent"
ACCOUNT = "/data/AccountChangeEvent"
WAIT_S = 0.2  # an empty poll's wait; polls with events answer at once


@pytest.fixture
def sf_emulator(sf_clock: SfClock) -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(DEMO_FIXTURE, clock=sf_clock) as emulator:  # sessions live while the clock moves
        yield emulator


@pytest.fixture
def gateway(sf_emulator: SalesforceEmulator) -> SalesforceGateway:
    return connect_salesforce(
        sf_emulator.base_url,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        security_token=DEMO_SECURITY_TOKEN,
        session=sf_emulator.session(),
        timeout_s=5,
        retry=RetryPolicy(attempts=2, initial_s=0.0, max_s=0.0, sleep=lambda _: None),
    )


@pytest.fixture
def stream(gateway: SalesforceGateway) -> Iterator[ChangeStream]:
    change_stream = ChangeStream(gateway, {WO: None, ACCOUNT: None})
    assert change_stream.poll(0) == []  # subscribed before the test changes anything
    yield change_stream
    change_stream.close()


def work_order(emulator: SalesforceEmulator) -> str:
    return sorted(emulator.record_ids("WorkOrder"))[0]


def test_channel_names() -> None:
    assert channel_for("WorkOrder") == WO
    assert channel_for("Visit__c") == "/data/Visit__ChangeEvent"


def test_events_for_each_kind_of_change(
    stream: ChangeStream, sf_emulator: SalesforceEmulator, gateway: SalesforceGateway, sf_clock: SfClock
) -> None:
    wo = work_order(sf_emulator)
    gateway.update_records("WorkOrder", [{"Id": wo, "Status": "In Progress"}])
    rid = sf_emulator.insert("WorkOrder", {"Subject": "Boiler service"})
    sf_emulator.delete("WorkOrder", rid)
    sf_emulator.undelete("WorkOrder", rid)
    update, create, delete, undelete = stream.poll(WAIT_S)
    integration = sf_emulator.user_id(DEMO_USERNAME)
    assert update == ChangeEvent(
        channel=WO,
        replay_id=1,
        entity="WorkOrder",
        change_type="UPDATE",
        record_ids=(wo,),
        changed_fields=("LastModifiedById", "Status", "LastModifiedDate"),
        commit_timestamp=sf_clock.now.replace(microsecond=sf_clock.now.microsecond // 1000 * 1000),
        commit_user=integration,
    )
    assert [e.change_type for e in (create, delete, undelete)] == ["CREATE", "DELETE", "UNDELETE"]
    assert {e.record_ids for e in (create, delete, undelete)} == {(rid,)}
    assert {e.commit_user for e in (create, delete, undelete)} == {sf_emulator.admin_user_id}
    assert not any(e.gap for e in (update, create, delete, undelete))
    assert stream.replay_ids == {WO: 4, ACCOUNT: None}


def test_events_of_several_channels_in_replay_order(
    stream: ChangeStream, sf_emulator: SalesforceEmulator
) -> None:
    account = sorted(sf_emulator.record_ids("Account"))[0]
    sf_emulator.update("WorkOrder", work_order(sf_emulator), {"Status": "Scheduled"})
    sf_emulator.update("Account", account, {"Name": "Acme Renamed"})
    events = stream.poll(WAIT_S)
    assert [(e.channel, e.entity, e.replay_id) for e in events] == [
        (WO, "WorkOrder", 1),
        (ACCOUNT, "Account", 2),
    ]


def test_an_empty_poll_returns_nothing(stream: ChangeStream) -> None:
    assert stream.poll(WAIT_S) == []


def test_resuming_after_a_replay_id_loses_nothing(
    gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    wo = work_order(sf_emulator)
    first = ChangeStream(gateway, {WO: None})
    first.poll(0)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    assert [e.replay_id for e in first.poll(WAIT_S)] == [1]
    stored = first.replay_ids
    first.close()
    for status in ("In Progress", "Completed"):  # while nobody listens
        sf_emulator.update("WorkOrder", wo, {"Status": status})
    second = ChangeStream(gateway, stored)
    try:
        assert [(e.replay_id, e.change_type) for e in second.poll(WAIT_S)] == [(2, "UPDATE"), (3, "UPDATE")]
    finally:
        second.close()


def test_a_dropped_client_is_handshaken_again_without_losing_events(
    stream: ChangeStream, sf_emulator: SalesforceEmulator
) -> None:
    wo = work_order(sf_emulator)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    assert [e.replay_id for e in stream.poll(WAIT_S)] == [1]
    assert sf_emulator.streaming.drop_clients() == 1
    sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
    assert [e.replay_id for e in stream.poll(WAIT_S)] == [2]
    assert sf_emulator.counts["streaming_handshake"] == 2


def test_an_expired_session_is_renewed_through_the_gateway(
    stream: ChangeStream, sf_emulator: SalesforceEmulator, gateway: SalesforceGateway
) -> None:
    wo = work_order(sf_emulator)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    assert [e.replay_id for e in stream.poll(WAIT_S)] == [1]  # a position to resume after
    logins = sf_emulator.counts["login"]
    sf_emulator.expire_sessions()
    sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
    assert [e.replay_id for e in stream.poll(WAIT_S)] == [2]
    assert sf_emulator.counts["login"] == logins + 1
    assert gateway.count("SELECT COUNT() FROM WorkOrder") == 3  # the gateway uses the new session too


def test_a_replay_id_outside_the_retention_window(
    gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    wo = work_order(sf_emulator)
    for status in ("Scheduled", "Completed"):
        sf_emulator.update("WorkOrder", wo, {"Status": status})
    sf_clock.advance(73 * 3600)
    stream = ChangeStream(gateway, {WO: 1})
    with pytest.raises(ReplayIdTooOld) as caught:
        stream.poll(WAIT_S)
    message = str(caught.value)
    assert "/data/WorkOrderChangeEvent" in message and "replay id 1 " in message
    assert "retention window" in message and "resynchronize WorkOrder by a full poll" in message
    assert gateway.sf.session_id not in message
    assert caught.value.retriable is False


def test_the_daily_allocation_used_up(stream: ChangeStream, sf_emulator: SalesforceEmulator) -> None:
    sf_emulator.streaming.set_allocation(1)
    wo = work_order(sf_emulator)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
    assert [e.replay_id for e in stream.poll(WAIT_S)] == [1]
    with pytest.raises(AllocationExhausted) as caught:
        stream.poll(WAIT_S)
    assert "daily event delivery allocation is used up" in str(caught.value)
    assert "/data/WorkOrderChangeEvent=1" in str(caught.value)
    assert caught.value.retriable is True


def test_gap_events(stream: ChangeStream, sf_emulator: SalesforceEmulator) -> None:
    wo = work_order(sf_emulator)
    sf_emulator.streaming.inject_gaps(1)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})
    sf_emulator.streaming.inject_gaps(1, overflow=True)
    sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
    gap, overflow = stream.poll(WAIT_S)
    assert (gap.change_type, gap.gap, gap.record_ids, gap.changed_fields) == ("GAP_UPDATE", True, (wo,), ())
    assert (overflow.change_type, overflow.gap) == ("GAP_OVERFLOW", True)


def test_an_object_without_cdc_says_how_to_enable_it(gateway: SalesforceGateway) -> None:
    stream = ChangeStream(gateway, {"/data/ContactChangeEvent": None})
    with pytest.raises(StreamUnavailable) as caught:
        stream.poll(WAIT_S)
    message = str(caught.value)
    assert "Change Data Capture is not enabled for Contact" in message
    assert "Setup > Integrations > Change Data Capture" in message
    assert caught.value.retriable is False


def test_a_server_error_is_retriable_and_names_the_step(
    gateway: SalesforceGateway, sf_emulator: SalesforceEmulator
) -> None:
    sf_emulator.faults.set("streaming_handshake", error_rate=1.0, error_status=503)
    stream = ChangeStream(gateway, {WO: None})
    with pytest.raises(StreamUnavailable) as caught:
        stream.poll(WAIT_S)
    assert str(caught.value).startswith("Salesforce change events: handshake answered HTTP 503")
    assert caught.value.retriable is True and caught.value.status == 503
    assert gateway.sf.session_id not in str(caught.value)


def test_a_closed_stream_refuses_to_poll(gateway: SalesforceGateway, sf_emulator: SalesforceEmulator) -> None:
    stream = ChangeStream(gateway, {WO: None})
    stream.poll(0)
    stream.close()
    stream.close()
    assert sf_emulator.counts["streaming_disconnect"] == 1
    with pytest.raises(StreamError, match="the stream is closed"):
        stream.poll(0)


def test_a_long_poll_answer_lost_in_flight_is_replayed(
    stream: ChangeStream, sf_emulator: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crm_stream, "_CONNECT_MARGIN_S", 0.05)
    sf_emulator.update("WorkOrder", work_order(sf_emulator), {"Status": "Scheduled"})
    sf_emulator.faults.set("streaming_connect", latency_s=0.5)  # the server answers after the client gave up
    assert stream.poll(0) == []
    sf_emulator.faults.clear()
    assert [e.replay_id for e in stream.poll(WAIT_S)] == [1]  # delivered once into the void, then replayed
    assert sf_emulator.counts["streaming_handshake"] == 2


def test_a_reconnect_before_the_first_event_neither_loses_nor_replays_older_events(
    gateway: SalesforceGateway, sf_emulator: SalesforceEmulator, sf_clock: SfClock
) -> None:
    wo = work_order(sf_emulator)
    sf_emulator.update("WorkOrder", wo, {"Status": "Scheduled"})  # before the stream: not wanted
    sf_clock.advance(10)
    stream = ChangeStream(gateway, {WO: None})
    try:
        assert stream.poll(0) == []
        sf_emulator.update("WorkOrder", wo, {"Status": "Completed"})
        sf_emulator.streaming.drop_clients()
        assert [e.replay_id for e in stream.poll(WAIT_S)] == [2]
    finally:
        stream.close()

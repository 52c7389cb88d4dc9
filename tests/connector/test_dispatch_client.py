"""DispatchConnectClient against the emulator over real sockets: wire format, retries, errors, parsing."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import requests

from connector.dispatch_connect.client import (
    DispatchConnectClient,
    DispatchRejected,
    DispatchUnavailable,
    MalformedMessage,
    MalformedPage,
    OutboundMessage,
    SignatureRejected,
)
from connector.dispatch_connect.signing import verify
from connector.errors import RemoteRejected, TransientError
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from tests.connector.conftest import DISPATCH_KEY, DISPATCH_SECRET
from tests.connector.dispatch_helpers import ORG, drain, job, puts


def records(*items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"record_type": t, "record": r} for t, r in items]


class Capture(requests.Session):
    """A session that records what the client puts on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        return super().send(request, **kwargs)


@pytest.fixture
def capture(dispatch_emulator: DispatchEmulator) -> tuple[DispatchConnectClient, Capture]:
    session = Capture()
    client = DispatchConnectClient(
        dispatch_emulator.base_url, DISPATCH_KEY, DISPATCH_SECRET, session=session, backoff_s=0.0
    )
    return client, session


def test_send_records_wire_format(capture: tuple[DispatchConnectClient, Capture]) -> None:
    client, session = capture
    client.send_records(records(ORG), message_id="m-1")
    (request,) = session.sent
    body = request.body
    assert isinstance(body, bytes)
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Dispatch-Key"] == DISPATCH_KEY
    assert request.headers["MessageId"] == "m-1"
    assert verify(DISPATCH_SECRET, body, request.headers["X-Dispatch-Signature"])
    assert json.loads(gzip.decompress(body)) == [
        {"header": {"record_type": "organization", "version": "v3"}, "record": ORG[1]}
    ]


def test_send_records_without_gzip(
    dispatch_emulator: DispatchEmulator,
) -> None:
    client = DispatchConnectClient(dispatch_emulator.base_url, DISPATCH_KEY, DISPATCH_SECRET, gzip_body=False)
    client.send_records(records(ORG), message_id="m-plain")
    assert dispatch_emulator.wait_idle(5)
    assert "org-1" in dispatch_emulator.records("organization")


def test_version_override_per_record(capture: tuple[DispatchConnectClient, Capture]) -> None:
    client, session = capture
    item = {"record_type": "billing_item", "record": {"external_id": "b"}, "version": "v2"}
    client.send_records([item], message_id="m")
    assert isinstance(session.sent[0].body, bytes)
    assert json.loads(gzip.decompress(session.sent[0].body))[0]["header"]["version"] == "v2"


def test_poll_and_ack_bodies(
    capture: tuple[DispatchConnectClient, Capture], dispatch_emulator: DispatchEmulator
) -> None:
    client, session = capture
    dispatch_emulator.emit("job", {"id": 1})
    (message,) = client.poll()
    client.ack(message.receipt, message.procedure_id)
    assert json.loads(session.sent[0].body or b"") == {"maxNumberOfMessages": 10}
    assert json.loads(session.sent[1].body or b"") == {
        "Receipt": message.receipt,
        "ProcedureID": message.procedure_id,
        "Result": "success",
    }
    assert session.sent[1].url.endswith("/agent/ack")  # type: ignore[union-attr]


def test_5xx_is_retried_with_same_bytes_and_message_id(
    capture: tuple[DispatchConnectClient, Capture], dispatch_emulator: DispatchEmulator
) -> None:
    client, session = capture
    dispatch_emulator.faults.set("agent/in", error_rate=1.0, error_status=503)
    calls = {"n": 0}
    original = session.send

    def heal(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        calls["n"] += 1
        if calls["n"] == 3:
            dispatch_emulator.faults.clear()
        return original(request, **kwargs)

    session.send = heal  # type: ignore[method-assign]
    client.send_records(records(ORG), message_id="m-retry")
    assert dispatch_emulator.wait_idle(5)
    assert len(session.sent) == 3
    assert len({r.body for r in session.sent}) == 1
    assert {r.headers["MessageId"] for r in session.sent} == {"m-retry"}
    assert dispatch_emulator.counts["agent/in"] == 3
    assert list(dispatch_emulator.records("organization")) == ["org-1"]


def test_429_is_retried(dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient) -> None:
    dispatch_emulator.faults = type(dispatch_emulator.faults)(seed=3)
    dispatch_emulator.faults.set("agent/out", error_rate=0.5, error_status=429)
    dispatch_client.max_attempts = 20
    for _ in range(5):
        assert dispatch_client.poll() == []
    assert dispatch_emulator.counts["agent/out"] > 5


def test_dropped_connection_is_retried(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_emulator.faults = type(dispatch_emulator.faults)(seed=1)
    dispatch_emulator.faults.set("agent/in", drop_rate=0.5)
    dispatch_client.max_attempts = 20
    dispatch_client.send_records(records(ORG), message_id="m-drop")
    assert dispatch_emulator.wait_idle(5)
    assert "org-1" in dispatch_emulator.records("organization")
    assert dispatch_emulator.counts["agent/in"] >= 1


def test_retries_exhausted_is_transient(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_emulator.faults.set("*", error_rate=1.0, error_status=500)
    dispatch_client.max_attempts = 3
    with pytest.raises(DispatchUnavailable) as info:
        dispatch_client.poll()
    assert isinstance(info.value, TransientError)
    assert info.value.retriable
    assert dispatch_emulator.counts["agent/out"] == 3


def test_connection_refused_is_transient() -> None:
    client = DispatchConnectClient(
        "http://127.0.0.1:9", DISPATCH_KEY, DISPATCH_SECRET, max_attempts=2, backoff_s=0
    )
    with pytest.raises(DispatchUnavailable):
        client.send_records(records(ORG), message_id="m")


def test_wrong_secret_is_signature_rejected_without_secret(dispatch_emulator: DispatchEmulator) -> None:
    secret = "ab" * 32
    client = DispatchConnectClient(dispatch_emulator.base_url, DISPATCH_KEY, secret, backoff_s=0)
    with pytest.raises(SignatureRejected) as info:
        client.send_records(records(ORG), message_id="m")
    assert isinstance(info.value, RemoteRejected)
    assert not info.value.retriable
    assert info.value.status == 401
    assert "DISPATCH_SECRET" in str(info.value)
    assert secret not in str(info.value)
    assert dispatch_emulator.counts["agent/in"] == 1


def test_4xx_is_not_retried(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_emulator.faults.set("agent/out", error_rate=1.0, error_status=400)
    with pytest.raises(DispatchRejected):
        dispatch_client.poll()
    assert dispatch_emulator.counts["agent/out"] == 1


def test_client_repr_hides_secret() -> None:
    client = DispatchConnectClient("http://x", DISPATCH_KEY, "cd" * 32)
    assert "cd" * 32 not in repr(client)


ENVELOPE = {
    "Message": {
        "ID": "m1",
        "Receipt": "r1",
        "Extra": "kept",
        "Request": {
            "ProcedureID": "p1",
            "Type": "job",
            "Payload": {"Actions": [{"ID": None, "Put": {"joboffer": {"id": 1}}, "New": 1}]},
        },
    }
}


def test_outbound_message_parse_is_tolerant_of_unknown_keys() -> None:
    message = OutboundMessage.parse(ENVELOPE)
    assert (message.id, message.receipt, message.procedure_id, message.type) == ("m1", "r1", "p1", "job")
    (action,) = message.actions
    assert (action.id, action.put_type, action.data) == ("", "joboffer", {"id": 1})
    assert message.raw["Message"]["Extra"] == "kept"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.pop("Message"), "no 'Message'"),
        (lambda m: m["Message"].pop("Receipt"), "no 'Receipt'"),
        (lambda m: m["Message"]["Request"].pop("ProcedureID"), "no 'ProcedureID'"),
        (lambda m: m["Message"]["Request"]["Payload"].pop("Actions"), "no 'Actions'"),
        (lambda m: m["Message"]["Request"]["Payload"].update(Actions=[{"ID": 1, "Put": {}}]), "Put is empty"),
        (
            lambda m: m["Message"]["Request"]["Payload"].update(Actions=[{"Put": {"job": 3}}]),
            "not a JSON object",
        ),
    ],
)
def test_malformed_envelope_names_the_problem(mutate: Any, expected: str) -> None:
    raw = json.loads(json.dumps(ENVELOPE))
    mutate(raw)
    with pytest.raises(MalformedMessage) as info:
        OutboundMessage.parse(raw)
    assert expected in str(info.value)


def test_malformed_page_keeps_good_messages(
    dispatch_emulator: DispatchEmulator,
    dispatch_client: DispatchConnectClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dispatch_emulator.emit("job", {"id": 1})
    original = dispatch_emulator.queue.receive
    monkeypatch.setattr(dispatch_emulator.queue, "receive", lambda n: [*original(n), {"Message": {}}])
    with pytest.raises(MalformedPage) as info:
        dispatch_client.poll()
    assert len(info.value.messages) == 1
    assert info.value.bad == [{"Message": {}}]


def test_full_round_trip_send_then_drain(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    dispatch_client.send_records(records(ORG, job()), message_id="m-rt")
    assert dispatch_emulator.wait_idle(5)
    assert [p for p, _ in puts(drain(dispatch_client))] == ["ack", "ack"]
    assert dispatch_emulator.queue_depth() == 0

"""Bad signatures over real sockets: 401, nothing stored or deleted, and an actionable, secret-free error."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from sqlmodel import Session, select

from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient, SignatureRejected
from connector.dispatch_connect.signing import sign
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from sync.inbound.poller import drain_pull_channels
from sync.store.models import OutboxBatch, SyncLog
from tests.badinput.conftest import DISPATCH_KEY, DISPATCH_SECRET
from tests.e2e.conftest import PUBLIC_KEY, SECRET, Harness

WRONG_SECRET = "0badc0de" * 8


def _raw(base_url: str, path: str, body: bytes, signature: str) -> requests.Response:
    headers = {
        "Content-Type": "application/json",
        "X-Dispatch-Key": DISPATCH_KEY,
        "X-Dispatch-Signature": signature,
    }
    return requests.post(base_url + path, data=body, headers=headers, timeout=5)


def _forms(secret: str) -> list[str]:
    return [secret, secret.upper(), bytes.fromhex(secret).decode("latin-1"), quote(secret)]


@pytest.mark.parametrize("signature", ["", "0" * 64, sign(WRONG_SECRET, b"{}"), "zz-not-hex"])
def test_ack_with_bad_signature_is_401_and_deletes_nothing(
    dispatch: DispatchEmulator, signature: str
) -> None:
    dispatch.emit("job", {"id": 1, "external_id": "WO-1", "status": "unscheduled"})
    good = DispatchConnectClient(dispatch.base_url, DISPATCH_KEY, DISPATCH_SECRET, backoff_s=0)
    [message] = good.poll(10)
    body = json.dumps({"Receipt": message.receipt, "ProcedureID": message.procedure_id, "Result": "success"})
    response = _raw(dispatch.base_url, "/agent/ack", body.encode(), signature)
    assert response.status_code == 401
    assert dispatch.queue_depth() == 1 and dispatch.counts.get("acks", 0) == 0
    good.ack(message.receipt, message.procedure_id)  # the receipt itself was fine
    assert dispatch.queue_depth() == 0


def test_agent_in_with_signature_of_other_body_is_401_and_stores_nothing(dispatch: DispatchEmulator) -> None:
    body = json.dumps(
        [{"header": {"record_type": "organization"}, "record": {"external_id": "o-1"}}]
    ).encode()
    response = _raw(dispatch.base_url, "/agent/in", body, sign(DISPATCH_SECRET, body + b" "))
    assert response.status_code == 401
    assert dispatch.wait_idle(5)
    assert dispatch.records("organization") == {} and dispatch.queue_depth() == 0


@pytest.mark.parametrize("call", ["poll", "ack"])
def test_client_with_wrong_secret_raises_actionable_signature_rejected(
    dispatch: DispatchEmulator, call: str
) -> None:
    client = DispatchConnectClient(dispatch.base_url, DISPATCH_KEY, WRONG_SECRET, backoff_s=0)
    with pytest.raises(SignatureRejected) as info:
        client.poll(10) if call == "poll" else client.ack("receipt", "proc")
    text = str(info.value)
    assert "DISPATCH_SECRET" in text and info.value.status == 401 and not info.value.retriable
    for secret in (WRONG_SECRET, DISPATCH_SECRET):
        assert not any(form in text or form in repr(info.value) for form in _forms(secret))
    assert dispatch.counts["unauthorized"] == 1  # not retried


def _wrong_client(harness: Harness) -> DispatchConnectClient:
    return DispatchConnectClient(
        harness.dispatch.base_url, PUBLIC_KEY, WRONG_SECRET, backoff_s=0, max_attempts=2
    )


def test_publish_with_wrong_secret_logs_actionable_error_without_secret(harness: Harness) -> None:
    harness.work_order()
    harness.ctx.backends["dispatch_connect"] = from_client(_wrong_client(harness))
    report = harness.publish()
    assert report.send_errors and harness.dispatch.records("job") == {}
    with Session(harness.ctx.engine) as session:
        errors = session.exec(select(SyncLog).where(SyncLog.level == "error")).all()
        batches = session.exec(select(OutboxBatch)).all()
    assert [b.status for b in batches] == ["pending"]  # kept for a resend once the secret is fixed
    assert len(errors) == 1 and "DISPATCH_SECRET" in errors[0].message
    dumped = errors[0].message + json.dumps(errors[0].details) + (batches[0].last_error or "")
    for secret in (WRONG_SECRET, SECRET):
        assert not any(form in dumped for form in _forms(secret))


def test_poll_with_wrong_secret_raises_and_stores_nothing(harness: Harness) -> None:
    harness.dispatch.emit("job", {"id": 1, "external_id": "WO-1", "status": "unscheduled"})
    harness.ctx.backends["dispatch_connect"] = from_client(_wrong_client(harness))
    with pytest.raises(SignatureRejected, match="DISPATCH_SECRET"):
        drain_pull_channels(harness.ctx)
    assert harness.dispatch.queue_depth() == 1

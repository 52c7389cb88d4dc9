"""The pull channel's short path (agent/out, agent/ack through the session's pool, connector.dispatch_connect
.lean_http) against the emulator over real sockets: what a plain `Session.post` gave, it still gives."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from connector.dispatch_connect.client import DispatchConnectClient, DispatchUnavailable, ReceiptRefused
from connector.sandbox.dispatch_connect.app import DispatchApp
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.server import EmulatorServer
from tests.connector.conftest import DISPATCH_KEY, DISPATCH_SECRET


@pytest.fixture
def session_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """URLs that went through `requests.Session.send` (the long path)."""
    sent: list[str] = []
    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append(str(request.url))
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    return sent


def client_for(url: str, **kwargs: Any) -> DispatchConnectClient:
    return DispatchConnectClient(url, DISPATCH_KEY, DISPATCH_SECRET, backoff_s=0.0, **kwargs)


def test_poll_and_ack_skip_the_session_machinery_and_reach_its_hooks(
    dispatch_emulator: DispatchEmulator, session_sends: list[str]
) -> None:
    client = client_for(dispatch_emulator.base_url)
    seen: list[tuple[int, str, str]] = []
    client.session.hooks["response"].append(
        lambda response, *a, **k: seen.append((response.status_code, response.url, response.request.method))
    )
    dispatch_emulator.emit("job", {"id": 1})
    (message,) = client.poll()
    client.ack(message.receipt, message.procedure_id)
    assert session_sends == []
    base = dispatch_emulator.base_url
    assert seen == [(200, f"{base}/agent/out", "POST"), (200, f"{base}/agent/ack", "POST")]
    assert client.poll() == []  # the ack removed it
    assert dispatch_emulator.counts["agent/ack"] == 1


def test_agent_in_still_goes_through_the_session(
    dispatch_emulator: DispatchEmulator, session_sends: list[str]
) -> None:
    client = client_for(dispatch_emulator.base_url)
    client.send_records([{"record_type": "organization", "record": {"external_id": "o"}}], message_id="m")
    assert session_sends == [f"{dispatch_emulator.base_url}/agent/in"]


def test_a_refused_ack_keeps_dispatchs_words(dispatch_emulator: DispatchEmulator) -> None:
    client = client_for(dispatch_emulator.base_url)
    with pytest.raises(ReceiptRefused) as info:
        client.ack("no-such-receipt", "1")
    assert "Dispatch refused the ack (HTTP 4" in str(info.value)
    assert "receipt" in str(info.value).lower()


def test_dropped_acks_are_retried_then_unavailable(dispatch_emulator: DispatchEmulator) -> None:
    client = client_for(dispatch_emulator.base_url, max_attempts=3)
    dispatch_emulator.emit("job", {"id": 1})
    (message,) = client.poll()
    dispatch_emulator.faults.set("agent/ack", drop_rate=1.0)
    with pytest.raises(DispatchUnavailable) as info:
        client.ack(message.receipt, message.procedure_id)
    assert str(info.value) == (
        "Dispatch agent/ack still failing after 3 attempts: ConnectionError talking to agent/ack"
    )
    assert dispatch_emulator.counts["agent/ack"] == 3
    dispatch_emulator.faults.clear()
    client.ack(message.receipt, message.procedure_id)  # the pool's next connection works
    assert client.poll() == []


def test_a_slow_answer_is_a_timeout_and_retried(dispatch_emulator: DispatchEmulator) -> None:
    client = client_for(dispatch_emulator.base_url, max_attempts=2, timeout=0.05)
    dispatch_emulator.faults.set("agent/out", latency_s=0.3)
    with pytest.raises(DispatchUnavailable) as info:
        client.poll()
    assert (
        str(info.value)
        == "Dispatch agent/out still failing after 2 attempts: ReadTimeout talking to agent/out"
    )


def test_refused_connection_is_unavailable() -> None:
    client = client_for("http://127.0.0.1:9", max_attempts=2)
    with pytest.raises(DispatchUnavailable) as info:
        client.poll()
    assert str(info.value).endswith("ConnectionError talking to agent/out")


def test_a_proxy_for_the_url_takes_the_session_path(
    dispatch_emulator: DispatchEmulator, session_sends: list[str]
) -> None:
    client = client_for(dispatch_emulator.base_url, max_attempts=1)
    client.session.proxies = {"http": "http://127.0.0.1:9"}  # nothing listens: the proxy is used, refused
    with pytest.raises(DispatchUnavailable):
        client.poll()
    assert session_sends == [f"{dispatch_emulator.base_url}/agent/out"]
    client.session.proxies = {}  # the settings are read again when they change
    assert client.poll() == []
    assert len(session_sends) == 1


@pytest.fixture
def tls_dispatch(dispatch_emulator: DispatchEmulator, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The emulator's app served over TLS by a CA of the test's; yields (base URL, CA file)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server = EmulatorServer(DispatchApp(dispatch_emulator), ssl_context=context)
    server.start()
    try:
        yield server.base_url, ca_path
    finally:
        server.stop()


def test_tls_verifies_with_the_sessions_ca(
    tls_dispatch: tuple[str, Path], dispatch_emulator: DispatchEmulator, session_sends: list[str]
) -> None:
    url, ca_path = tls_dispatch
    trusting = client_for(url)
    trusting.session.verify = str(ca_path)
    trusting.session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify (requests' rule, kept)
    dispatch_emulator.emit("job", {"id": 1})
    (message,) = trusting.poll()
    trusting.ack(message.receipt, message.procedure_id)
    assert session_sends == []
    untrusting = client_for(url, max_attempts=1)  # the system's CAs: the test's CA is not among them
    with pytest.raises(DispatchUnavailable) as info:
        untrusting.poll()
    assert str(info.value).endswith("SSLError talking to agent/out")


class CountingAdapter(requests.adapters.HTTPAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(str(request.url))
        return super().send(request, *args, **kwargs)


def test_an_adapter_mounted_later_is_used(dispatch_emulator: DispatchEmulator) -> None:
    client = client_for(dispatch_emulator.base_url)
    assert client.poll() == []  # the short path, planned for this URL
    adapter = CountingAdapter()
    client.session.mount("http://", adapter)
    assert client.poll() == []
    assert adapter.sent == [f"{dispatch_emulator.base_url}/agent/out"]

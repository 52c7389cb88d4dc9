"""The emulators' HTTP server keeps connections alive, as Salesforce and Dispatch do, without ever reading
one request's leftovers as the next request."""

from __future__ import annotations

import gzip

import requests

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator

pytest_plugins = ["tests.connector.sf_fixtures"]


def _connections(session: requests.Session, url: str) -> int:
    adapter = session.get_adapter(url)
    return sum(pool.num_connections for pool in adapter.poolmanager.pools._container.values())


def test_one_connection_serves_many_requests(dispatch_emulator: DispatchEmulator) -> None:
    session = requests.Session()
    for _ in range(5):
        response = session.post(f"{dispatch_emulator.base_url}/agent/out", data=b"{}", timeout=5)
        assert response.status_code == 401  # unsigned: refused, with a sized body
        assert response.headers.get("Connection", "").lower() != "close"
    assert _connections(session, dispatch_emulator.base_url) == 1


def test_unread_body_is_not_taken_for_the_next_request(dispatch_emulator: DispatchEmulator) -> None:
    """An injected 503 answers before the app reads the (gzip) body: the body is still consumed."""
    dispatch_emulator.faults.set("agent/in", error_rate=1.0, error_status=503)
    session = requests.Session()
    body = gzip.compress(b'[{"record_type": "job"}]' * 200)
    statuses = [
        session.post(
            f"{dispatch_emulator.base_url}/agent/in",
            data=body,
            headers={"Content-Encoding": "gzip"},
            timeout=5,
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 503, 503]
    assert _connections(session, dispatch_emulator.base_url) == 1


def test_tls_connection_is_reused(sf_emulator: SalesforceEmulator) -> None:
    session = sf_emulator.session()
    for _ in range(3):
        response = session.get(f"{sf_emulator.base_url}/services/data/v59.0/limits", timeout=5)
        assert response.status_code == 401  # no session: refused, connection kept
    assert _connections(session, sf_emulator.base_url) == 1

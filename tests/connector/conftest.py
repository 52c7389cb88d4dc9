"""Fixtures for the connector tests. Dispatch fixtures are named dispatch_*."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.dispatch_connect.client import DispatchConnectClient
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator

DISPATCH_KEY = "account|999|acme"
DISPATCH_SECRET = "0f" * 32


class DispatchFakeClock:
    """A clock the test moves by hand, so visibility timeouts need no sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def dispatch_clock() -> DispatchFakeClock:
    return DispatchFakeClock()


@pytest.fixture
def dispatch_emulator(dispatch_clock: DispatchFakeClock) -> Iterator[DispatchEmulator]:
    with DispatchEmulator(DISPATCH_KEY, DISPATCH_SECRET, clock=dispatch_clock) as emulator:
        yield emulator


@pytest.fixture
def dispatch_client(dispatch_emulator: DispatchEmulator) -> Iterator[DispatchConnectClient]:
    client = DispatchConnectClient(
        dispatch_emulator.base_url, DISPATCH_KEY, DISPATCH_SECRET, timeout=5.0, backoff_s=0.0
    )
    yield client
    client.session.close()

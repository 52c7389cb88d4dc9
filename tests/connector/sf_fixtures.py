"""Pytest fixtures for the Salesforce emulator and gateway tests; load with `pytest_plugins = [...]`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.api import Salesforce

from connector.crm import RetryPolicy, SalesforceGateway, connect_salesforce, login_domain
from connector.sandbox.salesforce.emulator import (
    DEMO_FIXTURE,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    SalesforceEmulator,
)


class SfClock:
    """A clock the test moves by hand, so session TTLs and audit stamps need no sleeping."""

    def __init__(self, start: datetime = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SleepRecorder:
    """Stands in for time.sleep in retry policies: records the backoff instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sf_clock() -> SfClock:
    return SfClock()


@pytest.fixture
def sf_emulator(sf_clock: SfClock) -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(DEMO_FIXTURE, clock=sf_clock, session_ttl_s=7200) as emulator:
        yield emulator


@pytest.fixture
def sf_client(sf_emulator: SalesforceEmulator) -> Salesforce:
    """A plain simple-salesforce client logged in through the SOAP path, as an integrator would build it."""
    return Salesforce(
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        security_token=DEMO_SECURITY_TOKEN,
        domain=login_domain(sf_emulator.base_url),
        session=sf_emulator.session(),
    )


@pytest.fixture
def sf_sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def sf_gateway(sf_emulator: SalesforceEmulator, sf_sleep: SleepRecorder) -> SalesforceGateway:
    return connect_salesforce(
        sf_emulator.base_url,
        username=DEMO_USERNAME,
        password=DEMO_PASSWORD,
        security_token=DEMO_SECURITY_TOKEN,
        session=sf_emulator.session(),
        timeout_s=5,
        retry=RetryPolicy(attempts=4, initial_s=0.01, max_s=0.05, sleep=sf_sleep),
    )

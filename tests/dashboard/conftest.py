"""One store filled by the real engine on both emulators, shared by the dashboard tests (they only read it).

The scenario: a work order whose Subject is a script tag goes through accept, schedule, en route, a hostile
note and completion; a second work order with no usable address is rejected by Dispatch (`err`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from tests.e2e.conftest import (
    FIXTURE,
    PUBLIC_KEY,
    SECRET,
    FakeClock,
    Harness,
    harness,  # noqa: F401  (fixture for the running-daemon browser test)
    make_context,
)
from tests.org import PROVIDER_ACCOUNT

HOSTILE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Scenario:
    engine: Engine
    good: str  # work order that went the whole way
    bad: str  # work order rejected for its address
    provider: str


def _insert_org(sf: SalesforceEmulator) -> tuple[str, str]:
    provider = sf.insert("Account", dict(PROVIDER_ACCOUNT))
    contact = sf.insert("Contact", {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com"})
    return provider, contact


def _play(rig: Harness) -> tuple[str, str]:
    good = rig.work_order(Subject=HOSTILE)
    bad = rig.work_order(State=None, PostalCode=None)
    rig.publish()
    rig.round_trip()
    d = rig.dispatch

    def step(action: Callable[..., Any], *args: Any) -> Any:
        rig.clock.advance(60)
        result = action(*args)
        rig.round_trip()
        return result

    step(d.accept_job, good)
    appointment = step(d.schedule_appointment, good, "2026-12-01T15:00:00Z", "2026-12-01T17:00:00Z")
    step(d.enroute_appointment, appointment)
    step(d.add_note, good, f"Gate code {HOSTILE}")
    step(d.complete_job, good, "All done")
    return good, bad


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("dashboard-store")
    clock = FakeClock()
    with SalesforceEmulator(FIXTURE) as sf, DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as dispatch:
        provider, contact = _insert_org(sf)
        ctx = make_context(tmp, sf, dispatch)
        good, bad = _play(Harness(sf, dispatch, ctx, clock, provider, contact))
    yield Scenario(ctx.engine, good, bad, provider)
    ctx.engine.dispose()

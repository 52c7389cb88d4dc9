"""Both emulators on real sockets, a migrated SQLite store, and a SyncContext wired to them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.crm import connect_salesforce
from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient
from connector.mapping import load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import PublishReport, publish_changes
from sync.settings import load_settings
from sync.store.db import make_engine, upgrade
from sync.writeback.queue import flush_writebacks
from tests.org import PROVIDER_ACCOUNT

FIXTURE = Path(__file__).parents[2] / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
PUBLIC_KEY = "organization|42|acme-facilities"
SECRET = "5ec12e7" + "0" * 57
USERNAME, PASSWORD, TOKEN = "integration@fieldservice.example", "demo-password", "demo-token"


class FakeClock:
    """Drives the Dispatch emulator's visibility timeout without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    sf: SalesforceEmulator
    dispatch: DispatchEmulator
    ctx: SyncContext
    clock: FakeClock
    provider_id: str
    contact_id: str

    def work_order(self, **values: Any) -> str:
        row = {
            "Subject": "Replace breaker",
            "Description": "Trips under load",
            "Status": "New",
            "Street": "1 Main St",
            "City": "Springfield",
            "State": "IL",
            "PostalCode": "62701",
            "ContactId": self.contact_id,
            "Dispatch_Service_Provider__c": self.provider_id,
            "Dispatch_Send__c": "2026-11-25T09:00:00Z",
        }
        row.update(values)
        return self.sf.insert("WorkOrder", row)

    def publish(self, **kwargs: Any) -> PublishReport:
        report = publish_changes(self.ctx, **kwargs)
        self.dispatch.wait_idle(10)
        return report

    def round_trip(self) -> None:
        """Poll agent/out, process, flush the write-back queue."""
        drain_pull_channels(self.ctx)
        process_inbox(self.ctx)
        flush_writebacks(self.ctx.engine, self.ctx.crm)

    def wo(self, record_id: str) -> dict[str, Any]:
        return self.sf.get("WorkOrder", record_id)


def make_context(
    tmp_path: Path, sf: SalesforceEmulator, dispatch: DispatchEmulator, **overrides: Any
) -> SyncContext:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/store.db",
        dispatch_base_url=dispatch.base_url,
        dispatch_public_key=PUBLIC_KEY,
        dispatch_secret=SECRET,
        lookback_s=300,
        max_attempts=3,
        **overrides,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    client = DispatchConnectClient(dispatch.base_url, PUBLIC_KEY, SECRET, backoff_s=0.01, max_attempts=4)
    crm = connect_salesforce(
        sf.base_url, username=USERNAME, password=PASSWORD, security_token=TOKEN, session=sf.session()
    )
    return SyncContext(
        settings=settings,
        engine=engine,
        mapping=load_mapping(),
        backends={"dispatch_connect": from_client(client, acks=settings.value("dispatch_acks"))},
        crm_gateway=crm,
    )


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    clock = FakeClock()
    with SalesforceEmulator(FIXTURE) as sf, DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as dispatch:
        provider = sf.insert("Account", dict(PROVIDER_ACCOUNT))
        contact = sf.insert(
            "Contact",
            {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com", "Phone": "+15550101"},
        )
        ctx = make_context(tmp_path, sf, dispatch)
        yield Harness(sf, dispatch, ctx, clock, provider, contact)
        ctx.engine.dispose()

"""Routing: a mapped object goes to a named back end, or to one chosen by a field's value; a record whose
route changes is canceled on the old back end and created on the new one, and the sync log says so.

Two Dispatch Connect emulators on real sockets stand for two back ends (`dispatch_connect`, `dispatch_eu`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from connector.crm import connect_salesforce
from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient
from connector.mapping import DEFAULT_MAPPING, MappingFileError, load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import publish_changes
from sync.settings import load_settings
from sync.store.db import make_engine, upgrade
from sync.store.models import EntityStateRow, SyncLog, TrackedRecord
from sync.writeback.queue import flush_writebacks
from tests.e2e.conftest import FIXTURE, PASSWORD, PUBLIC_KEY, SECRET, TOKEN, USERNAME, FakeClock
from tests.org import PROVIDER_ACCOUNT

ROUTE = {"field": "Priority", "map": {"High": "dispatch_eu"}, "default": "dispatch_connect"}


def routed_mapping(tmp_path: Path, route: dict[str, Any]) -> Path:
    raw = yaml.safe_load(DEFAULT_MAPPING.read_text())
    raw["objects"]["WorkOrder"]["route"] = route
    path = tmp_path / "routed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Two:
    def __init__(
        self, sf: SalesforceEmulator, us: DispatchEmulator, eu: DispatchEmulator, ctx: SyncContext
    ) -> None:
        self.sf, self.us, self.eu, self.ctx = sf, us, eu, ctx
        self.provider = sf.insert("Account", dict(PROVIDER_ACCOUNT))

    def work_order(self, **values: Any) -> str:
        row = {
            "Subject": "Replace breaker",
            "Status": "New",
            "Priority": "Low",
            "Street": "1 Main St",
            "City": "Springfield",
            "State": "IL",
            "PostalCode": "62701",
            "Dispatch_Service_Provider__c": self.provider,
            "Dispatch_Send__c": "2026-11-25T09:00:00Z",
            **values,
        }
        return self.sf.insert("WorkOrder", row)

    def publish(self) -> Any:
        report = publish_changes(self.ctx)
        self.us.wait_idle(10)
        self.eu.wait_idle(10)
        return report

    def round_trip(self) -> None:
        drain_pull_channels(self.ctx)
        process_inbox(self.ctx)
        flush_writebacks(self.ctx.engine, self.ctx.crm)

    def log(self) -> list[str]:
        with Session(self.ctx.engine) as session:
            return [row.message for row in session.exec(select(SyncLog)).all()]


def _context(
    tmp_path: Path, sf: SalesforceEmulator, us: DispatchEmulator, eu: DispatchEmulator, mapping: Path
) -> SyncContext:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/store.db",
        mapping_file=mapping,
        backends={"dispatch_connect": {}, "dispatch_eu": {"type": "dispatch_connect"}},
        dispatch_public_key=PUBLIC_KEY,
        dispatch_secret=SECRET,
        dispatch_eu_public_key=PUBLIC_KEY,
        dispatch_eu_secret=SECRET,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)

    def client(emulator: DispatchEmulator) -> DispatchConnectClient:
        return DispatchConnectClient(emulator.base_url, PUBLIC_KEY, SECRET, backoff_s=0.01, max_attempts=4)

    ctx = SyncContext(
        settings=settings,
        engine=engine,
        mapping=load_mapping(mapping),
        backends={
            "dispatch_connect": from_client(client(us)),
            "dispatch_eu": from_client(client(eu), system="dispatch_eu"),
        },
        crm_gateway=connect_salesforce(
            sf.base_url, username=USERNAME, password=PASSWORD, security_token=TOKEN, session=sf.session()
        ),
    )
    ctx.check_routes()
    return ctx


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Two]:
    clock = FakeClock()
    with (
        SalesforceEmulator(FIXTURE) as sf,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as us,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as eu,
    ):
        ctx = _context(tmp_path, sf, us, eu, routed_mapping(tmp_path, ROUTE))
        yield Two(sf, us, eu, ctx)
        ctx.engine.dispose()


def test_records_go_where_their_field_routes_them(two: Two) -> None:
    low, high = two.work_order(Priority="Low"), two.work_order(Priority="High")
    two.publish()
    assert low in two.us.records("job") and low not in two.eu.records("job")
    assert high in two.eu.records("job") and high not in two.us.records("job")
    two.round_trip()
    assert two.sf.get("WorkOrder", high)["Dispatch_Last_Synced__c"] is not None  # confirmed by eu's ack
    with Session(two.ctx.engine) as session:
        systems = {t.crm_id: t.system for t in session.exec(select(TrackedRecord)).all()}
    assert systems[low] == "dispatch_connect" and systems[high] == "dispatch_eu"


def test_a_route_change_cancels_on_the_old_back_end_and_creates_on_the_new(two: Two) -> None:
    wo = two.work_order(Priority="Low")
    two.publish()
    two.round_trip()
    two.us.accept_job(wo)
    two.round_trip()

    two.sf.update("WorkOrder", wo, {"Priority": "High"})
    report = two.publish()
    assert report.changed == 1 and report.refused == 0
    assert two.us.records("job")[wo]["status"] == "canceled"
    assert wo in two.eu.records("job")
    moved = (
        f"WorkOrder {wo} moves from dispatch_connect to dispatch_eu: its job is canceled on dispatch_connect"
    )
    assert f"{moved} and created on dispatch_eu" in two.log()

    two.round_trip()
    two.eu.accept_job(wo)
    two.round_trip()
    record = two.sf.get("WorkOrder", wo)
    assert (
        record["Dispatch_Status__c"] == "unscheduled"
    )  # accepted on the new back end; not the old one's cancel
    with Session(two.ctx.engine) as session:
        tracked = session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == wo)).one()
        states = {
            (e.system, e.state)
            for e in session.exec(select(EntityStateRow).where(EntityStateRow.kind == "job"))
        }
    assert tracked.system == "dispatch_eu"
    assert ("dispatch_eu", "unscheduled") in states  # one job row per back end, each its own state
    assert {system for system, _ in states} == {"dispatch_connect", "dispatch_eu"}


def test_a_move_is_refused_when_the_old_job_can_no_longer_be_canceled(two: Two) -> None:
    wo = two.work_order(Priority="Low")
    two.publish()
    two.round_trip()
    two.us.accept_job(wo)
    two.us.complete_job(wo)
    two.round_trip()

    two.sf.update("WorkOrder", wo, {"Priority": "High"})
    report = two.publish()
    assert report.refused == 1 and wo not in two.eu.records("job")
    assert any("cannot move from dispatch_connect to dispatch_eu" in m and "complete" in m for m in two.log())
    two.round_trip()
    assert "cannot move" in two.sf.get("WorkOrder", wo)["Dispatch_Error__c"]


def test_a_value_no_route_names_is_refused_not_sent(tmp_path: Path) -> None:
    clock = FakeClock()
    with (
        SalesforceEmulator(FIXTURE) as sf,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as us,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as eu,
    ):
        mapping = routed_mapping(tmp_path, {"field": "Priority", "map": {"High": "dispatch_eu"}})
        two = Two(sf, us, eu, _context(tmp_path, sf, us, eu, mapping))
        wo = two.work_order(Priority="Low")
        report = two.publish()
        assert report.refused == 1 and not us.records("job") and not eu.records("job")
        assert f"WorkOrder {wo}: its Priority value 'Low' routes to no back end; not sent" in two.log()
        two.ctx.engine.dispose()


def test_routes_to_unconfigured_back_ends_are_named_at_start(tmp_path: Path) -> None:
    mapping = load_mapping(routed_mapping(tmp_path, {"field": "Priority", "map": {"High": "dispatch_asia"}}))
    with pytest.raises(
        MappingFileError, match=r"objects\.WorkOrder\.route\.map\.High: back end 'dispatch_asia'"
    ):
        mapping.check_backends({"dispatch_connect": ("organization", "customer", "job")}, "dispatch_connect")


def test_backend_and_route_together_are_refused_at_load(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_MAPPING.read_text())
    raw["objects"]["WorkOrder"].update(backend="dispatch_connect", route=ROUTE)
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(MappingFileError, match="give either backend or route, not both"):
        load_mapping(path)


def test_a_route_field_must_be_selected(tmp_path: Path) -> None:
    path = routed_mapping(tmp_path, {"field": "Region__c", "map": {"EU": "dispatch_eu"}})
    with pytest.raises(MappingFileError, match="field 'Region__c' is used but not in select"):
        load_mapping(path)

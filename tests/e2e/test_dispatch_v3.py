"""Dispatch v3 as a second back end, end to end over real sockets: Salesforce, Dispatch Connect and Dispatch
v3 emulators, the bundled two-back-end mapping (connector/mappings/salesforce_dispatch_v3.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from connector.crm import connect_salesforce
from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient
from connector.mapping import load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.dispatch_v3 import DispatchV3Emulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import PublishReport, publish_changes
from sync.settings import load_settings
from sync.store.db import make_engine, upgrade
from sync.store.models import OutboxBatch, SyncLog, TrackedRecord
from sync.writeback.queue import flush_writebacks
from tests.e2e.conftest import FIXTURE, PASSWORD, PUBLIC_KEY, SECRET, TOKEN, USERNAME, FakeClock
from tests.org import PROVIDER_ACCOUNT

MAPPING = Path(__file__).parents[2] / "connector" / "mappings" / "salesforce_dispatch_v3.yaml"
CLIENT_ID, CLIENT_SECRET = "connector-app", "v3-s3cret-value"


class World:
    def __init__(
        self, sf: SalesforceEmulator, dc: DispatchEmulator, v3: DispatchV3Emulator, ctx: SyncContext
    ) -> None:
        self.sf, self.dc, self.v3, self.ctx = sf, dc, v3, ctx
        # v3 checks phones (E.164: 10 digits after +1); the shared fixtures' short ones would be refused.
        self.provider = sf.insert("Account", {**PROVIDER_ACCOUNT, "Phone": "+15555550111"})
        self.contact = sf.insert(
            "Contact",
            {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com", "Phone": "+15555550101"},
        )

    def work_order(self, **values: Any) -> str:
        row = {
            "Subject": "Replace breaker",
            "Description": "Trips under load",
            "Status": "New",
            "Street": "1 Main St",
            "City": "Springfield",
            "State": "IL",
            "PostalCode": "62701",
            "ContactId": self.contact,
            "Dispatch_Service_Provider__c": self.provider,
            "Dispatch_Send__c": "2026-11-25T09:00:00Z",
            "Dispatch_Backend__c": "Dispatch v3",
            **values,
        }
        return self.sf.insert("WorkOrder", row)

    def publish(self) -> PublishReport:
        report = publish_changes(self.ctx)
        self.dc.wait_idle(10)
        return report

    def round_trip(self) -> None:
        drain_pull_channels(self.ctx)
        process_inbox(self.ctx)
        flush_writebacks(self.ctx.engine, self.ctx.crm)

    def wo(self, record_id: str) -> dict[str, Any]:
        return self.sf.get("WorkOrder", record_id)

    def log(self, level: str = "error") -> list[str]:
        with Session(self.ctx.engine) as session:
            return [r.message for r in session.exec(select(SyncLog).where(SyncLog.level == level)).all()]

    @property
    def destination(self) -> Any:
        return self.ctx.backend("dispatch_v3").destination


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock()
    with (
        SalesforceEmulator(FIXTURE) as sf,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as dc,
        DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET, clock=clock) as v3,
    ):
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path}/store.db",
            mapping_file=MAPPING,
            backends={"dispatch_connect": {}, "dispatch_v3": {}},
            dispatch_public_key=PUBLIC_KEY,
            dispatch_secret=SECRET,
            dispatch_v3_base_url=v3.base_url,
            dispatch_v3_client_id=CLIENT_ID,
            dispatch_v3_client_secret=CLIENT_SECRET,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        dc_client = DispatchConnectClient(dc.base_url, PUBLIC_KEY, SECRET, backoff_s=0.01, max_attempts=4)
        ctx = SyncContext(
            settings=settings,
            engine=engine,
            mapping=load_mapping(MAPPING),
            backends={"dispatch_connect": from_client(dc_client)},
            crm_gateway=connect_salesforce(
                sf.base_url, username=USERNAME, password=PASSWORD, security_token=TOKEN, session=sf.session()
            ),
        )
        ctx.check_routes()
        ctx.backend("dispatch_v3").client.backoff_s = 0.01
        world = World(sf, dc, v3, ctx)
        world.clock = clock  # type: ignore[attr-defined]
        yield world
        engine.dispose()


def test_a_work_order_goes_to_v3_and_its_job_id_comes_back(world: World) -> None:
    v3_wo, dc_wo = world.work_order(), world.work_order(Dispatch_Backend__c=None)
    report = world.publish()
    assert report.send_errors == [] and report.refused == 0
    job = world.v3.job(v3_wo)
    assert job["title"] == "Replace breaker" and job["status"] == "offered"
    assert dc_wo in world.dc.records("job") and v3_wo not in world.dc.records("job")
    flush_writebacks(world.ctx.engine, world.ctx.crm)
    assert world.wo(v3_wo)["Dispatch_Last_Synced__c"] is not None  # confirmed by the answer itself
    with Session(world.ctx.engine) as session:
        tracked = session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == v3_wo)).one()
    assert (tracked.system, tracked.remote_id) == ("dispatch_v3", str(job["id"]))
    created = world.log("info")
    assert any(
        m.startswith(f"work_order {v3_wo} created: job_id {job['id']}, service_provider_id") for m in created
    )


def test_the_document_carries_contacts_methods_and_provider(world: World) -> None:
    account = world.sf.insert("Account", {"Name": "Acme Facilities", "Phone": "+15555550199"})
    wo = world.work_order(AccountId=account)
    world.publish()
    job = world.v3.job(wo)
    assert job["status"] == "offered"
    document = world.v3.work_orders[-1]
    primary, office = document["contacts"]
    assert primary["primary"] is True and primary["first_name"] == "Jane"
    assert [m["method"] for m in primary["contact_methods"]] == ["email", "phone"]
    assert office == {
        "primary": False,
        "company_name": "Acme Facilities",
        "external_ids": [account],
        "contact_methods": [{"method": "phone", "type": "work", "preferred": True, "value": "+15555550199"}],
    }
    assert document["service_providers"][0]["external_ids"] == [world.provider]
    assert document["external_ids"] == [wo] and document["workflow"] == "service"


def test_field_changes_come_back_through_the_reconciler(world: World) -> None:
    wo = world.work_order()
    world.publish()
    world.round_trip()
    world.clock.advance(60)  # type: ignore[attr-defined]
    world.v3.accept(wo)
    world.round_trip()
    assert world.wo(wo)["Dispatch_Status__c"] == "unscheduled"
    world.clock.advance(60)  # type: ignore[attr-defined]
    world.v3.schedule(wo, start_time="2027-02-01T15:00:00Z", duration_s=7200)
    world.round_trip()
    record = world.wo(wo)
    assert record["Dispatch_Status__c"] == "scheduled"
    assert record["Dispatch_Appointment_Start__c"] == datetime(2027, 2, 1, 15, tzinfo=UTC)
    assert record["Dispatch_Appointment_End__c"] == datetime(2027, 2, 1, 17, tzinfo=UTC)
    world.clock.advance(60)  # type: ignore[attr-defined]
    world.v3.start(wo)
    world.v3.complete(wo)
    world.round_trip()
    record = world.wo(wo)
    assert record["Dispatch_Status__c"] == "complete" and record["Dispatch_Completed_At__c"] is not None


def test_a_quiet_reconcile_costs_two_list_requests(world: World) -> None:
    for _ in range(3):
        world.work_order()
    world.publish()
    world.round_trip()
    before = dict(world.v3.counts)
    world.round_trip()
    calls = {k: v - before.get(k, 0) for k, v in world.v3.counts.items() if v != before.get(k, 0)}
    assert calls == {"jobs.list": 1, "appointments.list": 1}


def test_a_validation_failure_among_valid_records_sends_the_rest(world: World) -> None:
    good, bad, also_good = world.work_order(), world.work_order(PostalCode="1234"), world.work_order()
    report = world.publish()
    assert report.send_errors == []
    assert world.v3.job(good)["id"] and world.v3.job(also_good)["id"]
    with pytest.raises(KeyError):
        world.v3.job(bad)
    flush_writebacks(world.ctx.engine, world.ctx.crm)
    error = world.wo(bad)["Dispatch_Error__c"]
    assert "location.postal_code" in error and "Dispatch v3 rejected work_order" in error
    assert any(bad in message and "postal_code" in message for message in world.log())
    assert world.wo(good)["Dispatch_Error__c"] is None


def test_a_crm_cancel_patches_the_job(world: World) -> None:
    wo = world.work_order()
    world.publish()
    world.round_trip()
    world.sf.update("WorkOrder", wo, {"Dispatch_Send__c": None})
    report = world.publish()
    assert report.refused == 0 and world.v3.job(wo)["status"] == "canceled"


def test_a_token_expiring_mid_cycle_is_renewed_once(world: World) -> None:
    world.work_order()
    world.publish()
    client = world.ctx.backend("dispatch_v3").client
    assert client.token_requests == 1
    world.v3.expire_tokens()  # the cached token dies mid-cycle: one 401, one new token
    for _ in range(3):
        world.work_order()
    report = world.publish()
    assert report.send_errors == [] and client.token_requests == 2


def test_a_429_storm_loses_and_doubles_nothing(world: World) -> None:
    world.v3.set_faults("*", throttle_rate=0.5)
    orders = [world.work_order(Subject=f"Call {i}") for i in range(12)]
    for _ in range(5):  # a cycle that gives up is sent again with the same MessageId
        world.publish()
        if all(_has_job(world, wo) for wo in orders):
            break
    world.v3.set_faults(clear=True)
    assert all(_has_job(world, wo) for wo in orders)
    assert len(world.v3.jobs()) == len(orders)  # the lookup before create: no job twice


def test_a_resent_batch_finds_the_jobs_it_created(world: World) -> None:
    world.work_order()
    world.publish()
    world.destination.known_jobs.clear()  # a restart: nothing cached
    with Session(world.ctx.engine) as session:
        batch = session.exec(select(OutboxBatch).where(OutboxBatch.system == "dispatch_v3")).one()
    results = world.destination.send(batch.payload, message_id=batch.message_id)
    assert [r.ok for r in results] == [True] and len(world.v3.jobs()) == 1


def _has_job(world: World, wo: str) -> bool:
    try:
        return bool(world.v3.job(wo))
    except KeyError:
        return False

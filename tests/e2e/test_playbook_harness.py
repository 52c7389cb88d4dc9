"""The playbook org (connector/sandbox/fixtures/playbook_org.yaml) and the playbook examples mapping
(connector/mappings/playbook_examples.yaml) on real sockets, for tests/e2e/test_playbook_*.py.

The Dispatch emulator runs under an enterprise key (the DNM set-up: an enterprise sends jobs for its
providers), so a record that names no organization is refused as Dispatch would, instead of belonging to
the key's own organization. `held` reads what the emulator stored; `wire` rebuilds the envelope the back
end sent for a record type (header and top-level attachment), from the outbox batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from connector.crm import connect_salesforce
from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.canonical import envelope
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
from sync.store.models import OutboxBatch, SyncLog
from sync.writeback.queue import flush_writebacks
from tests.e2e.conftest import PASSWORD, SECRET, TOKEN, USERNAME, FakeClock

ROOT = Path(__file__).parents[2]
PLAYBOOK_ORG = ROOT / "connector" / "sandbox" / "fixtures" / "playbook_org.yaml"
PLAYBOOK_MAPPING = ROOT / "connector" / "mappings" / "playbook_examples.yaml"
ENTERPRISE_KEY = "enterprise|7|acme-home-services"
SENT = "2026-11-25T09:00:00Z"
# Keys Dispatch adds to a stored record: its own ids and the references it resolved (a job's id for a
# record naming the job, the user a service area's external id names). Anything else held must have been sent.
RESOLVED_KEYS = frozenset({"id", "organization_id", "job_id", "external_job_id", "external_user_id"})


@dataclass
class Playbook:
    sf: SalesforceEmulator
    dispatch: DispatchEmulator
    ctx: SyncContext

    def find(self, object_name: str, **values: Any) -> str:
        """The id of the one row of `object_name` with these field values (the fixture's rows have no
        fixed ids)."""
        found = [
            rid
            for rid in self.sf.record_ids(object_name)
            if all(self.sf.get(object_name, rid).get(k) == v for k, v in values.items())
        ]
        assert len(found) == 1, f"{object_name} {values}: {len(found)} rows"
        return found[0]

    def user_of(self, resource_name: str) -> str:
        """A technician's external id: the User of its ServiceResource."""
        return str(
            self.sf.get("ServiceResource", self.find("ServiceResource", Name=resource_name))[
                "RelatedRecordId"
            ]
        )

    def publish(self) -> PublishReport:
        report = publish_changes(self.ctx)
        assert self.dispatch.wait_idle(10), "the Dispatch emulator did not apply every request"
        return report

    def round_trip(self) -> None:
        """Poll agent/out (acks and errs), process, flush the CRM write-back queue."""
        drain_pull_channels(self.ctx)
        process_inbox(self.ctx)
        flush_writebacks(self.ctx.engine, self.ctx.crm)

    def held(self, record_type: str, key: str, *, sent: tuple[str, ...] = ()) -> dict[str, Any]:
        """The record Dispatch holds under `key`, without the ids and references Dispatch resolved
        (RESOLVED_KEYS) except those named in `sent`: the ones this record sent itself."""
        table = self.dispatch.records(record_type)
        assert key in table, f"no {record_type} {key!r} in Dispatch; it holds {sorted(table)}"
        return _without_resolved(table[key], sent)

    def held_where(
        self, record_type: str, test: Callable[[dict[str, Any]], bool], *, sent: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The one record of a type sent without an external id that passes `test` (as `held`)."""
        found = [r for r in self.dispatch.records(record_type).values() if test(r)]
        assert len(found) == 1, f"{len(found)} {record_type} records match"
        return _without_resolved(found[0], sent)

    def wire(self, record_type: str) -> list[dict[str, Any]]:
        """Every envelope of this type sent to agent/in, oldest first, as the back end built it."""
        with Session(self.ctx.engine) as session:
            batches = session.exec(select(OutboxBatch).order_by(OutboxBatch.created_at)).all()
            return [
                envelope(item) for b in batches for item in b.payload if item["record_type"] == record_type
            ]

    def errors_logged(self, crm_id: str) -> list[str]:
        with Session(self.ctx.engine) as session:
            rows = session.exec(select(SyncLog).where(SyncLog.crm_record_id == crm_id)).all()
            return [row.message for row in rows if row.level == "error"]


def header(pb: Playbook, record_type: str, **extra: Any) -> None:
    """Every envelope of the type went with the playbook sample's header."""
    sent = pb.wire(record_type)
    assert sent, f"no {record_type} was sent"
    assert all(item["header"] == {"record_type": record_type, **extra} for item in sent), sent


def ids(pb: Playbook) -> dict[str, str]:
    return {
        "spark": pb.find("Account", Name="Spark Electric"),
        "jane": pb.find("Contact", LastName="Doe"),
        "wo": pb.find("WorkOrder", WorkOrderNumber="00001001"),
    }


def _without_resolved(record: dict[str, Any], sent: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in RESOLVED_KEYS or k in sent}


def playbook_context(tmp: Path, sf: SalesforceEmulator, dispatch: DispatchEmulator) -> SyncContext:
    settings = load_settings(
        database_url=f"sqlite:///{tmp}/store.db",
        dispatch_base_url=dispatch.base_url,
        dispatch_public_key=ENTERPRISE_KEY,
        dispatch_secret=SECRET,
        lookback_s=300,
        max_attempts=3,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    client = DispatchConnectClient(dispatch.base_url, ENTERPRISE_KEY, SECRET, backoff_s=0.01, max_attempts=4)
    crm = connect_salesforce(
        sf.base_url, username=USERNAME, password=PASSWORD, security_token=TOKEN, session=sf.session()
    )
    return SyncContext(
        settings=settings,
        engine=engine,
        mapping=load_mapping(PLAYBOOK_MAPPING),
        backends={"dispatch_connect": from_client(client, acks=settings.value("dispatch_acks"))},
        crm_gateway=crm,
    )


def _running(tmp: Path) -> Iterator[Playbook]:
    with (
        SalesforceEmulator(PLAYBOOK_ORG) as sf,
        DispatchEmulator(ENTERPRISE_KEY, SECRET, clock=FakeClock()) as dispatch,
    ):
        ctx = playbook_context(tmp, sf, dispatch)
        yield Playbook(sf, dispatch, ctx)
        ctx.engine.dispose()


@pytest.fixture
def playbook(tmp_path: Path) -> Iterator[Playbook]:
    """The playbook org, nothing published yet (tests that change rows)."""
    yield from _running(tmp_path)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Playbook]:
    """The playbook org published once, its acks and errs processed (tests that only read)."""
    for pb in _running(tmp_path_factory.mktemp("playbook")):
        pb.publish()
        pb.round_trip()
        yield pb

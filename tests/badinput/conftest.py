"""Fixtures for the bad-input suites: a migrated SQLite template copied per example, and the e2e Harness."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine

from connector.dispatch_connect.signing import sign
from connector.mapping import MappingConfig, load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from sync.context import SyncContext
from sync.settings import load_settings
from sync.store.db import make_engine, session_scope, upgrade
from sync.store.dbtypes import utcnow
from sync.store.models import OutboxBatch, OutboxItem, TrackedRecord
from tests.e2e.conftest import harness  # noqa: F401

MAX_ATTEMPTS = 2
#: Seeded so fuzzed events can hit a real CRM link (job WO-1 -> WorkOrder) and a real published batch.
LINKED_JOB, LINKED_CRM_ID, BATCH_ID = "WO-1", "0WO000000000001AAA", "batch-1"


def _seed(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(
            TrackedRecord(
                system="dispatch_connect",
                crm_object="WorkOrder",
                crm_id=LINKED_CRM_ID,
                external_id=LINKED_JOB,
                last_message_id=BATCH_ID,
                published_at=utcnow(),
            )
        )
        session.add(
            OutboxBatch(
                message_id=BATCH_ID, system="dispatch_connect", status="sent", record_count=1, payload=[]
            )
        )
        session.add(
            OutboxItem(
                message_id=BATCH_ID,
                record_type="job",
                external_id=LINKED_JOB,
                crm_object="WorkOrder",
                crm_id=LINKED_CRM_ID,
            )
        )


@dataclass
class StoreFactory:
    """Hands out a fresh copy of one migrated, seeded SQLite file: migrating per example would be too slow."""

    template: Path
    workdir: Path
    mapping: MappingConfig

    def context(self) -> SyncContext:
        path = self.workdir / f"{uuid.uuid4().hex}.db"
        shutil.copyfile(self.template, path)
        url = f"sqlite:///{path}"
        settings = load_settings(database_url=url, max_attempts=MAX_ATTEMPTS)
        return SyncContext(settings=settings, engine=make_engine(url), mapping=self.mapping)


@pytest.fixture(scope="session")
def store_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreFactory]:
    workdir = tmp_path_factory.mktemp("badinput-stores")
    template = workdir / "template.db"
    engine = make_engine(f"sqlite:///{template}")
    upgrade(engine)
    _seed(engine)
    engine.dispose()
    for suffix in ("-wal", "-shm"):  # checkpointed on dispose; a copy must not carry stale side files
        assert not Path(f"{template}{suffix}").exists() or Path(f"{template}{suffix}").stat().st_size == 0
    yield StoreFactory(template, workdir, load_mapping())


DISPATCH_KEY, DISPATCH_SECRET = "organization|7|badinput", "b4d1" * 16


@pytest.fixture
def dispatch() -> Iterator[DispatchEmulator]:
    """A bare Dispatch emulator on a real socket (no Salesforce: cheaper than the Harness)."""
    with DispatchEmulator(DISPATCH_KEY, DISPATCH_SECRET) as emulator:
        yield emulator


def post_signed(
    base_url: str,
    path: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    secret: str = DISPATCH_SECRET,
) -> requests.Response:
    headers = {
        "Content-Type": content_type,
        "X-Dispatch-Key": DISPATCH_KEY,
        "X-Dispatch-Signature": sign(secret, body),
        "MessageId": "csv-msg-1",
    }
    return requests.post(base_url + path, data=body, headers=headers, timeout=10)

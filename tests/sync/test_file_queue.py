"""The file queue on SQLite and PostgreSQL, with a back end and a CRM that record what they are asked: a file
is queued once per (system, token, record), a claimed row is nobody else's, and the ContentVersion id is set
once. The real sockets are in tests/e2e/test_field_files.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from connector.errors import FileUnavailable
from connector.mapping import load_mapping
from connector.mapping_writes import FilesSpec
from connector.ports import FetchedFile
from sync.context import SyncContext
from sync.inbound.event_context import EventContext
from sync.settings import load_settings
from sync.store.db import make_engine, upgrade
from sync.store.dbtypes import utcnow
from sync.store.models import FileFetch
from sync.writeback import files
from sync.writeback.files import enqueue_note_file, flush_file_fetches

WO = "0WO000000000001AAA"


@dataclass
class Files:
    missing: set[str] = field(default_factory=set)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def fetch_file(self, token: str, file_format: str = "original", *, max_bytes: int) -> FetchedFile:
        self.asked.append((token, file_format))
        if token in self.missing:
            raise FileUnavailable(f"file {token}: the token is unknown", token=token, reason="not_found")
        return FetchedFile(b"bytes of " + token.encode(), "image/jpeg")

    def billing_pdfs(self, job_remote_id: str, *, max_bytes: int) -> Mapping[str, FetchedFile]:
        return {}


@dataclass
class Backend:
    files: Files = field(default_factory=Files)
    system: str = "dispatch_connect"


@dataclass
class Crm:
    created: list[dict[str, Any]] = field(default_factory=list)

    def create(self, object_name: str, record: Mapping[str, Any]) -> str:
        self.created.append(dict(record))
        return f"068{len(self.created):015d}"

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def ctx(engine: Engine, db_url: str) -> SyncContext:
    settings = load_settings(
        database_url=db_url, dispatch_public_key="organization|1|x", dispatch_secret="ab" * 32
    )
    context = SyncContext(settings=settings, engine=engine, mapping=load_mapping(), crm_gateway=Crm())
    context.backends["dispatch_connect"] = Backend()  # type: ignore[assignment]
    return context


def queue(ctx: SyncContext, **values: Any) -> None:
    spec = ctx.mapping.objects["WorkOrder"]
    wb = spec.write_back.model_copy(update={"files": FilesSpec()})
    link = ("WorkOrder", WO, spec.model_copy(update={"write_back": wb}))
    with Session(ctx.engine) as session:
        event_ctx = EventContext(session, ctx.mapping, "msg-1", "dispatch_connect", "Dispatch")
        enqueue_note_file(event_ctx, link, {"file_token": "tok-1", "name": "photo", **values})
        session.commit()


def rows(ctx: SyncContext) -> list[FileFetch]:
    with Session(ctx.engine) as session:
        return list(session.exec(select(FileFetch)).all())


def test_a_token_is_queued_once_per_record(ctx: SyncContext) -> None:
    queue(ctx)
    queue(ctx)
    [row] = rows(ctx)
    assert (row.token, row.crm_id, row.format, row.title, row.status) == (
        "tok-1",
        WO,
        "original",
        "photo",
        "pending",
    )


def test_a_deleted_note_or_one_without_a_token_queues_nothing(ctx: SyncContext) -> None:
    queue(ctx, deleted=True)
    queue(ctx, file_token=None)
    queue(ctx, file_token="  ")
    assert rows(ctx) == []


def test_flush_stores_the_file_and_sets_its_id_once(ctx: SyncContext) -> None:
    queue(ctx)
    assert flush_file_fetches(ctx).stored == 1
    assert flush_file_fetches(ctx, now=utcnow().replace(year=2100)).stored == 0
    [created] = ctx.crm.created
    assert created["PathOnClient"] == "photo.jpg" and created["FirstPublishLocationId"] == WO
    assert created["Description"] == "Dispatch file tok-1"
    [row] = rows(ctx)
    assert (row.status, row.content_version_id, row.attempts) == ("done", "068000000000000001", 1)


def test_a_claimed_row_is_nobody_elses(ctx: SyncContext) -> None:
    queue(ctx)
    [row] = rows(ctx)
    now = utcnow()
    assert files._claim(ctx, row.id, 0, now) is not None
    assert files._claim(ctx, row.id, 0, now) is None  # a second worker saw attempts 0 too: it loses


def test_a_failure_keeps_the_row_pending_with_its_error(ctx: SyncContext) -> None:
    ctx.backends["dispatch_connect"].files.missing.add("tok-1")  # type: ignore[attr-defined]
    queue(ctx)
    report = flush_file_fetches(ctx)
    [row] = rows(ctx)
    assert (report.failed, row.status, row.attempts) == (1, "pending", 1)
    assert row.last_error == "file tok-1: the token is unknown" and ctx.crm.created == []

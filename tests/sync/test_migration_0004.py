"""Migration 0004, a store that knows systems: up and down with rows in every table it touches, on SQLite and
PostgreSQL; the refused downgrade; and a store written by the code before it (tests/data/store-0003.db)
upgraded in place.

Rows go in through raw SQL at revision 0003 (the models describe 0004 and cannot write a 0003 table)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, Engine, bindparam, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from sync.dashboard.app import create_dashboard_app
from sync.dashboard.timeline import record_timeline
from sync.errors import SyncError
from sync.service.admin import record_status
from sync.store.db import check_schema, current_revision, downgrade, head_revision, make_engine, upgrade
from sync.store.dbtypes import UTCDateTime
from sync.store.models import (
    EntityStateRow,
    InboxMessage,
    OutboxBatch,
    OutboxItem,
    SyncLog,
    TrackedRecord,
    Watermark,
    WriteBack,
)

DC = "dispatch_connect"
STORE_0003 = Path(__file__).parents[1] / "data" / "store-0003.db"
AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WO1, WO2 = "0WO000000000001AAA", "0WO000000000002AAA"
JSON_COLUMNS = {"snapshot", "payload", "milestones", "attributes"}
TIME_COLUMNS = {
    "published_at",
    "confirmed_at",
    "created_at",
    "sent_at",
    "received_at",
    "acked_at",
    "updated_at",
}

# What a 0003 store holds, per table, in natural-key order.
SEED: dict[str, list[dict[str, Any]]] = {
    "tracked_record": [
        {
            "crm_object": "WorkOrder",
            "crm_id": WO1,
            "external_id": WO1,
            "dispatch_id": "10001",
            "fields_hash": "h1",
            "snapshot": {"Subject": "Replace breaker", "City": "Springfield"},
            "flagged": True,
            "last_message_id": "batch-1",
            "published_at": AT,
            "confirmed_at": AT + timedelta(minutes=1),
            "last_error": None,
        },
        {
            "crm_object": "WorkOrder",
            "crm_id": WO2,
            "external_id": WO2,
            "dispatch_id": None,
            "fields_hash": "h2",
            "snapshot": {"Subject": "No usable address"},
            "flagged": True,
            "last_message_id": "batch-1",
            "published_at": AT,
            "confirmed_at": None,
            "last_error": "address is not usable",
        },
    ],
    "outbox_batch": [
        {
            "message_id": "batch-1",
            "status": "confirmed",
            "attempts": 1,
            "record_count": 2,
            "payload": [{"record_type": "job", "record": {"external_id": WO1, "title": "Replace breaker"}}],
            "created_at": AT,
            "sent_at": AT + timedelta(seconds=5),
            "confirmed_at": AT + timedelta(minutes=1),
        },
        {
            "message_id": "batch-2",
            "status": "pending",
            "attempts": 0,
            "record_count": 1,
            "payload": [{"record_type": "job", "record": {"external_id": WO2}}],
            "created_at": AT + timedelta(minutes=2),
            "sent_at": None,
            "confirmed_at": None,
        },
    ],
    "inbox_message": [
        {
            "message_id": "m-1",
            "procedure_id": "p-1",
            "receipt": "receipt-1",
            "type": "job",
            "entity_key": f"job:{WO1}",
            "payload": {"Message": {"ID": "m-1", "Request": {"Type": "job"}}},
            "status": "processed",
            "attempts": 0,
            "deliveries": 1,
            "received_at": AT + timedelta(minutes=3),
        },
        {
            "message_id": "m-2",
            "procedure_id": "p-2",
            "receipt": "receipt-2",
            "type": "appointment",
            "entity_key": f"appointment:{WO1}",
            "payload": {"Message": {"ID": "m-2", "Request": {"Type": "appointment"}}},
            "status": "new",
            "attempts": 2,
            "deliveries": 3,
            "received_at": AT + timedelta(minutes=4),
        },
    ],
    "entity_state": [
        {
            "kind": "appointment",
            "external_id": WO1,
            "dispatch_id": "20001",
            "crm_object": "WorkOrder",
            "crm_id": WO1,
            "state": "scheduled",
            "milestones": {"scheduled": "2026-11-25T12:04:00+00:00"},
            "updated_at": AT + timedelta(minutes=4),
        },
        {
            "kind": "job",
            "external_id": WO1,
            "dispatch_id": "10001",
            "crm_object": "WorkOrder",
            "crm_id": WO1,
            "state": "unscheduled",
            "milestones": {"accepted": "2026-11-25T12:03:00+00:00"},
            "updated_at": AT + timedelta(minutes=3),
        },
    ],
}
ORDER = {
    "tracked_record": "crm_object, crm_id",
    "outbox_batch": "message_id",
    "inbox_message": "message_id",
    "entity_state": "kind, external_id",
}
SETTLE_HANDLES = ("procedure_id", "receipt")


def _typed(name: str) -> Any:
    if name in JSON_COLUMNS:
        return JSON()
    return UTCDateTime() if name in TIME_COLUMNS else None


def insert(engine: Engine, table: str, row: dict[str, Any]) -> None:
    names = list(row)
    statement = text(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
    ).bindparams(*[bindparam(n, type_=_typed(n)) for n in names if _typed(n) is not None])
    with engine.begin() as connection:
        connection.execute(statement, row)


def read(engine: Engine, table: str, columns: list[str]) -> list[dict[str, Any]]:
    types = {n: _typed(n) for n in columns if _typed(n) is not None}
    statement = text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {ORDER[table]}").columns(**types)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(statement)]


def at_0004(row: dict[str, Any]) -> dict[str, Any]:
    """A seeded 0003 row as 0004 must hold it."""
    moved = {("remote_id" if k == "dispatch_id" else k): v for k, v in row.items() if k not in SETTLE_HANDLES}
    return {**moved, "system": DC}


def seeded_0003(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine, "0003")
    for table, rows in SEED.items():
        for row in rows:
            insert(engine, table, row)
    return engine


def column_names(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    """A 0003 store with rows in every table 0004 touches."""
    engine = seeded_0003(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def upgraded(store: Engine) -> Engine:
    upgrade(store, "0004")
    return store


# --- up and down with data ----------------------------------------------------------------------------------
@pytest.mark.parametrize("table", list(SEED))
def test_upgrade_keeps_every_row_under_dispatch_connect(upgraded: Engine, table: str) -> None:
    expected = [at_0004(row) for row in SEED[table]]
    assert read(upgraded, table, list(expected[0])) == expected


def test_upgrade_moves_dispatch_ids_to_wider_remote_ids(upgraded: Engine) -> None:
    for table in ("tracked_record", "entity_state"):
        columns = {c["name"]: c for c in inspect(upgraded).get_columns(table)}
        assert "dispatch_id" not in columns
        assert getattr(columns["remote_id"]["type"], "length", None) == 255


def test_upgrade_drops_the_settle_handles(upgraded: Engine) -> None:
    assert not set(SETTLE_HANDLES) & column_names(upgraded, "inbox_message")


def test_upgrade_indexes_systems(upgraded: Engine) -> None:
    inspector = inspect(upgraded)
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("entity_state")}
    assert indexes.get("ix_entity_remote") == ["system", "kind", "remote_id"]
    assert "ix_entity_dispatch" not in indexes
    uniques = {u["name"]: u["column_names"] for u in inspector.get_unique_constraints("entity_state")}
    assert uniques == {"uq_entity_state_system": ["system", "kind", "external_id"]}
    batch_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("outbox_batch")}
    assert batch_indexes.get("ix_outbox_batch_system") == ["system", "status"]


@pytest.mark.parametrize("table", list(SEED))
def test_system_has_no_default_left_in_the_database(upgraded: Engine, table: str) -> None:
    row = {k: v for k, v in at_0004(SEED[table][0]).items() if k != "system"}
    for key in ("crm_id", "message_id", "external_id"):  # a fresh natural key
        if key in row:
            row[key] = "X-new"
    with pytest.raises(IntegrityError, match="system"):
        insert(upgraded, table, row)


def test_a_model_written_without_system_is_refused(upgraded: Engine) -> None:
    with pytest.raises(IntegrityError, match="system"), Session(upgraded) as session:
        session.add(TrackedRecord(crm_object="WorkOrder", crm_id="0WO000000000009AAA"))
        session.commit()


def test_same_entity_key_may_exist_once_per_system(upgraded: Engine) -> None:
    other = {**at_0004(SEED["entity_state"][0]), "system": "other_backend", "remote_id": "x" * 200}
    insert(upgraded, "entity_state", other)
    with pytest.raises(IntegrityError):
        insert(upgraded, "entity_state", {**other, "remote_id": "another"})


def test_downgrade_with_data_brings_0003_back(upgraded: Engine) -> None:
    downgrade(upgraded, "0003")
    assert current_revision(upgraded) == "0003"
    for table, rows in SEED.items():
        assert "system" not in column_names(upgraded, table)
        handles = dict.fromkeys(SETTLE_HANDLES) if table == "inbox_message" else {}
        expected = [{**row, **handles} for row in rows]  # the settle handles come back empty
        assert read(upgraded, table, list(expected[0])) == expected


def test_downgrade_restores_0003_keys_and_indexes(upgraded: Engine) -> None:
    downgrade(upgraded, "0003")
    inspector = inspect(upgraded)
    uniques = {u["name"]: u["column_names"] for u in inspector.get_unique_constraints("entity_state")}
    assert uniques == {"uq_entity_state_kind": ["kind", "external_id"]}
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("entity_state")}
    assert indexes.get("ix_entity_dispatch") == ["dispatch_id"]
    assert "ix_outbox_batch_system" not in {i["name"] for i in inspector.get_indexes("outbox_batch")}


def test_upgrade_after_downgrade_keeps_the_rows(upgraded: Engine) -> None:
    downgrade(upgraded, "0003")
    upgrade(upgraded, "0004")
    for table, rows in SEED.items():
        expected = [at_0004(row) for row in rows]
        assert read(upgraded, table, list(expected[0])) == expected


# --- the refused downgrade ----------------------------------------------------------------------------------
def _with_other_systems_rows(engine: Engine) -> None:
    colliding = {**at_0004(SEED["entity_state"][1]), "system": "other_backend", "remote_id": "job-77"}
    insert(engine, "entity_state", colliding)
    batch = {**at_0004(SEED["outbox_batch"][1]), "message_id": "batch-other", "system": "other_backend"}
    insert(engine, "outbox_batch", batch)


def test_downgrade_refuses_rows_of_other_systems_and_changes_nothing(upgraded: Engine) -> None:
    _with_other_systems_rows(upgraded)
    with pytest.raises(SyncError, match=r"1 row\(s\) of other systems.*in outbox_batch.*in entity_state"):
        downgrade(upgraded, "0003")
    assert current_revision(upgraded) == "0004"
    assert len(read(upgraded, "entity_state", ["system"])) == 3
    assert "remote_id" in column_names(upgraded, "entity_state")


def test_downgrade_goes_through_once_those_rows_are_deleted(upgraded: Engine) -> None:
    _with_other_systems_rows(upgraded)
    with upgraded.begin() as connection:
        for table in ("outbox_batch", "entity_state"):
            connection.execute(text(f"DELETE FROM {table} WHERE system <> 'dispatch_connect'"))
    downgrade(upgraded, "0003")
    assert read(upgraded, "entity_state", ["dispatch_id"]) == [
        {"dispatch_id": "20001"},
        {"dispatch_id": "10001"},
    ]


def test_downgrade_refuses_remote_ids_too_long_for_0003(upgraded: Engine) -> None:
    with upgraded.begin() as connection:
        connection.execute(text(f"UPDATE tracked_record SET remote_id = '{'9' * 65}' WHERE crm_id = '{WO1}'"))
    with pytest.raises(SyncError, match=r"1 remote_id\(s\) longer than 64 characters in tracked_record"):
        downgrade(upgraded, "0003")
    assert current_revision(upgraded) == "0004"


# --- a store written by the code before 0004 ----------------------------------------------------------------
def _sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def _counts(path: Path) -> dict[str, int]:
    tables = [r[0] for r in _sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: _sqlite_rows(path, f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    shutil.copyfile(STORE_0003, path)
    assert _sqlite_rows(path, "SELECT version_num FROM alembic_version") == [("0003",)]
    return path


@pytest.fixture
def old_store_upgraded(old_store: Path) -> Iterator[tuple[Path, Engine]]:
    engine = make_engine(f"sqlite:///{old_store}")
    upgrade(engine)
    yield old_store, engine
    engine.dispose()


def test_store_0003_upgrades_in_place_keeping_every_row(old_store: Path) -> None:
    before = _counts(old_store)
    assert before["tracked_record"] and before["inbox_message"] and before["entity_state"]
    engine = make_engine(f"sqlite:///{old_store}")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    check_schema(engine)
    engine.dispose()
    after = _counts(old_store)
    assert {table: after[table] for table in before} == before
    assert all(after[table] == 0 for table in set(after) - set(before))  # tables of later revisions: empty


def test_store_0003_rows_all_belong_to_dispatch_connect(old_store_upgraded: tuple[Path, Engine]) -> None:
    path, _ = old_store_upgraded
    for table in SEED:
        assert _sqlite_rows(path, f"SELECT DISTINCT system FROM {table}") == [(DC,)]


def test_store_0003_keeps_external_and_remote_ids(old_store: Path) -> None:
    tracked = "SELECT crm_object, crm_id, external_id, {} FROM tracked_record ORDER BY id"
    entities = "SELECT kind, external_id, {}, crm_id, state FROM entity_state ORDER BY id"
    before = (
        _sqlite_rows(old_store, tracked.format("dispatch_id")),
        _sqlite_rows(old_store, entities.format("dispatch_id")),
    )
    assert any(row[3] for row in before[0]), "the fixture should hold confirmed records"
    engine = make_engine(f"sqlite:///{old_store}")
    upgrade(engine)
    engine.dispose()
    after = (
        _sqlite_rows(old_store, tracked.format("remote_id")),
        _sqlite_rows(old_store, entities.format("remote_id")),
    )
    assert after == before


def test_store_0003_keeps_inbox_payloads_and_statuses(old_store: Path) -> None:
    query = "SELECT message_id, type, entity_key, payload, status, attempts, deliveries FROM inbox_message"
    before = sorted(_sqlite_rows(old_store, query))
    engine = make_engine(f"sqlite:///{old_store}")
    upgrade(engine)
    engine.dispose()
    assert sorted(_sqlite_rows(old_store, query)) == before


def test_store_0003_reads_through_every_model(old_store_upgraded: tuple[Path, Engine]) -> None:
    path, engine = old_store_upgraded
    counts = _counts(path)
    with Session(engine) as session:
        models = (TrackedRecord, OutboxBatch, OutboxItem, InboxMessage, EntityStateRow, WriteBack, SyncLog)
        for model in models:
            assert len(session.exec(select(model)).all()) == counts[str(model.__tablename__)]
        assert session.exec(select(Watermark)).all()
        message = session.exec(select(InboxMessage).where(col(InboxMessage.status) == "processed")).first()
        assert message is not None and message.system == DC and message.payload


def test_store_0003_takes_a_second_system_beside_dispatch_connect(
    old_store_upgraded: tuple[Path, Engine],
) -> None:
    _, engine = old_store_upgraded
    with Session(engine) as session:
        job = session.exec(select(EntityStateRow).where(col(EntityStateRow.kind) == "job")).first()
        assert job is not None
        session.add(EntityStateRow(system="other_backend", kind="job", external_id=job.external_id))
        session.commit()
        same_key = select(EntityStateRow.system).where(
            col(EntityStateRow.kind) == "job", col(EntityStateRow.external_id) == job.external_id
        )
        assert sorted(session.exec(same_key).all()) == [DC, "other_backend"]


def _confirmed_work_order(path: Path) -> tuple[str, str]:
    """(CRM id, remote id) of a work order Dispatch Connect confirmed."""
    query = (
        "SELECT crm_id, remote_id FROM tracked_record"
        " WHERE crm_object = 'WorkOrder' AND remote_id <> '' ORDER BY id"
    )
    crm_id, remote_id = _sqlite_rows(path, query)[0]
    return str(crm_id), str(remote_id)


def test_store_0003_timeline_shows_system_and_remote_id(old_store_upgraded: tuple[Path, Engine]) -> None:
    path, engine = old_store_upgraded
    crm_id, remote_id = _confirmed_work_order(path)
    with Session(engine) as session:
        timeline = record_timeline(session, crm_id)
    assert [(t.system, t.remote_id) for t in timeline.tracked] == [(DC, remote_id)]
    job = next(e for e in timeline.entities if e.kind == "job")
    assert (job.system, job.remote_id) == (DC, remote_id)


def test_store_0003_record_page_shows_system_and_remote_id(old_store_upgraded: tuple[Path, Engine]) -> None:
    path, engine = old_store_upgraded
    crm_id, remote_id = _confirmed_work_order(path)
    page = TestClient(create_dashboard_app(engine)).get(f"/records/{crm_id}")
    assert page.status_code == 200
    assert "remote id" in page.text and remote_id in page.text and DC in page.text
    assert "Dispatch id" not in page.text


def test_store_0003_record_status_reports_system_and_remote_id(
    old_store_upgraded: tuple[Path, Engine],
) -> None:
    path, engine = old_store_upgraded
    crm_id, remote_id = _confirmed_work_order(path)
    status = record_status(SimpleNamespace(engine=engine), crm_id)  # type: ignore[arg-type]  # reads the store only
    assert (status["system"], status["remote_id"], status["state"]) == (DC, remote_id, "complete")
    assert "dispatch_id" not in status


def test_store_0003_downgrades_and_upgrades_again(old_store_upgraded: tuple[Path, Engine]) -> None:
    path, engine = old_store_upgraded
    counts = _counts(path)
    downgrade(engine, "0003")
    at_0003 = _counts(path)
    assert at_0003 == {table: rows for table, rows in counts.items() if table in at_0003}
    upgrade(engine)
    assert _counts(path) == counts and current_revision(engine) == head_revision()

"""Migration 0005, the file_fetch queue: up and down on SQLite and PostgreSQL, with rows around it, and the
uniqueness that keeps one file from being stored twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from sync.store.db import current_revision, downgrade, make_engine, upgrade

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ROW = {
    "token": "37f3cf22-f1c5-437c-a078-8608e25a0b2b",
    "system": "dispatch_connect",
    "crm_object": "WorkOrder",
    "crm_id": "0WO000000000001AAA",
    "format": "original",
    "title": "photo.png",
    "status": "pending",
    "attempts": 0,
}


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine, "0004")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO sync_log (at, level, direction, message) VALUES (:at, 'info', 'in', 'kept')"),
            {"at": AT.replace(tzinfo=None)},
        )
    yield engine
    engine.dispose()


def _insert(engine: Engine, **changes: object) -> None:
    row = {**ROW, **changes}
    with engine.begin() as connection:
        connection.execute(
            text(f"INSERT INTO file_fetch ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"), row
        )


def test_upgrade_creates_the_queue_with_its_columns(store: Engine) -> None:
    upgrade(store, "0005")
    columns = {c["name"] for c in inspect(store).get_columns("file_fetch")}
    assert columns == {
        "id",
        "token",
        "system",
        "crm_object",
        "crm_id",
        "format",
        "title",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "content_version_id",
    }
    assert "ix_file_fetch_pending" in {i["name"] for i in inspect(store).get_indexes("file_fetch")}


def test_one_token_is_queued_once_per_crm_record(store: Engine) -> None:
    upgrade(store, "0005")
    _insert(store)
    _insert(store, crm_id="0WO000000000002AAA")  # the same file on another record is another row
    with pytest.raises(IntegrityError):
        _insert(store)


def test_downgrade_drops_the_queue_and_keeps_the_rest(store: Engine) -> None:
    upgrade(store, "0005")
    _insert(store)
    downgrade(store, "0004")
    assert current_revision(store) == "0004"
    assert "file_fetch" not in inspect(store).get_table_names()
    with store.connect() as connection:
        assert connection.execute(text("SELECT message FROM sync_log")).scalars().all() == ["kept"]


def test_upgrade_after_downgrade_starts_an_empty_queue(store: Engine) -> None:
    upgrade(store, "0005")
    _insert(store)
    downgrade(store, "0004")
    upgrade(store, "0005")
    with store.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM file_fetch")).scalar() == 0

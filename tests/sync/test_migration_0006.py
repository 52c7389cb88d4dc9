"""Migration 0006 (stream positions, CSV batches): up and down on SQLite and PostgreSQL, rows around it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, text

from sync.store.db import current_revision, downgrade, make_engine, upgrade

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).replace(tzinfo=None)


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine, "0005")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO outbox_batch (message_id, system, status, attempts, record_count, created_at) "
                "VALUES ('m-1', 'dispatch_connect', 'pending', 0, 1, :at)"
            ),
            {"at": AT},
        )
    yield engine
    engine.dispose()


def _encoding(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(text("SELECT encoding FROM outbox_batch WHERE message_id = 'm-1'")).scalar()
        )


def test_upgrade_adds_the_positions_table_and_keeps_old_batches_json(store: Engine) -> None:
    upgrade(store, "0006")
    columns = {c["name"] for c in inspect(store).get_columns("stream_position")}
    assert columns == {"channel", "replay_id", "mode", "last_error", "updated_at"}
    assert _encoding(store) == "json"


def test_downgrade_refuses_while_a_csv_batch_is_pending(store: Engine) -> None:
    upgrade(store, "0006")
    with store.begin() as connection:
        connection.execute(text("UPDATE outbox_batch SET encoding = 'csv'"))
    with pytest.raises(Exception, match="CSV batch"):
        downgrade(store, "0005")
    assert current_revision(store) == "0006"


def test_downgrade_drops_both_and_keeps_the_batches(store: Engine) -> None:
    upgrade(store, "0006")
    with store.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO stream_position (channel, replay_id, mode, updated_at) "
                "VALUES ('/data/WorkOrderChangeEvent', '42', 'streaming', :at)"
            ),
            {"at": AT},
        )
    downgrade(store, "0005")
    assert "stream_position" not in inspect(store).get_table_names()
    assert "encoding" not in {c["name"] for c in inspect(store).get_columns("outbox_batch")}
    with store.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM outbox_batch")).scalar() == 1

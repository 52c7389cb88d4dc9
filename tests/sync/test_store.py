"""The store: migrations up and down on both databases, the schema guard, SQLite settings, the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from sync.errors import StoreNotReady
from sync.store.db import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    session_scope,
    upgrade,
)
from sync.store.models import EntityStateRow, InboxMessage, SyncLog, TrackedRecord

OUR_TABLES = set(SQLModel.metadata.tables)


def test_migrations_up_and_down(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= OUR_TABLES
    check_schema(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not OUR_TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= OUR_TABLES
    engine.dispose()


def test_migrated_schema_matches_models(db_url: str) -> None:
    """Autogenerate finds nothing to do: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        diff = [d for d in compare_metadata(context, SQLModel.metadata) if d[0] != "remove_table"]
    assert diff == []
    engine.dispose()


def test_unmigrated_database_is_refused(sqlite_url: str) -> None:
    with pytest.raises(StoreNotReady, match="db upgrade"):
        check_schema(make_engine(sqlite_url))


def test_outdated_database_is_refused(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(StoreNotReady, match="does not know"):
        check_schema(engine)


def test_sqlite_runs_in_wal_with_busy_timeout(engine) -> None:
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_natural_keys_are_unique(engine) -> None:
    with session_scope(engine) as session:
        session.add(
            TrackedRecord(system="dispatch_connect", crm_object="WorkOrder", crm_id="0WO000000000001AAA")
        )
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(
            TrackedRecord(system="dispatch_connect", crm_object="WorkOrder", crm_id="0WO000000000001AAA")
        )
    with session_scope(engine) as session:
        session.add(InboxMessage(system="dispatch_connect", message_id="m-1", payload={"a": 1}))
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(InboxMessage(system="dispatch_connect", message_id="m-1"))


def test_datetimes_come_back_aware_utc(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    stamp = datetime(2026, 11, 25, 12, 0, tzinfo=UTC) + timedelta(microseconds=5)
    with session_scope(engine) as session:
        session.add(
            EntityStateRow(
                system="dispatch_connect",
                kind="job",
                external_id="J-1",
                state="scheduled",
                updated_at=stamp,
                milestones={"scheduled": stamp.isoformat()},
            )
        )
    with session_scope(engine) as session:
        row = session.exec(select(EntityStateRow)).one()
        assert row.updated_at == stamp and row.updated_at.tzinfo is not None
        assert row.milestones == {"scheduled": stamp.isoformat()}
        log = SyncLog(message="x")
        session.add(log)
        session.flush()
        assert log.at is not None and log.at.tzinfo is not None
    engine.dispose()


def test_naive_datetimes_are_rejected(engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), session_scope(engine) as session:
        session.add(
            EntityStateRow(
                system="dispatch_connect", kind="job", external_id="J-2", updated_at=datetime(2026, 1, 1)
            )
        )
        session.flush()

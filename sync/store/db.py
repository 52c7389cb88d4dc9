"""Engine, sessions and the schema guard.

SQLite is the embedded default: WAL so readers never block the writer, a busy timeout so writers
queue, and `BEGIN IMMEDIATE` so a transaction that reads then writes waits for the lock instead of
failing at once (a deferred transaction ignores the busy timeout when it upgrades). PostgreSQL needs
none of this.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from connector import jsoncodec
from sync.errors import StoreNotReady
from sync.settings import mask_url_password
from sync.store.sqlite_wal import attach_checkpointer, connection_pragmas

SQLITE_BUSY_TIMEOUT_MS = 30_000
# `migrations` is installed beside `sync`; locating it by path avoids picking up another project's
# top-level `migrations` package from the current directory.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    # JSON columns (snapshots, outbox payloads, write-back fields) through orjson: see connector.jsoncodec
    kwargs.setdefault("json_serializer", jsoncodec.dumps_text)
    kwargs.setdefault("json_deserializer", jsoncodec.loads)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(database_url, **kwargs)
    if url.drivername == "postgresql":
        database_url = str(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    return create_engine(database_url, pool_pre_ping=True, **kwargs)


def _sqlite_engine(database_url: str, **kwargs: Any) -> Engine:
    engine = create_engine(
        database_url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        for pragma in connection_pragmas():
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    path = make_url(database_url).database
    if path and path != ":memory:" and not path.startswith("file:"):
        attach_checkpointer(engine, path)
    return engine


IN_CLAUSE_CHUNK = 500  # ids per IN (...) query: well under every backend's bound-parameter limit
_T = TypeVar("_T")


def chunked(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Lists of at most `size` items, pulled lazily (a streamed query stays streamed)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine | None = None, database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Refuse to run on a database that is not at this program's schema revision."""
    current, head = current_revision(engine), head_revision()
    where = mask_url_password(engine.url.render_as_string(hide_password=False))
    if current is None:
        raise StoreNotReady(f"database {where} has no connector tables; run `dispatch-connector db upgrade`")
    if current != head:
        script = ScriptDirectory.from_config(alembic_config())
        known = {rev.revision for rev in script.walk_revisions()}
        if current in known:
            raise StoreNotReady(
                f"database {where} is at schema {current}, this program needs {head}; "
                "run `dispatch-connector db upgrade`"
            )
        raise StoreNotReady(
            f"database {where} is at schema {current}, which this program does not know "
            f"(newer version?); it needs {head}. Upgrade the program or use another database."
        )


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)

"""Session-wide fixtures: databases (a real SQLite file, a real PostgreSQL server) and a clean environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from sync.store.db import make_engine, upgrade
from tests.postgres_server import ThrowawayPostgres, binaries_available, configured_url

# Settings come from the environment: keep the developer's own variables out of the tests.
_SETTING_PREFIXES = (
    "DISPATCH_",
    "SALESFORCE_",
    "DATABASE_URL",
    "MAPPING_FILE",
    "PUBLISH_",
    "POLL_",
    "PROCESS_",
    "WRITEBACK_",
    "BATCH_SIZE",
    "LOOKBACK_S",
    "MAX_ATTEMPTS",
    "LOG_",
    "DASHBOARD_",
)


@pytest.fixture(autouse=True)
def _clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(_SETTING_PREFIXES) and name != "TEST_DATABASE_URL":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of a PostgreSQL server: the configured one, or a throwaway one started for this run."""
    url = configured_url()
    if url:
        yield url
        return
    if not binaries_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing; `make test` installs them")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not on PATH; run `make test` to install them")
    server = ThrowawayPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on a SQLite file and once on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite store (the embedded default)."""
    eng = make_engine(sqlite_url)
    upgrade(eng)
    yield eng
    eng.dispose()

"""The WAL checkpoint thread: commits leave the copy-back to it, and it never loses a committed row."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from sync.store.db import make_engine
from sync.store.sqlite_wal import AUTOCHECKPOINT_PAGES, WalCheckpointer, checkpointer_of


def _fill(engine, rows: int = 2000) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(text("INSERT INTO t (body) VALUES (:body)"), [{"body": "x" * 500}] * rows)


def test_file_engine_checkpoints_in_its_own_thread(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None and checkpointer.running
    with engine.connect() as connection:
        # commits no longer checkpoint at 1,000 pages: only far beyond, should the thread fall behind
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == AUTOCHECKPOINT_PAGES
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    _fill(engine)
    checkpointer.turned.clear()
    assert checkpointer.turned.wait(10), "the checkpoint thread took no turn"
    assert checkpointer.last_result is not None and checkpointer.last_result[0] == 0  # not busy
    engine.dispose()
    assert not checkpointer.running


def test_checkpoint_copies_every_committed_frame(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    checkpointer_of(engine).stop()  # type: ignore[union-attr]  (this test turns the crank itself)
    _fill(engine, 3000)
    with sqlite3.connect(path) as connection:
        busy, frames, copied = WalCheckpointer(str(path)).checkpoint(connection)
    assert (busy, copied) == (0, frames) and frames > 0
    engine.dispose()
    # the database file alone, without its log, holds every committed row
    (tmp_path / "store.db-wal").unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone()[0] == 3000


def test_memory_engine_has_no_checkpointer() -> None:
    assert checkpointer_of(make_engine("sqlite://")) is None


def test_a_failed_turn_is_logged_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    sqlite3.connect(path).close()
    checkpointer = WalCheckpointer(str(path), interval_s=0.01)
    real, calls = checkpointer.checkpoint, []

    def flaky(connection: sqlite3.Connection) -> tuple[int, int, int]:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real(connection)

    monkeypatch.setattr(checkpointer, "checkpoint", flaky)
    with caplog.at_level(logging.WARNING, logger="sync.store.sqlite_wal"):
        checkpointer.start()
        while len(calls) < 2:
            assert checkpointer.turned.wait(10)
            checkpointer.turned.clear()
        checkpointer.stop()
    assert "SQLite WAL checkpoint failed, retrying in 0.0 s: disk I/O error" in caplog.text
    assert checkpointer.turns >= 1 and not checkpointer.running


def test_checkpointer_never_creates_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "not-yet.db"
    checkpointer = WalCheckpointer(str(path), interval_s=0.01).start()
    assert checkpointer.turned.wait(10)
    assert not path.exists() and checkpointer.turns == 0  # waits for the engine to create it
    sqlite3.connect(path).close()
    checkpointer.turned.clear()
    while checkpointer.turns == 0:
        assert checkpointer.turned.wait(10)
    checkpointer.stop()
    assert not checkpointer.running

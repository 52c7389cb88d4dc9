"""Internal errors reach support in words, never SQL (issue 17): a database error a job or a message
raised is logged as `Type: the driver's first line`, without the statement or its parameters."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from sync.dashboard.app import create_dashboard_app
from sync.inbound import processor
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.service import daemon as daemon_module
from sync.service.daemon import Daemon
from sync.store.models import InboxMessage, SyncLog, TrackedRecord
from sync.store.synclog import error_words, without_sql, write_log
from tests.e2e.conftest import Harness

WORDS = "IntegrityError: UNIQUE constraint failed: tracked_record.crm_object, tracked_record.crm_id"


def integrity_error(harness: Harness) -> IntegrityError:
    """A real one, from the store: the same CRM record tracked twice."""
    row = {"system": "dispatch_connect", "crm_object": "WorkOrder", "crm_id": "0WOsecret-value"}
    with Session(harness.ctx.engine) as session:
        session.add(TrackedRecord(**row))
        session.commit()
        session.add(TrackedRecord(**row))
        try:
            session.commit()
        except IntegrityError as exc:
            return exc
    raise AssertionError("the duplicate was stored")


def test_a_database_error_is_its_type_and_the_drivers_first_line(harness: Harness) -> None:
    exc = integrity_error(harness)
    assert "[SQL:" in str(exc)  # what used to reach the log
    assert error_words(exc) == WORDS
    assert error_words(ValueError("plain words")) == "ValueError: plain words"


def test_a_failed_job_logs_the_cause_in_words_on_latest_errors(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    exc = integrity_error(harness)

    def broken(_ctx: object) -> str:
        raise exc

    monkeypatch.setitem(daemon_module.JOBS, "writeback", broken)
    daemon = Daemon(harness.ctx)
    daemon.run_job("writeback")
    with Session(harness.ctx.engine) as session:
        (row,) = session.exec(select(SyncLog).where(SyncLog.level == "error")).all()
    assert row.message == f"writeback job failed, retrying at the next interval: {WORDS}"
    assert daemon.health.snapshot()["writeback"].last_error == WORDS
    html = TestClient(create_dashboard_app(harness.ctx.engine, health=daemon.health)).get("/").text
    assert WORDS in html and "INSERT INTO" not in html and "0WOsecret-value" not in html


def test_a_failed_message_keeps_the_cause_in_words(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    exc = integrity_error(harness)
    harness.work_order()
    harness.publish()
    drain_pull_channels(harness.ctx)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(processor, "apply_report", broken)
    monkeypatch.setattr(processor, "apply_acks", broken)  # acks in a row are confirmed together
    assert process_inbox(harness.ctx).failed >= 1
    with Session(harness.ctx.engine) as session:
        errors = {m.last_error for m in session.exec(select(InboxMessage)).all() if m.last_error}
    assert errors == {WORDS}


def test_rows_logged_before_keep_their_sql_off_the_dashboard(harness: Harness) -> None:
    with Session(harness.ctx.engine) as session:
        write_log(
            session, "publish job failed: (sqlite3.IntegrityError) boom\n[SQL: INSERT INTO x]", level="error"
        )
        session.commit()
    html = TestClient(create_dashboard_app(harness.ctx.engine)).get("/").text
    assert "(sqlite3.IntegrityError) boom" in html and "INSERT INTO" not in html
    assert without_sql("a\n[SQL: b]\n[parameters: c]") == "a"

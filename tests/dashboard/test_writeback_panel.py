"""Failing CRM write-backs on the dashboard (issue 17): shown while they are retried, at the time they
failed, over a store the real queue filled against the Salesforce emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import pydantic.v1  # noqa: F401  (FastAPI imports it on first route: before freezegun swaps `date`)
import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlmodel import Session

from connector.crm import RetryPolicy, SalesforceGateway, connect_salesforce
from sync.dashboard.app import create_dashboard_app
from sync.dashboard.timeline import Timeline, record_timeline
from sync.writeback.queue import enqueue_update, flush_writebacks, retry_failed_writebacks
from tests.e2e.conftest import PASSWORD, TOKEN, USERNAME, Harness

TYPO = "Dispatch_Status_Reasn__c"
START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    with freeze_time(START) as frozen:
        yield frozen


@pytest.fixture
def crm(harness: Harness) -> SalesforceGateway:
    return connect_salesforce(
        harness.sf.base_url,
        username=USERNAME,
        password=PASSWORD,
        security_token=TOKEN,
        session=harness.sf.session(),
        retry=RetryPolicy(attempts=1, sleep=lambda _s: None),
    )


def failing_write(harness: Harness) -> str:
    wo = harness.work_order()
    with Session(harness.ctx.engine) as session:
        enqueue_update(session, "WorkOrder", wo, {"Dispatch_Status__c": "scheduled", TYPO: "booked"})
        session.commit()
    return wo


def panel(harness: Harness) -> list[str]:
    html = TestClient(create_dashboard_app(harness.ctx.engine)).get("/").text
    table = re.search(r'<table class="failing">(.*?)</table>', html, re.S)
    if table is None:
        assert "No CRM write-back is failing." in html
        return []
    rows = re.findall(r'<tr class="row-.*?</tr>', table.group(1), re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", r)).split()) for r in rows]


def timeline(harness: Harness, record_id: str) -> Timeline:
    with Session(harness.ctx.engine) as session:
        return record_timeline(session, record_id)


def test_a_retrying_write_back_shows_record_field_error_attempts_and_next_try(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = failing_write(harness)
    flush_writebacks(harness.ctx.engine, crm)
    (row,) = panel(harness)
    assert row.startswith(f"{wo} WorkOrder {TYPO} ")
    assert "INVALID_FIELD: No such column" in row
    assert row.endswith(" 1 2026-11-30T10:00:00Z 2026-11-30T10:00:02Z")  # attempts, last attempt, next try


def test_a_write_back_that_gave_up_says_so(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = failing_write(harness)
    flush_writebacks(harness.ctx.engine, crm, max_attempts=1)
    (row,) = panel(harness)
    assert row.startswith(wo) and row.endswith("1 2026-11-30T10:00:00Z gave up")


def test_nothing_failing_says_so(harness: Harness) -> None:
    assert panel(harness) == []


def test_the_timeline_shows_a_failure_when_it_happened_not_at_the_next_try(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = failing_write(harness)
    flush_writebacks(harness.ctx.engine, crm)
    clock.tick(timedelta(minutes=1))
    (retry,) = [e for e in timeline(harness, wo).events if e.kind == "write-back retry"]
    assert retry.at == START and "next try at 2026-11-30T10:00:02Z" in retry.summary
    flush_writebacks(harness.ctx.engine, crm, max_attempts=2)
    events = timeline(harness, wo).events
    (failed,) = [e for e in events if e.kind == "write-back failed"]
    assert failed.at == START + timedelta(minutes=1) and failed.level == "error"
    assert max(e.at for e in events) <= START + timedelta(minutes=1)  # nothing in the future


def test_a_requeued_write_back_shows_when_it_was_requeued(
    harness: Harness, crm: SalesforceGateway, clock: FrozenDateTimeFactory
) -> None:
    wo = failing_write(harness)
    flush_writebacks(harness.ctx.engine, crm, max_attempts=1)
    clock.tick(timedelta(minutes=5))
    retry_failed_writebacks(harness.ctx.engine)
    kinds = {e.kind: e.at for e in timeline(harness, wo).events}
    assert kinds["write-back requeued"] == START + timedelta(minutes=5)
    assert panel(harness) == []  # requeued: not failing until it fails again

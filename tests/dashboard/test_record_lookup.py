"""The record lookup finds a record by any id the store holds for it (issue 17): its work order number,
the back end's job id, an id it sent; a value several records hold lists them instead of merging them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from sync.dashboard.app import create_dashboard_app
from sync.dashboard.timeline import Timeline, record_timeline
from sync.store.db import make_engine, upgrade
from sync.store.models import TrackedRecord
from tests.e2e.conftest import Harness


@pytest.fixture
def client(harness: Harness) -> TestClient:
    return TestClient(create_dashboard_app(harness.ctx.engine))


def timeline(harness: Harness, record_id: str) -> Timeline:
    with Session(harness.ctx.engine) as session:
        return record_timeline(session, record_id)


def test_a_work_order_number_opens_its_timeline(harness: Harness, client: TestClient) -> None:
    wo = harness.work_order(WorkOrderNumber="WO-1004")
    harness.work_order(WorkOrderNumber="WO-1005")
    harness.publish()
    harness.round_trip()
    response = client.get("/records/WO-1004")
    assert response.status_code == 200 and "knows nothing" not in response.text
    assert "Found by its WorkOrderNumber." in response.text
    found = timeline(harness, "WO-1004")
    assert wo in found.crm_ids and [t.crm_id for t in found.tracked] == [wo]
    assert any(e.kind == "published" for e in found.events)


def test_the_back_ends_job_id_opens_its_timeline(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    with Session(harness.ctx.engine) as session:
        remote = session.exec(select(TrackedRecord.remote_id).where(TrackedRecord.crm_id == wo)).one()
    assert remote
    assert wo in timeline(harness, remote).crm_ids


def test_a_customer_id_two_work_orders_sent_lists_both(harness: Harness, client: TestClient) -> None:
    first, second = harness.work_order(Subject="One"), harness.work_order(Subject="Two")
    harness.publish()
    customer = f"{harness.provider_id}-{harness.contact_id}"
    found = timeline(harness, customer)
    assert sorted(c.crm_id for c in found.candidates) == sorted([first, second]) and found.events == []
    html = client.get(f"/records/{customer}").text
    assert (
        "2 records hold" in html
        and f'href="/records/{first}"' in html
        and f'href="/records/{second}"' in html
    )


def test_a_value_nobody_holds_is_still_unknown(harness: Harness, client: TestClient) -> None:
    harness.work_order(WorkOrderNumber="WO-1004")
    harness.publish()
    assert client.get("/records/WO-9999").status_code == 404
    assert client.get("/records/WO-100%").status_code == 404  # LIKE wildcards are literal


def test_snapshot_search_works_on_sqlite_and_postgresql(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    try:
        with Session(engine) as session:
            for crm_id, number in (("0WOa", "WO-1004"), ("0WOb", "WO-10045"), ("0WOc", "WO_1004")):
                snapshot = {"WorkOrderNumber": number, "Subject": "Fix WO-1004 now"}
                session.add(TrackedRecord(system="dispatch_connect", crm_object="WorkOrder", crm_id=crm_id,
                                          external_id=crm_id, snapshot=snapshot))  # fmt: skip
            session.commit()
            found = record_timeline(session, "WO-1004")
        assert [t.crm_id for t in found.tracked] == ["0WOa"] and found.matched == "WorkOrderNumber"
    finally:
        engine.dispose()

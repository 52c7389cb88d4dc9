"""Hostile CRM data through the whole publish path (both emulators over sockets): nothing crashes, the other
work orders keep flowing, each bad item is at most one log row, and valid data arrives byte-exact."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from sync.store.models import InboxMessage, SyncLog
from tests.e2e.conftest import Harness

VALID_HOSTILE = {
    "soql-quote": {"Subject": "O'Brien' OR Id != '"},
    "soql-backslash": {"Subject": "back\\slash \\' and %_ wildcards"},
    "markup": {"Subject": "<script>alert('x')</script>", "Description": "<img src=x onerror=alert(1)>&amp;"},
    "megabyte": {"Description": "0123456789abcdef" * 65_536},
    "emoji": {
        "Subject": "🔧 Boiler 🚒 naïve café \U0001d518\U0001d52b\U0001d526",
        "Description": "👩🏽‍🔧 family: 👨‍👩‍👧",
    },
    "control-chars": {"Subject": "tab\tnew\nline\r\x1b[31mred"},
}


def _loud_rows(harness: Harness) -> list[SyncLog]:
    with Session(harness.ctx.engine) as session:
        return list(session.exec(select(SyncLog).where(SyncLog.level.in_(("warning", "error")))).all())  # type: ignore[attr-defined]


def _flow(harness: Harness) -> None:
    harness.publish()
    harness.round_trip()


def test_hostile_but_valid_text_round_trips_byte_exact(harness: Harness) -> None:
    ids = {name: harness.work_order(**values) for name, values in VALID_HOSTILE.items()}
    plain = [harness.work_order(Subject=f"Plain {n}") for n in range(3)]
    _flow(harness)
    jobs = harness.dispatch.records("job")
    for name, values in VALID_HOSTILE.items():
        job = jobs[ids[name]]
        assert job.get("title") == values.get("Subject", "Replace breaker"), name
        assert job.get("description") == values.get("Description", "Trips under load"), name
    for wo in [*ids.values(), *plain]:
        assert harness.wo(wo)["Dispatch_Last_Synced__c"], wo
        assert harness.wo(wo)["Dispatch_Error__c"] is None
    assert _loud_rows(harness) == []


@pytest.mark.parametrize("subject", ["nul\x00inside", "lone \ud800 surrogate"], ids=["nul", "lone-surrogate"])
def test_unencodable_subject_does_not_stop_the_others(harness: Harness, subject: str) -> None:
    bad = harness.work_order(Subject=subject)
    good = [harness.work_order(Subject=f"Good {n}") for n in range(3)]
    _flow(harness)
    for wo in good:
        assert harness.wo(wo)["Dispatch_Last_Synced__c"], wo
        assert harness.dispatch.records("job")[wo]["title"] == harness.wo(wo)["Subject"]
    loud = _loud_rows(harness)
    about_bad = [r for r in loud if bad in (r.crm_record_id, r.external_id) or bad in r.message]
    assert len(loud) == len(about_bad) <= 1, [r.message[:200] for r in loud]
    if not about_bad:  # accepted: it must then have arrived as sent
        assert harness.dispatch.records("job")[bad]["title"] == subject


def test_event_with_lone_surrogate_id_is_stored_and_acked(harness: Harness) -> None:
    harness.dispatch.emit("job", {"id": 99, "external_id": "WO-\ud800", "status": "unscheduled"})
    harness.dispatch.emit("job", {"id": 98, "external_id": "WO-fine", "status": "unscheduled"})
    report = _drain(harness)
    assert report.store_failures == [] and harness.dispatch.queue_depth() == 0
    with Session(harness.ctx.engine) as session:
        assert len(session.exec(select(InboxMessage)).all()) == 2


def _drain(harness: Harness):  # type: ignore[no-untyped-def]
    from sync.inbound.poller import drain_pull_channels

    return drain_pull_channels(harness.ctx)


def test_hostile_field_event_text_reaches_the_crm_byte_exact(harness: Harness) -> None:
    wo = harness.work_order()
    _flow(harness)
    reason = "O'Brien' OR Id != ' <script>alert(1)</script> 🔧"
    harness.dispatch.pause_job(wo, reason)
    harness.round_trip()
    record = harness.wo(wo)
    assert record["Dispatch_Status__c"] == "paused"
    assert record["Dispatch_Status_Reason__c"] == reason

"""record_timeline over a store the real engine filled: what support sees for one record, in order."""

from __future__ import annotations

from sqlmodel import Session

from sync.dashboard.timeline import Timeline, record_timeline
from tests.dashboard.conftest import Scenario


def timeline(scenario: Scenario, record_id: str) -> Timeline:
    with Session(scenario.engine) as session:
        return record_timeline(session, record_id)


def kinds(t: Timeline) -> list[str]:
    return [e.kind for e in t.events]


def test_work_order_timeline_runs_publish_ack_events_write_backs_in_order(scenario: Scenario) -> None:
    t = timeline(scenario, scenario.good)
    k = kinds(t)
    first_job = next(i for i, e in enumerate(t.events) if e.kind == "received job")
    assert k.index("published") < k.index("sent") < k.index("received ack") < first_job
    assert k.index("received ack") < k.index("write-back queued")
    job_statuses = [e.summary for e in t.events if e.kind == "received job"]
    assert ["status=unscheduled" in job_statuses[0], "status=complete" in job_statuses[-1]] == [True, True]
    assert [e.at for e in t.events] == sorted(e.at for e in t.events)


def test_timeline_shows_current_state_and_tracked_record(scenario: Scenario) -> None:
    t = timeline(scenario, scenario.good)
    job = next(e for e in t.entities if e.kind == "job")
    assert (job.state, job.status_message) == ("complete", "All done")
    assert {name for name, _ in job.milestones} >= {"accepted", "scheduled", "enroute", "completed"}
    (tracked,) = [r for r in t.tracked if r.crm_object == "WorkOrder"]
    assert tracked.confirmed_at is not None and tracked.last_message_id and tracked.last_error is None


def test_note_write_back_create_is_attributed_to_the_work_order(scenario: Scenario) -> None:
    t = timeline(scenario, scenario.good)
    assert any(e.kind == "write-back queued" and "Dispatch_Note__c" in e.summary for e in t.events)


def test_rejected_work_order_has_its_err_and_error_row(scenario: Scenario) -> None:
    t = timeline(scenario, scenario.bad)
    errors = [e for e in t.errors if e.source == "log"]
    assert len(errors) == 1 and "address" in errors[0].summary
    assert any(e.kind == "rejected" for e in t.errors)
    assert any(e.kind == "received err" for e in t.events)
    assert t.tracked[0].last_error and t.tracked[0].confirmed_at is None


def test_other_records_rows_sharing_a_batch_are_left_out(scenario: Scenario) -> None:
    t = timeline(scenario, scenario.good)
    assert not any(scenario.bad in e.summary for e in t.events)


def test_unknown_id_yields_an_empty_timeline(scenario: Scenario) -> None:
    t = timeline(scenario, "0WO_nope%")
    assert not t.found and t.events == []

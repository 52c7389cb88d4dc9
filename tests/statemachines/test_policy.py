"""Behaviour of the lenient and strict policies beyond the exhaustive tables."""

from __future__ import annotations

from datetime import datetime

import pytest
import transitions.core

from statemachines import (
    EntityState,
    StateMachineError,
    TransitionRefused,
    UnknownKind,
    UnknownStatus,
    allowed_targets,
    apply_reported,
    follow_ups,
    request_change,
)

from .conftest import EXPECTED_MILESTONES, at


@pytest.mark.parametrize(
    ("kind", "state", "milestone"),
    [(k, s, m) for k, table in EXPECTED_MILESTONES.items() for s, m in table.items()],
)
def test_entering_a_state_stamps_its_milestone_from_updated_at(kind: str, state: str, milestone: str) -> None:
    entity = EntityState()
    result = apply_reported(kind, entity, state, updated_at=at(7))
    assert result.stamped == (milestone,)
    assert entity.milestones == {milestone: at(7)}


def test_job_lifecycle_stamps_each_milestone_once() -> None:
    job = EntityState()
    for minute, status in enumerate(["offered", "unscheduled", "scheduled", "paused", "complete"]):
        apply_reported("job", job, status, updated_at=at(minute))
    assert job.milestones == {
        "accepted": at(1),
        "scheduled": at(2),
        "paused": at(3),
        "completed": at(4),
    }


def test_same_state_newer_event_updates_message_but_not_milestone() -> None:
    job = EntityState()
    apply_reported("job", job, "paused", updated_at=at(1), reason="no_show")
    result = apply_reported("job", job, "paused", updated_at=at(2), reason="waiting_for_parts")
    assert (result.changed, result.stamped) == (True, ())
    assert job.status_message == "waiting_for_parts"
    assert job.milestones == {"paused": at(1)}
    assert job.updated_at == at(2)


def test_status_message_comes_from_the_reason() -> None:
    job = EntityState(state="offered", updated_at=at(0))
    apply_reported("job", job, "rejected", updated_at=at(1), reason="incorrect_service_area")
    assert job.status_message == "incorrect_service_area"


def test_stale_event_does_not_roll_state_back() -> None:
    job = EntityState()
    apply_reported("job", job, "complete", updated_at=at(10), reason="ready_for_billing")
    result = apply_reported("job", job, "scheduled", updated_at=at(5), reason="late")
    assert result.stale is True and result.changed is False
    assert (result.from_state, result.to_state) == ("complete", "complete")
    assert result.warning is not None and "stale" in result.warning
    assert (job.state, job.status_message, job.updated_at) == (
        "complete",
        "ready_for_billing",
        at(10),
    )


def test_stale_event_backfills_a_missing_milestone_only() -> None:
    job = EntityState()
    apply_reported("job", job, "scheduled", updated_at=at(10))
    late_accept = apply_reported("job", job, "unscheduled", updated_at=at(3))
    late_schedule = apply_reported("job", job, "scheduled", updated_at=at(4))
    assert late_accept.stamped == ("accepted",)
    assert late_schedule.stamped == ()
    assert job.milestones == {"accepted": at(3), "scheduled": at(10)}


def test_equal_updated_at_with_same_state_is_a_no_op() -> None:
    job = EntityState()
    apply_reported("job", job, "scheduled", updated_at=at(1), reason="first")
    before = EntityState(job.state, job.status_message, dict(job.milestones), job.updated_at)
    result = apply_reported("job", job, "scheduled", updated_at=at(1), reason="redelivered")
    assert (result.changed, result.stale, result.warning, result.stamped) == (
        False,
        False,
        None,
        (),
    )
    assert job == before


def test_equal_updated_at_with_other_state_applies_in_arrival_order() -> None:
    job = EntityState()
    apply_reported("job", job, "scheduled", updated_at=at(1))
    result = apply_reported("job", job, "paused", updated_at=at(1))
    assert (result.changed, job.state) == (True, "paused")


def test_naive_and_aware_timestamps_compare_as_utc() -> None:
    job = EntityState()
    apply_reported("job", job, "scheduled", updated_at=at(5))
    result = apply_reported("job", job, "paused", updated_at=datetime(2024, 3, 1, 9, 1))
    assert result.stale is True
    assert job.state == "scheduled"


def test_event_without_updated_at_is_applied_with_a_warning() -> None:
    job = EntityState()
    apply_reported("job", job, "scheduled", updated_at=at(5))
    result = apply_reported("job", job, "paused", updated_at=None)
    assert job.state == "paused"
    assert job.updated_at == at(5)
    assert result.stamped == ()
    assert result.warning is not None and "updated_at" in result.warning


def test_status_strings_are_normalised_and_aliases_accepted() -> None:
    job = EntityState(state="scheduled", updated_at=at(0))
    result = apply_reported("job", job, " Cancelled ", updated_at=at(1))
    assert (job.state, result.expected, result.stamped) == ("canceled", True, ("canceled",))


def test_follow_up_appointment_takes_complete_job_back_to_scheduled() -> None:
    job = EntityState()
    for minute, status in enumerate(["offered", "unscheduled", "scheduled", "complete"]):
        apply_reported("job", job, status, updated_at=at(minute))
    appointment = EntityState()
    appt = apply_reported("appointment", appointment, "scheduled", updated_at=at(30))
    [rule] = appt.follow_ups
    assert (rule.kind, rule.relation, rule.status) == ("job", "parent_job", "scheduled")
    result = apply_reported("job", job, rule.status, updated_at=at(30))
    assert (result.from_state, result.to_state) == ("complete", "scheduled")
    assert result.expected is True and result.warning is None
    assert job.milestones["scheduled"] == at(30)
    assert job.milestones["completed"] == at(3)


def test_strict_allows_follow_up_scheduling_of_a_complete_job() -> None:
    job = EntityState(state="complete")
    result = request_change("job", job, "scheduled", at=at(1))
    assert (result.changed, job.state) == (True, "scheduled")


def test_won_estimate_expects_an_invoice() -> None:
    estimate = EntityState(state="sent", updated_at=at(0))
    result = apply_reported("estimate", estimate, "won", updated_at=at(1))
    [rule] = result.follow_ups
    assert (rule.kind, rule.status, rule.relation) == ("invoice", "draft", "created")
    assert follow_ups("estimate", "won") == result.follow_ups
    assert follow_ups("estimate", "lost") == ()


def test_follow_ups_only_fire_when_the_state_is_entered() -> None:
    estimate = EntityState(state="won", updated_at=at(0))
    result = apply_reported("estimate", estimate, "won", updated_at=at(1))
    assert result.follow_ups == ()


def test_refusal_message_names_from_to_and_allowed() -> None:
    with pytest.raises(TransitionRefused) as info:
        request_change("job", EntityState(state="complete"), "canceled", at=at(1))
    assert str(info.value) == ("job cannot go from complete to canceled; allowed from complete: scheduled")
    assert info.value.retriable is False


def test_refusal_from_a_final_state_says_none_allowed() -> None:
    with pytest.raises(TransitionRefused, match="allowed from canceled: none"):
        request_change("job", EntityState(state="canceled"), "scheduled", at=at(1))


def test_refusal_for_a_new_record_lists_initial_states() -> None:
    with pytest.raises(TransitionRefused) as info:
        request_change("job", EntityState(), "complete", at=at(1))
    assert "from (new record) to complete" in str(info.value)
    assert "offered, unscheduled" in str(info.value)


def test_unknown_target_is_refused_with_the_valid_statuses() -> None:
    job = EntityState(state="scheduled")
    with pytest.raises(UnknownStatus, match="job has no status 'done'; use one of: offered"):
        request_change("job", job, "done", at=at(1))
    assert job.state == "scheduled"


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(UnknownKind, match="known kinds: job"):
        apply_reported("ticket", EntityState(), "open", updated_at=at(1))


def test_every_error_is_a_non_retriable_state_machine_error() -> None:
    for cls in (TransitionRefused, UnknownStatus, UnknownKind):
        assert issubclass(cls, StateMachineError)
        assert cls.retriable is False


def test_strict_change_stamps_milestone_but_leaves_dispatch_watermark() -> None:
    job = EntityState(state="scheduled", updated_at=at(5))
    result = request_change("job", job, "canceled", at=at(9), reason="customer_canceled")
    assert result.stamped == ("canceled",)
    assert job.milestones == {"canceled": at(9)}
    assert (job.updated_at, job.status_message) == (at(5), "customer_canceled")


def test_strict_from_a_forced_unknown_state_allows_nothing() -> None:
    job = EntityState()
    apply_reported("job", job, "on_hold", updated_at=at(1))
    assert allowed_targets("job", "on_hold") == []
    with pytest.raises(TransitionRefused, match="allowed from on_hold: none"):
        request_change("job", job, "scheduled", at=at(2))


def test_applying_events_never_builds_a_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Machine was built on the hot path")

    monkeypatch.setattr(transitions.core.Machine, "__init__", refuse)
    job = EntityState()
    for minute, status in enumerate(["offered", "unscheduled", "scheduled", "complete"]):
        apply_reported("job", job, status, updated_at=at(minute))
    request_change("job", job, "scheduled", at=at(9))
    assert job.state == "scheduled"

"""Property tests: the lenient policy holds its guarantees for any event sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from statemachines import KINDS, EntityState, apply_reported, event_table
from statemachines.machines import spec_for

from .conftest import T0

UNKNOWN = ("on_hold", "needs_review")


@st.composite
def kind_and_events(
    draw: st.DrawFn, *, with_odd_times: bool = False
) -> tuple[str, list[tuple[str, datetime | None, str | None]]]:
    kind = draw(st.sampled_from(KINDS))
    statuses = sorted(event_table(kind)) + list(UNKNOWN)
    minutes = st.integers(min_value=0, max_value=30)
    times: st.SearchStrategy[datetime | None] = minutes.map(lambda m: T0 + timedelta(minutes=m))
    if with_odd_times:
        naive = minutes.map(lambda m: (T0 + timedelta(minutes=m)).replace(tzinfo=None))
        times = st.one_of(times, naive, st.none())
    event = st.tuples(st.sampled_from(statuses), times, st.one_of(st.none(), st.sampled_from(["", "why"])))
    return kind, draw(st.lists(event, max_size=25))


def _canonical(kind: str, status: str) -> str:
    """The state a reported status lands in (aliases resolved, unknown kept as reported)."""
    spec = spec_for(kind)
    trigger = spec.table.events.get(status)
    return status if trigger is None else spec.dest[trigger]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@given(kind_and_events(with_odd_times=True))
def test_lenient_never_raises_and_never_moves_updated_at_backwards(
    case: tuple[str, list[tuple[str, datetime | None, str | None]]],
) -> None:
    kind, events = case
    entity = EntityState()
    for status, updated_at, reason in events:
        before = _utc(entity.updated_at)
        apply_reported(kind, entity, status, updated_at=updated_at, reason=reason)
        after = _utc(entity.updated_at)
        assert before is None or (after is not None and after >= before)


@given(kind_and_events())
def test_state_is_the_status_of_the_newest_event(
    case: tuple[str, list[tuple[str, datetime | None, str | None]]],
) -> None:
    kind, events = case
    entity = EntityState()
    for status, updated_at, reason in events:
        apply_reported(kind, entity, status, updated_at=updated_at, reason=reason)
    if not events:
        assert entity.state is None
        return
    newest = max(t for _, t, _ in events if t is not None)
    # Among events sharing the newest updated_at, the last one to arrive wins.
    winner = [s for s, t, _ in events if t == newest][-1]
    assert entity.state == _canonical(kind, winner)
    assert entity.updated_at == newest


@given(kind_and_events())
def test_milestones_are_only_ever_stamped_with_reported_times(
    case: tuple[str, list[tuple[str, datetime | None, str | None]]],
) -> None:
    kind, events = case
    entity = EntityState()
    for status, updated_at, reason in events:
        apply_reported(kind, entity, status, updated_at=updated_at, reason=reason)
    reported = {t for _, t, _ in events}
    assert set(entity.milestones.values()) <= reported

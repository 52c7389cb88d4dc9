"""Exhaustive: every kind x every state (and None) x every target, under both policies."""

from __future__ import annotations

import pytest

from statemachines import (
    KINDS,
    EntityState,
    TransitionRefused,
    allowed_targets,
    apply_reported,
    event_table,
    request_change,
    transition_table,
)

from .conftest import EXPECTED_ALLOWED, at, cases

CASES = cases()
IDS = [f"{k}:{s}->{t}" for k, s, t in CASES]


def test_kinds_are_the_five_entity_kinds() -> None:
    assert set(KINDS) == {"job", "appointment", "offer", "estimate", "invoice"}
    assert set(KINDS) == set(EXPECTED_ALLOWED)


@pytest.mark.parametrize("kind", sorted(EXPECTED_ALLOWED))
def test_allowed_targets_match_the_playbook_reading(kind: str) -> None:
    for source, targets in EXPECTED_ALLOWED[kind].items():
        assert set(allowed_targets(kind, source)) == targets, source


@pytest.mark.parametrize("kind", sorted(EXPECTED_ALLOWED))
def test_transition_table_rows_are_exactly_the_allowed_edges(kind: str) -> None:
    rows = transition_table(kind)
    edges = {(src, dst) for _, src, dst in rows}
    expected = {(src, dst) for src, dsts in EXPECTED_ALLOWED[kind].items() if src for dst in dsts}
    assert edges == expected
    assert len(rows) == len(edges)


@pytest.mark.parametrize("kind", sorted(EXPECTED_ALLOWED))
def test_every_state_is_reachable_by_its_own_status_string(kind: str) -> None:
    events = event_table(kind)
    for state in (s for s in EXPECTED_ALLOWED[kind] if s is not None):
        assert state in events, state


@pytest.mark.parametrize(("kind", "source", "target"), CASES, ids=IDS)
def test_strict_request(kind: str, source: str | None, target: str) -> None:
    entity = EntityState(state=source, status_message="before")
    if target == source:
        result = request_change(kind, entity, target, at=at(1), reason="before")
        assert (result.changed, entity.state) == (False, source)
    elif target in EXPECTED_ALLOWED[kind][source]:
        result = request_change(kind, entity, target, at=at(1), reason="why")
        assert (result.from_state, result.to_state, result.changed) == (source, target, True)
        assert (entity.state, entity.status_message) == (target, "why")
    else:
        with pytest.raises(TransitionRefused) as info:
            request_change(kind, entity, target, at=at(1), reason="why")
        assert (info.value.from_state, info.value.to_state) == (source, target)
        assert set(info.value.allowed) == EXPECTED_ALLOWED[kind][source]
        assert entity == EntityState(state=source, status_message="before")


@pytest.mark.parametrize(("kind", "source", "target"), CASES, ids=IDS)
def test_lenient_report(kind: str, source: str | None, target: str) -> None:
    entity = EntityState(state=source, updated_at=None if source is None else at(0))
    result = apply_reported(kind, entity, target, updated_at=at(1))
    assert entity.state == target
    assert entity.updated_at == at(1)
    assert result.stale is False
    expected = source is None or source == target or target in EXPECTED_ALLOWED[kind][source]
    assert result.expected is expected
    if expected:
        assert result.warning is None
    else:
        assert result.warning is not None
        assert f"{source} -> {target}" in result.warning
    assert result.changed is (source != target)


@pytest.mark.parametrize("kind", sorted(EXPECTED_ALLOWED))
def test_lenient_unknown_status_is_recorded_not_dropped(kind: str) -> None:
    entity = EntityState(state=None)
    result = apply_reported(kind, entity, "Waiting_On_Moon", updated_at=at(1), reason="odd")
    assert entity.state == "waiting_on_moon"
    assert entity.status_message == "odd"
    assert result.expected is False
    assert result.warning is not None and "unknown" in result.warning

"""The Mermaid export draws every transition of the live tables."""

from __future__ import annotations

import pytest

from statemachines import KINDS, allowed_targets, mermaid, transition_table


@pytest.mark.parametrize("kind", KINDS)
def test_mermaid_contains_every_transition(kind: str) -> None:
    text = mermaid(kind)
    assert "stateDiagram-v2" in text
    for trigger, source, dest in transition_table(kind):
        assert f"{source} --> {dest}: {trigger}" in text


@pytest.mark.parametrize("kind", KINDS)
def test_mermaid_marks_every_initial_state(kind: str) -> None:
    text = mermaid(kind)
    for state in allowed_targets(kind, None):
        assert f"[*] --> {state}" in text

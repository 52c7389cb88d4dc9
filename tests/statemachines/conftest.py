"""Shared expectations for the state-machine tests, written out by hand from the playbook so the
tests do not merely re-derive the tables they check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

EXPECTED_ALLOWED: dict[str, dict[str | None, set[str]]] = {
    "job": {
        None: {"offered", "unscheduled"},
        "offered": {"unscheduled", "rejected", "canceled"},
        "unscheduled": {"scheduled", "paused", "complete", "canceled"},
        "rejected": set(),
        "scheduled": {"paused", "complete", "canceled"},
        "paused": {"scheduled", "complete", "canceled"},
        "complete": {"scheduled"},
        "canceled": set(),
    },
    "appointment": {
        None: {"scheduled"},
        "scheduled": {"enroute", "started", "complete", "canceled"},
        "enroute": {"started", "complete", "canceled"},
        "started": {"complete", "canceled"},
        "complete": set(),
        "canceled": set(),
    },
    "offer": {
        None: {"unassigned"},
        "unassigned": {"offered", "complete", "canceled"},
        "offered": {"complete", "canceled"},
        "complete": set(),
        "canceled": set(),
    },
    "estimate": {
        None: {"draft"},
        "draft": {"sent", "won", "lost"},
        "sent": {"won", "lost"},
        "won": set(),
        "lost": set(),
    },
    "invoice": {
        None: {"draft"},
        "draft": {"sent", "balance_outstanding"},
        "sent": {"balance_outstanding", "paid"},
        "balance_outstanding": {"paid"},
        "paid": set(),
    },
}

EXPECTED_MILESTONES: dict[str, dict[str, str]] = {
    "job": {
        "unscheduled": "accepted",
        "rejected": "rejected",
        "scheduled": "scheduled",
        "paused": "paused",
        "complete": "completed",
        "canceled": "canceled",
    },
    "appointment": {
        "scheduled": "scheduled",
        "enroute": "enroute",
        "started": "started",
        "complete": "completed",
        "canceled": "canceled",
    },
    "offer": {"complete": "completed", "canceled": "canceled"},
    "estimate": {},
    "invoice": {},
}

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """A fixed event time `minutes` after T0: tests never read the clock."""
    return T0 + timedelta(minutes=minutes)


def cases() -> list[tuple[str, str | None, str]]:
    """Every (kind, from_state incl. None, target state) combination."""
    out: list[tuple[str, str | None, str]] = []
    for kind, table in EXPECTED_ALLOWED.items():
        states = [s for s in table if s is not None]
        for source in table:
            for target in states:
                out.append((kind, source, target))
    return out


@pytest.fixture
def t0() -> datetime:
    return T0

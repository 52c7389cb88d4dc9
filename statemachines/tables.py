"""The transition, event, milestone and follow-up tables: the single source of truth.

Everything else (the `transitions` machines, the policies, the Mermaid diagrams, the docs) is
derived from these tables, so a change of rules is a change of data here. Status strings are the
ones Dispatch Connect reports in `agent/out` events (Dispatch Connect playbook, "Event Processing"
sections), which are also the values the CRM stores in its status field.

Rule of the tables: each trigger has exactly one destination, so a status maps to one trigger and
a trigger to one status. Same-state "transitions" (a reschedule, a second pause reason) are not
listed: the policies treat a status equal to the current state as a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

# (trigger, sources, dest). A row with no sources is an entry-only trigger: its state is reached
# only as a record's first state (or by a forced, unexpected report).
Row = tuple[str, tuple[str, ...], str]


@dataclass(frozen=True, slots=True)
class KindTable:
    """The rules of one entity kind, as plain data."""

    kind: str
    states: tuple[str, ...]
    initial: tuple[str, ...]
    """States a record may start in when the CRM creates it (strict policy from `None`)."""
    transitions: tuple[Row, ...]
    events: dict[str, str]
    """Reported status string (lower case) -> trigger; includes a few spelling aliases."""
    milestones: dict[str, str]
    """State -> milestone name stamped when the state is entered."""


JOB = KindTable(
    kind="job",
    states=("offered", "unscheduled", "rejected", "scheduled", "paused", "complete", "canceled"),
    initial=("offered", "unscheduled"),
    transitions=(
        ("offer", (), "offered"),
        ("accept", ("offered",), "unscheduled"),
        ("reject", ("offered",), "rejected"),
        # complete -> scheduled: "A follow up appointment can be created even after a job has
        # been completed" (playbook, Job Completed note). paused -> scheduled: work resumes.
        ("schedule", ("unscheduled", "paused", "complete"), "scheduled"),
        ("pause", ("unscheduled", "scheduled"), "paused"),
        ("complete", ("unscheduled", "scheduled", "paused"), "complete"),
        ("cancel", ("offered", "unscheduled", "scheduled", "paused"), "canceled"),
    ),
    events={
        "offered": "offer",
        "unscheduled": "accept",
        "rejected": "reject",
        "scheduled": "schedule",
        "paused": "pause",
        "complete": "complete",
        "completed": "complete",
        "canceled": "cancel",
        "cancelled": "cancel",
    },
    milestones={
        "unscheduled": "accepted",
        "rejected": "rejected",
        "scheduled": "scheduled",
        "paused": "paused",
        "complete": "completed",
        "canceled": "canceled",
    },
)

APPOINTMENT = KindTable(
    kind="appointment",
    states=("scheduled", "enroute", "started", "complete", "canceled"),
    initial=("scheduled",),
    transitions=(
        ("schedule", (), "scheduled"),
        ("depart", ("scheduled",), "enroute"),
        ("start", ("scheduled", "enroute"), "started"),
        # Technicians often skip the "on my way"/"start" taps, so completing from any open
        # state is ordinary, not a warning.
        ("complete", ("scheduled", "enroute", "started"), "complete"),
        ("cancel", ("scheduled", "enroute", "started"), "canceled"),
    ),
    events={
        "scheduled": "schedule",
        "enroute": "depart",
        "en_route": "depart",
        "started": "start",
        "complete": "complete",
        "completed": "complete",
        "canceled": "cancel",
        "cancelled": "cancel",
    },
    milestones={
        "scheduled": "scheduled",
        "enroute": "enroute",
        "started": "started",
        "complete": "completed",
        "canceled": "canceled",
    },
)

OFFER = KindTable(
    kind="offer",
    # "unassigned - offers must be created in this status"; "offered" once auto/manual assign
    # offers it to an organisation; "complete"/"canceled" are the other statuses of the
    # default offer mapping.
    states=("unassigned", "offered", "complete", "canceled"),
    initial=("unassigned",),
    transitions=(
        ("unassign", (), "unassigned"),
        ("offer", ("unassigned",), "offered"),
        ("complete", ("unassigned", "offered"), "complete"),
        ("cancel", ("unassigned", "offered"), "canceled"),
    ),
    events={
        "unassigned": "unassign",
        "offered": "offer",
        "complete": "complete",
        "completed": "complete",
        "canceled": "cancel",
        "cancelled": "cancel",
    },
    milestones={"complete": "completed", "canceled": "canceled"},
)

ESTIMATE = KindTable(
    kind="estimate",
    states=("draft", "sent", "won", "lost"),
    initial=("draft",),
    transitions=(
        ("draft", (), "draft"),
        ("send", ("draft",), "sent"),
        # Dispatch reports only draft/won/lost for estimates, so draft -> won/lost is normal.
        ("win", ("draft", "sent"), "won"),
        ("lose", ("draft", "sent"), "lost"),
    ),
    events={"draft": "draft", "sent": "send", "won": "win", "lost": "lose"},
    milestones={},
)

INVOICE = KindTable(
    kind="invoice",
    states=("draft", "sent", "balance_outstanding", "paid"),
    initial=("draft",),
    transitions=(
        ("draft", (), "draft"),
        ("send", ("draft",), "sent"),
        # Dispatch reports draft and balance_outstanding; skipping "sent" is normal.
        ("bill", ("draft", "sent"), "balance_outstanding"),
        ("pay", ("sent", "balance_outstanding"), "paid"),
    ),
    events={
        "draft": "draft",
        "sent": "send",
        "balance_outstanding": "bill",
        "paid": "pay",
    },
    milestones={},
)

TABLES: dict[str, KindTable] = {t.kind: t for t in (JOB, APPOINTMENT, OFFER, ESTIMATE, INVOICE)}
KINDS: tuple[str, ...] = tuple(TABLES)


@dataclass(frozen=True, slots=True)
class FollowUp:
    """Something the engine should do or expect on *another* record when a state is entered.

    relation "parent_job": apply `status` to the job the entity belongs to (lenient, with the
    entity event's updated_at). relation "created": Dispatch creates a record of `kind`, which
    starts in `status`; the engine may expect it (and link it) rather than create it.
    """

    kind: str
    status: str
    relation: str
    reason: str


FOLLOW_UPS: dict[tuple[str, str], tuple[FollowUp, ...]] = {
    ("estimate", "won"): (
        FollowUp(
            kind="invoice",
            status="draft",
            relation="created",
            reason="when an estimate is won a corresponding invoice is created",
        ),
    ),
    ("appointment", "scheduled"): (
        FollowUp(
            kind="job",
            status="scheduled",
            relation="parent_job",
            reason="a (follow-up) appointment schedules its job, even a complete one",
        ),
    ),
}


def follow_ups(kind: str, state: str | None) -> tuple[FollowUp, ...]:
    """What entering `state` on a `kind` record implies for other records (may be empty)."""
    if state is None:
        return ()
    return FOLLOW_UPS.get((kind, state), ())

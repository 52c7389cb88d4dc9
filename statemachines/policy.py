"""The two policies (ARCHITECTURE.md, key decision 2).

* `apply_reported` - LENIENT, for events Dispatch reports: "less complete information is better
  than no information" (playbook, validation policy). Nothing reported is dropped: an unexpected
  transition or an unknown status is applied anyway and flagged with a warning; only an event
  older than what is already applied is kept out of the state (it cannot roll state back).
* `request_change` - STRICT, for changes the CRM asks for: refused before anything is sent.

Naive datetimes are taken to be UTC so that comparing them with aware ones can never raise.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import TransitionRefused, UnknownStatus
from .machines import KindSpec, spec_for
from .state import ApplyResult, EntityState
from .tables import follow_ups


def _aware(at: datetime | None) -> datetime | None:
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)


def _resolve(spec: KindSpec, status: str) -> tuple[str | None, str]:
    """(trigger or None when unknown, target state) for a reported status string."""
    events = spec.table.events
    trigger = events.get(status)
    if trigger is None:
        status = status.strip().lower()
        trigger = events.get(status)
        if trigger is None:
            return None, status
    return trigger, spec.dest[trigger]


def _stamp(spec: KindSpec, entity: EntityState, state: str, at: datetime | None) -> tuple[str, ...]:
    milestone = spec.table.milestones.get(state)
    if milestone is None or at is None:
        return ()
    entity.milestones[milestone] = at
    return (milestone,)


def _stale(
    spec: KindSpec, entity: EntityState, target: str, at: datetime, last: datetime, known: bool
) -> ApplyResult:
    """An event older than the applied one: keep the state, but record a milestone it proves
    (e.g. a late "accepted") when none is known yet, because that is history, not a rollback."""
    kind = spec.table.kind
    stamped: tuple[str, ...] = ()
    milestone = spec.table.milestones.get(target)
    if milestone is not None and milestone not in entity.milestones:
        stamped = _stamp(spec, entity, target, at)
    kept = f"; milestone {stamped[0]} recorded" if stamped else ""
    warning = (
        f"stale {kind} event ignored: status {target} at {at.isoformat()} is older than the "
        f"applied event at {last.isoformat()}; state stays {entity.state}{kept}"
    )
    return ApplyResult(kind, entity.state, entity.state, False, True, known, warning, stamped)


def apply_reported(
    kind: str,
    entity: EntityState,
    status: str,
    *,
    updated_at: datetime | None,
    reason: str | None = None,
) -> ApplyResult:
    """Apply a status Dispatch reported, leniently; never raises for the event's content.

    `changed` is True when the state or the status message changed (what the CRM must see);
    `stamped` lists the milestones set. A status equal to the current state with a newer
    `updated_at` only refreshes the message; an event without `updated_at` cannot be ordered, so
    it is applied (with a warning) without moving the watermark or stamping milestones.
    """
    spec = spec_for(kind)
    trigger, target = _resolve(spec, status)
    at = _aware(updated_at)
    last = _aware(entity.updated_at)
    from_state = entity.state
    if at is not None and last is not None:
        if at < last:
            return _stale(spec, entity, target, at, last, trigger is not None)
        if at == last and target == from_state:
            return ApplyResult(kind, from_state, from_state, False, False, True, None, ())

    warning: str | None = None
    expected = trigger is not None
    if trigger is None:
        warning = (
            f"unknown {kind} status {status!r} recorded as reported; "
            f"known statuses: {', '.join(spec.table.states)}"
        )
    entered = from_state != target
    if not entered:
        pass
    elif from_state is None:
        entity.state = target
    elif trigger is not None and (from_state, trigger) in spec.edges:
        spec.machine.events[trigger].trigger(entity)
    else:
        entity.state = target
        expected = False
        if warning is None:
            allowed = ", ".join(spec.allowed.get(from_state, ())) or "none"
            warning = (
                f"unexpected {kind} transition {from_state} -> {target} reported by Dispatch; "
                f"applied anyway (expected from {from_state}: {allowed})"
            )

    message = reason or None
    changed = entered or message != entity.status_message
    entity.status_message = message
    stamped: tuple[str, ...] = ()
    if entered:
        stamped = _stamp(spec, entity, target, at)
    if at is None:
        note = f"{kind} event without updated_at applied unordered; no milestone stamped"
        warning = note if warning is None else f"{warning}; {note}"
    elif last is None or at > last:
        entity.updated_at = at
    return ApplyResult(
        kind,
        from_state,
        target,
        changed,
        False,
        expected,
        warning,
        stamped,
        follow_ups(kind, target) if entered else (),
    )


def allowed_targets(kind: str, state: str | None) -> list[str]:
    """States a strict request may move a `kind` record to from `state`.

    From `None` (a record Dispatch has never seen) these are the kind's initial states; from a
    state the table does not know (forced by a lenient report) nothing is allowed.
    """
    spec = spec_for(kind)
    if state is None:
        return list(spec.table.initial)
    return list(spec.allowed.get(state, ()))


def request_change(
    kind: str,
    entity: EntityState,
    target: str,
    *,
    at: datetime,
    reason: str | None = None,
) -> ApplyResult:
    """Validate and apply a change the CRM asks for, strictly; raise instead of guessing.

    Raises UnknownStatus for a target the kind does not have and TransitionRefused for a
    transition the table does not allow; on refusal `entity` is untouched. Requesting the
    current state is a no-op (only the message may change). Milestones are stamped with `at`;
    `entity.updated_at` is left alone: it orders Dispatch's events and must not be moved by the
    CRM's clock, or a genuine later Dispatch event could be judged stale.
    """
    spec = spec_for(kind)
    if target not in spec.states:
        raise UnknownStatus(kind, target, spec.table.states)
    from_state = entity.state
    message = reason or None
    if from_state == target:
        changed = message != entity.status_message
        entity.status_message = message
        return ApplyResult(kind, from_state, target, changed, False, True, None, ())
    allowed = allowed_targets(kind, from_state)
    if target not in allowed:
        raise TransitionRefused(kind, from_state, target, allowed)
    if from_state is None:
        entity.state = target
    else:
        spec.machine.events[spec.trigger_for[target]].trigger(entity)
    entity.status_message = message
    stamped = _stamp(spec, entity, target, _aware(at))
    return ApplyResult(kind, from_state, target, True, False, True, None, stamped, follow_ups(kind, target))


def transition_table(kind: str) -> list[tuple[str, str, str]]:
    """The kind's transitions as (trigger, source, dest) rows, in table order."""
    spec = spec_for(kind)
    return [
        (trigger, source, dest) for trigger, sources, dest in spec.table.transitions for source in sources
    ]


def event_table(kind: str) -> dict[str, str]:
    """Reported status string -> trigger for `kind` (a copy; aliases included)."""
    return dict(spec_for(kind).table.events)

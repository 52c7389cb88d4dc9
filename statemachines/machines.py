"""One `transitions` machine per entity kind, built once at import, plus the lookups derived
from the tables.

Why not a Machine per record: binding models makes `add_model` quadratic and building a Machine
per event is ~10x slower (see ARCHITECTURE.md, library notes). Instead each machine is built with
`model=None` and applied to a small `EntityState` holder through
`machine.events[trigger].trigger(holder)`. The machines carry no callbacks, so a trigger can only
change `holder.state`; milestones and messages are stamped by the policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transitions import Machine

from .errors import UnknownKind
from .tables import KINDS, TABLES, KindTable


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A kind's table plus its machine and the constant-time lookups the hot path needs."""

    table: KindTable
    machine: Machine
    dest: dict[str, str]
    """trigger -> destination state."""
    trigger_for: dict[str, str]
    """destination state -> trigger."""
    edges: frozenset[tuple[str, str]]
    """(source state, trigger) pairs the table allows."""
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """source state -> allowed destination states, in table order."""
    states: frozenset[str] = frozenset()


def _build(table: KindTable) -> KindSpec:
    dest: dict[str, str] = {}
    trigger_for: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    allowed: dict[str, list[str]] = {s: [] for s in table.states}
    for trigger, sources, target in table.transitions:
        if trigger in dest or target in trigger_for:
            raise ValueError(f"{table.kind}: one trigger per destination ({trigger} -> {target})")
        dest[trigger] = target
        trigger_for[target] = trigger
        for source in sources:
            edges.add((source, trigger))
            allowed[source].append(target)
    for status, trigger in table.events.items():
        if trigger not in dest:
            raise ValueError(f"{table.kind}: status {status!r} maps to unknown trigger {trigger}")
    machine = Machine(
        model=None,
        states=list(table.states),
        transitions=[
            {"trigger": t, "source": list(sources), "dest": d} for t, sources, d in table.transitions
        ],
        initial=None,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        name=table.kind,
    )
    return KindSpec(
        table=table,
        machine=machine,
        dest=dest,
        trigger_for=trigger_for,
        edges=frozenset(edges),
        allowed={s: tuple(targets) for s, targets in allowed.items()},
        states=frozenset(table.states),
    )


SPECS: dict[str, KindSpec] = {kind: _build(TABLES[kind]) for kind in KINDS}


def spec_for(kind: str) -> KindSpec:
    """The spec of `kind`; an unknown kind is a programming error, so it raises."""
    try:
        return SPECS[kind]
    except KeyError:
        raise UnknownKind(kind, KINDS) from None

"""Mermaid export of the machines, for the docs and the dashboard.

Uses `GraphMachine(graph_engine="mermaid")` (pure Python, no graphviz) on a throwaway model,
imported lazily and cached per kind, so importing the package or applying events never pays for
it. The diagram is drawn from the same tables as the live machines, so it cannot drift.
"""

from __future__ import annotations

from functools import cache

from .machines import spec_for


class _Throwaway:
    """GraphMachine needs a model to hold its graph; instances live only during export."""


@cache
def mermaid(kind: str) -> str:
    """Mermaid `stateDiagram-v2` text for `kind`; every initial state is drawn from `[*]`."""
    from transitions.extensions import GraphMachine

    table = spec_for(kind).table
    model = _Throwaway()
    GraphMachine(
        model=model,
        states=list(table.states),
        transitions=[
            {"trigger": t, "source": list(sources), "dest": d}
            for t, sources, d in table.transitions
            if sources
        ],
        initial=table.initial[0],
        auto_transitions=False,
        graph_engine="mermaid",
        title=kind,
        show_state_attributes=False,
    )
    text: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    extra = "".join(f"  [*] --> {state}\n" for state in table.initial[1:])
    return text.rstrip("\n") + "\n" + extra

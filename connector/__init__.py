"""The edges: every protocol the connector speaks with another system.

`connector` may import `statemachines` but never `sync`: the engine composes edges, not the other way round.
"""

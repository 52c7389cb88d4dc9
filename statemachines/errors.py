"""Errors raised by the state-machine domain.

Every error here describes a *decision* (a refused change, a status we do not know), never a
transient failure, so none of them is worth retrying: `retriable` is always False. The engine
writes `str(error)` to the sync log and the CRM error field, so messages say what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence


class StateMachineError(Exception):
    """Root of the domain hierarchy; catch this to handle every state-machine refusal."""

    retriable: bool = False


class UnknownKind(StateMachineError):
    """The caller named an entity kind that has no machine (a programming error)."""

    def __init__(self, kind: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.known = tuple(known)
        super().__init__(f"unknown entity kind {kind!r}; known kinds: {', '.join(self.known)}")


class UnknownStatus(StateMachineError):
    """A strict request named a status that the kind's machine does not have."""

    def __init__(self, kind: str, status: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.status = status
        self.known = tuple(known)
        super().__init__(f"{kind} has no status {status!r}; use one of: {', '.join(self.known)}")


class TransitionRefused(StateMachineError):
    """A strict request asked for a transition the kind's table does not allow.

    Raised before anything is sent to Dispatch, so the CRM user can fix the request.
    """

    def __init__(self, kind: str, from_state: str | None, to_state: str, allowed: Sequence[str]) -> None:
        self.kind = kind
        self.from_state = from_state
        self.to_state = to_state
        self.allowed = tuple(allowed)
        source = "(new record)" if from_state is None else from_state
        options = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(f"{kind} cannot go from {source} to {to_state}; allowed from {source}: {options}")

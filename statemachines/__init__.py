"""Pure-domain state machines for Dispatch Connect entities (job, appointment, offer, estimate,
invoice): the transition and event tables, milestone stamping, and the two policies - lenient for
what Dispatch reports, strict for what the CRM requests. No I/O; see docs/state-machines.md.
"""

from .diagram import mermaid
from .errors import StateMachineError, TransitionRefused, UnknownKind, UnknownStatus
from .policy import (
    allowed_targets,
    apply_reported,
    event_table,
    request_change,
    transition_table,
)
from .state import ApplyResult, EntityState
from .tables import KINDS, FollowUp, follow_ups

__all__ = [
    "KINDS",
    "ApplyResult",
    "EntityState",
    "FollowUp",
    "StateMachineError",
    "TransitionRefused",
    "UnknownKind",
    "UnknownStatus",
    "allowed_targets",
    "apply_reported",
    "event_table",
    "follow_ups",
    "mermaid",
    "request_change",
    "transition_table",
]

"""The per-record state holder and the result of applying a change to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .tables import FollowUp


class EntityState:
    """What the domain knows about one record: a tiny holder the shared machines act upon.

    `__slots__` keeps 100k of these cheap and stops `transitions` from decorating it. The engine
    loads it from and saves it to its own row; nothing here touches storage.
    `updated_at` is the Dispatch `updated_at` of the newest applied event: the ordering watermark
    that keeps late events from rolling state back.
    """

    __slots__ = ("milestones", "state", "status_message", "updated_at")

    def __init__(
        self,
        state: str | None = None,
        status_message: str | None = None,
        milestones: dict[str, datetime] | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        self.state = state
        self.status_message = status_message
        self.milestones: dict[str, datetime] = {} if milestones is None else milestones
        self.updated_at = updated_at

    def __repr__(self) -> str:
        return (
            f"EntityState(state={self.state!r}, status_message={self.status_message!r}, "
            f"milestones={self.milestones!r}, updated_at={self.updated_at!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntityState):
            return NotImplemented
        return (
            self.state == other.state
            and self.status_message == other.status_message
            and self.milestones == other.milestones
            and self.updated_at == other.updated_at
        )

    __hash__ = None  # type: ignore[assignment]  # mutable holder


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of one apply/request, for the sync log and the write-back.

    expected: False when the table has no such transition and the state was forced (lenient) or
    the status is unknown. stamped: milestone names set by this call. follow_ups: what entering
    `to_state` implies for other records (see `tables.FOLLOW_UPS`); empty unless state changed.
    """

    kind: str
    from_state: str | None
    to_state: str | None
    changed: bool
    stale: bool
    expected: bool
    warning: str | None
    stamped: tuple[str, ...]
    follow_ups: tuple[FollowUp, ...] = ()

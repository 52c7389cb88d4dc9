"""When a write-back is tried again, and when it was last tried (derived: the store needs no column for it).

A failing generation of rows gets `next_attempt_at = last attempt + backoff(attempts)` in one statement; the
dashboard reads the time of the last attempt back from those two columns instead of showing a failure at
the (future) time of the next try.
"""

from __future__ import annotations

from datetime import datetime, timedelta

BASE_S, CAP_S = 2.0, 600.0


def backoff(attempts: int, base_s: float = BASE_S, cap_s: float = CAP_S) -> timedelta:
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(0, attempts - 1)))


def last_attempt_at(
    status: str, attempts: int, next_attempt_at: datetime | None, flushed_at: datetime | None
) -> datetime | None:
    """The time of a row's last failed attempt, or None when it never failed (or was requeued since).

    A row that gave up carries it in `flushed_at` (rows that gave up before this was written have only
    their `next_attempt_at`, derived like a pending row's)."""
    if status == "failed" and flushed_at is not None:
        return flushed_at
    if attempts <= 0 or next_attempt_at is None:
        return None
    return next_attempt_at - backoff(attempts)

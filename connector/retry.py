"""The one retry policy every HTTP client of the connector uses (Dispatch Connect, Dispatch v3, ...).

What is retried is decided in one table: a connection error or a timeout, and the statuses in
`RETRY_STATUSES` (429 and 5xx). Backoff is exponential; an answer that says `Retry-After` is waited for as
long as it says (capped at a minute). The same request, the same bytes: a retry is indistinguishable from
the first attempt, so the caller's idempotency (a MessageId, an external-id lookup) holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import requests
from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type, stop_after_attempt

from connector.errors import TransientError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0


class Retryable(Exception):
    """Internal marker: the attempt failed in a way a retry can fix; `retry_after` is the server's wish."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def send_with_retries(
    send: Callable[[], requests.Response],
    *,
    endpoint: str,
    service: str,
    max_attempts: int,
    backoff_s: float,
    unavailable: type[TransientError],
) -> requests.Response:
    """Call `send` until it answers something not worth retrying; raise `unavailable` naming `service` and
    `endpoint` when every attempt failed. 4xx answers other than 429 are returned for the caller to judge."""

    def attempt() -> requests.Response:
        try:
            response = send()
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Retryable(f"{type(exc).__name__} talking to {endpoint}") from None
        if response.status_code in RETRY_STATUSES:
            raise Retryable(f"{endpoint} answered HTTP {response.status_code}", _retry_after(response))
        return response

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_S)
        return float(min(backoff_s * 2 ** (state.attempt_number - 1), backoff_s * 16))

    retrying = Retrying(
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=wait,
        retry=retry_if_exception_type(Retryable),
        before_sleep=lambda state: log.warning(
            "%s %s attempt %d failed (%s); retrying",
            service,
            endpoint,
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        reason = last.reason if isinstance(last, Retryable) else repr(last)
        raise unavailable(
            f"{service} {endpoint} still failing after {max_attempts} attempts: {reason}"
        ) from None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

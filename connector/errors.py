"""One exception hierarchy for every edge the connector talks to.

Each error says whether retrying can help (`retriable`) so the engine decides in one place what to do,
and carries the identifiers a support person needs. Messages never contain secrets.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of all errors raised by `connector`."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigurationError(ConnectorError):
    """A setting, credential or mapping is wrong; fix the configuration and restart."""


class TransientError(ConnectorError):
    """The other side is unavailable or throttling; the same call may succeed later."""

    retriable = True


class RemoteRejected(ConnectorError):
    """The other side understood the request and refused it; resending the same bytes will not help."""


class PushRejected(RemoteRejected):
    """A caller of a push channel (a webhook) did not prove who it is: answer 401, store nothing."""


class MalformedDelivery(ConnectorError):
    """A delivery (a polled message or a pushed body) cannot be read as its back end's format; the message
    says which part is wrong, so support can fix the sender or the translation and replay it."""


class LookupRefused(ConnectorError):
    """A look-up (match organizations or technicians, availability) was not sent: its inputs cannot give a
    meaningful answer (a malformed postal code, an end before the start, a duration of zero). The message
    names the input, what it holds and what is allowed."""


class FileUnavailable(RemoteRejected):
    """A file from the field cannot be had now: its token is unknown or expired, or it is larger than allowed.
    `token` names it (a file token is no secret: it only names the file). Retrying later may help (a file
    still being uploaded in the field), so the file queue keeps the row and tries again."""

    def __init__(self, message: str, *, token: str, reason: str) -> None:
        super().__init__(message)
        self.token = token
        self.reason = reason  # not_found | expired | too_large | bad_format

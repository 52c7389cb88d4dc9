"""The CRM gateway's HTTP plumbing: the session wrapper (timeout, call counts, the org's clock) and the
helpers that read a failed call (was the connection ever made, Salesforce's first error)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlparse

import requests


class GatewaySession(requests.Session):
    """Delegates to the injected session, adding a default timeout and counting calls by kind."""

    def __init__(self, inner: requests.Session, timeout_s: float) -> None:
        super().__init__()
        self.inner = inner
        self.timeout_s = timeout_s
        self.proxies = inner.proxies
        self.api_calls = 0
        self.login_calls = 0
        self.server_time: datetime | None = None
        self._counting = threading.Lock()  # the write-back flush calls from several threads

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout_s)
        path = urlparse(str(url)).path
        with self._counting:
            if "/services/data/" in path:
                self.api_calls += 1
            else:
                self.login_calls += 1
        response = self.inner.request(method, url, *args, **kwargs)
        self.server_time = server_time_of(response) or self.server_time
        return response


def server_time_of(response: Any) -> datetime | None:
    """The org's clock from the Date header (second resolution), for reasoning about SystemModstamp."""
    try:
        # A proxy may fold two Date headers into one value ("..., 18:28:58 GMT, Wed, ..."): take the first.
        first = re.split(r"(?<=GMT),\s*", response.headers["Date"])[0]
        parsed = parsedate_to_datetime(first)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps (cause, context, urllib3's `reason`, exceptions among its args),
    each once: requests and urllib3 bury the real cause several layers down."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        linked = (err.__cause__, err.__context__, getattr(err, "reason", None), *err.args)
        stack.extend(x for x in linked if isinstance(x, BaseException))


def refused(exc: requests.RequestException) -> bool:
    """True when the connection was never established, so the request cannot have run."""
    return any(
        isinstance(err, ConnectionRefusedError) or type(err).__name__ == "NewConnectionError"
        for err in exception_chain(exc)
    )


def first_error(content: Any) -> tuple[str | None, str]:
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        return first.get("errorCode"), str(first.get("message", ""))
    if isinstance(content, Mapping):
        return content.get("errorCode") or content.get("error"), str(content.get("message", ""))
    return None, str(content)[:200]

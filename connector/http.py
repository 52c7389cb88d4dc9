"""The HTTP session every back end's factory starts from: fresh, pooled for its threads, with the context's
hooks (metrics count calls on it) applied."""

from __future__ import annotations

from collections.abc import Sequence

import requests

from connector.ports import SessionHook


def hooked_session(
    system: str, hooks: Sequence[SessionHook], *, pool_size: int | None = None
) -> requests.Session:
    session = requests.Session()
    if pool_size is not None:  # as many kept-alive connections as the back end has sending threads
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    for hook in hooks:
        hook(session, system)
    return session

"""Small POSTs of the pull channel (`agent/out`, `agent/ack`) sent through a `requests.Session`'s own
connection pool, without the Session's per-call machinery.

A publish of 1,000 records comes back as ~1,100 ack events: 111 `agent/out` pages and one `agent/ack` per
message (the protocol's). Through `Session.post` each of these requests cost ~0.55 ms of this process's
CPU (thread CPU time, loopback): the environment's proxy and CA settings read again on every call (~85 us,
a scan of `os.environ`), the request prepared with the session's cookies merged (~95 us) and the response
built with a cookie jar; urllib3 itself sends it for ~0.17 ms. With acks on, those ~1,200 requests were a
third of the engine's CPU while the acks came in (bench/publisher.py `acks_wall_s`).

`LeanPoster.post` sends through the same session: its adapter's urllib3 pool (the same keep-alive
connections and TLS settings: `verify`, `cert`, `REQUESTS_CA_BUNDLE`), its response hooks (the daemon's
call metrics) called with a `requests.Response`, and `requests`' exceptions (`ConnectionError`,
`Timeout`), so the retry policy (connector.retry) reads the answer as before. The session's settings and
the environment are read once per URL and session configuration (a daemon's environment does not change
while it runs). Whatever the short path does not cover goes through `Session.post` as before: a proxy for
the URL, a mounted adapter of another kind, session auth or cookies, a Session subclass that overrides
how it sends.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import requests
from requests import hooks as requests_hooks
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util import Timeout

_SENDING = ("post", "request", "send", "prepare_request", "merge_environment_settings")


class _Route:
    """How a URL is reached: its adapter, TLS settings and path; a request object carrying the URL (the
    adapter picks its pool by it)."""

    def __init__(self, url: str, adapter: HTTPAdapter, verify: Any, cert: Any) -> None:
        self.adapter = adapter
        self.verify = verify
        self.cert = cert
        self.request = requests.Request("POST", url).prepare()
        self.path = self.request.path_url


class LeanPoster:
    """POSTs small bodies through `session`; thread-safe as far as the session's pool is."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._routes: dict[tuple[Any, ...], _Route | None] = {}

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> requests.Response:
        route = self._route(url)
        if route is None:
            return self.session.post(url, data=body, headers=headers, timeout=timeout)
        started = time.perf_counter()
        pool: HTTPConnectionPool = route.adapter.get_connection_with_tls_context(  # type: ignore[assignment]
            route.request, route.verify, None, route.cert
        )
        try:
            raw = pool.urlopen(
                "POST",
                route.path,
                body=body,
                headers=_merged(self.session.headers, headers),
                redirect=False,
                assert_same_host=False,
                preload_content=True,
                decode_content=True,
                retries=False,
                timeout=Timeout(connect=timeout, read=timeout),
            )
        except NewConnectionError as exc:  # refused, unreachable (urllib3 files it under connect timeouts)
            raise requests.ConnectionError(str(exc)) from exc
        except ConnectTimeoutError as exc:
            raise requests.ConnectTimeout(str(exc)) from exc
        except ReadTimeoutError as exc:
            raise requests.ReadTimeout(str(exc)) from exc
        except Urllib3SSLError as exc:
            raise requests.exceptions.SSLError(str(exc)) from exc
        except (HTTPError, OSError) as exc:  # reset, dropped, a kept-alive connection the server closed
            raise requests.ConnectionError(str(exc)) from exc
        response = _response(url, body, headers, raw, time.perf_counter() - started)
        dispatch: Any = requests_hooks.dispatch_hook  # untyped in requests
        hooked = dispatch("response", self.session.hooks, response)
        return hooked if isinstance(hooked, requests.Response) else response

    def _route(self, url: str) -> _Route | None:
        s = self.session
        adapters = tuple((prefix, id(adapter)) for prefix, adapter in s.adapters.items())
        key = (url, s.trust_env, str(s.verify), str(s.cert), tuple(sorted(s.proxies.items())), adapters)
        if key not in self._routes:
            self._routes[key] = self._plan(url)
        return self._routes[key]

    def _plan(self, url: str) -> _Route | None:
        s = self.session
        if any(getattr(type(s), name) is not getattr(requests.Session, name) for name in _SENDING):
            return None  # a session that sends its own way (a wrapper, a test's capture) keeps its way
        if s.auth is not None or len(s.cookies):
            return None
        settings = s.merge_environment_settings(url, {}, None, None, None)
        if select_proxy(url, settings["proxies"]):
            return None
        adapter = s.get_adapter(url)
        if type(adapter) is not HTTPAdapter or not hasattr(adapter, "get_connection_with_tls_context"):
            return None  # another adapter sends its own way; requests < 2.32.2 has no pool lookup by TLS
        return _Route(url, adapter, settings["verify"], settings["cert"])


def _merged(defaults: Any, headers: dict[str, str]) -> dict[str, str]:
    """The session's default headers (User-Agent, Accept-Encoding ...) under the call's, as requests merges
    them (a default set to None is left out)."""
    merged = {key: value for key, value in defaults.items() if value is not None}
    merged.update(headers)
    return merged


def _response(
    url: str, body: bytes, headers: dict[str, str], raw: Any, elapsed_s: float
) -> requests.Response:
    """The `requests.Response` a hook or a caller reads: status, headers, body, URL, encoding, request."""
    response = requests.Response()
    response.status_code = raw.status
    response.reason = raw.reason
    response.headers = CaseInsensitiveDict(raw.headers)
    response._content = raw.data
    response.url = url
    response.encoding = get_encoding_from_headers(response.headers)
    response.elapsed = timedelta(seconds=elapsed_s)
    request = requests.PreparedRequest()
    request.method, request.url, request.body = "POST", url, body
    request.headers = CaseInsensitiveDict(headers)
    response.request = request
    return response

"""A threaded WSGI server on loopback, with per-endpoint fault injection, shared by both emulators.

Werkzeug's threaded server speaks HTTP/1.1 keep-alive and TLS, which is all an emulator needs; running it in a
daemon thread lets tests start an emulator in-process on port 0 and talk to it over a real socket.
"""

from __future__ import annotations

import contextlib
import io
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class FaultPlan:
    """What to do wrong on one endpoint. Rates are probabilities in [0, 1]."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_s: float = 0.0
    drop_rate: float = 0.0
    throttle_rate: float = 0.0
    """Answer 429 (the caller sends `Retry-After: retry_after_s`); rolled after a drop, before an error."""
    retry_after_s: int = 1


@dataclass
class Faults:
    """Fault plans by endpoint name ('*' applies to every endpoint without its own plan).

    A seeded random source keeps a faulty run reproducible.
    """

    plans: dict[str, FaultPlan] = field(default_factory=dict)
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set(self, endpoint: str = "*", **plan: Any) -> None:
        self.plans[endpoint] = FaultPlan(**plan)

    def clear(self) -> None:
        self.plans.clear()

    def plan_for(self, endpoint: str) -> FaultPlan | None:
        return self.plans.get(endpoint) or self.plans.get("*")

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate


class DroppedConnection(Exception):
    """Raised inside a handler to make the server close the socket without answering."""


def drop_connection(environ: dict[str, Any]) -> None:
    """Close the client's socket mid-request, as a crashed proxy would."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise DroppedConnection()


def apply_faults(faults: Faults, endpoint: str, environ: dict[str, Any]) -> int | None:
    """Sleep, drop or pick an error status for this request; return the status to fail with, if any."""
    plan = faults.plan_for(endpoint)
    if plan is None:
        return None
    if plan.latency_s > 0:
        time.sleep(plan.latency_s)
    if faults.roll(plan.drop_rate):
        drop_connection(environ)
    if faults.roll(plan.throttle_rate):  # a zero rate draws nothing: seeded runs without it are unchanged
        return 429
    if faults.roll(plan.error_rate):
        return plan.error_status
    return None


class _QuietHandler(WSGIRequestHandler):
    """Keeps the emulators from printing one line per request, and keeps connections alive.

    Werkzeug's development server closes the connection after every response, and then drains the socket
    for 10 ms (which, on a kept-alive connection, would swallow the client's next request). Salesforce and
    Dispatch keep connections alive, and a client that paid a new TCP/TLS connection per call would be
    measured slower than it is. So: a response with a Content-Length does not send `Connection: close`;
    `_DropSafeApp` reads the request body to its end before answering; `_KeepAliveBody` hides the socket
    from Werkzeug's drain once the response is written; Nagle is off, so a small response is not held back
    for a delayed ACK."""

    disable_nagle_algorithm = True

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[HANDLER_KEY] = self
        self.keep_alive = True  # until the app fails: Werkzeug's error page is followed by its socket drain
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        lowered = keyword.lower()
        if lowered == "content-length":
            self._sized = True
        elif lowered == "connection" and value.lower() == "close" and self._keep_open():
            return  # a sized response ends where its Content-Length says: the connection stays open
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        self._sized = False
        super().end_headers()

    def _keep_open(self) -> bool:
        return getattr(self, "_sized", False) and getattr(self, "keep_alive", False)

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":
            super().log(type, message, *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def send_response(self, code: int, message: str | None = None) -> None:
        # Without the server's own Date header: an emulator with an injected clock sends its own.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())


class _DropSafeApp:
    """Turns DroppedConnection into a silent close instead of a 500 page."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = _content_length(environ)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # read to its end: the next request starts right after it
        handler = environ[HANDLER_KEY]
        try:
            result = self.app(environ, start_response)
        except DroppedConnection:
            environ["werkzeug.socket"].close()
            return []
        except Exception:
            handler.keep_alive = False
            raise
        return _KeepAliveBody(result, handler)


HANDLER_KEY = "sandbox.handler"


def _content_length(environ: dict[str, Any]) -> int:
    if environ.get("wsgi.input_terminated"):  # chunked: Werkzeug's stream ends at the last chunk
        return -1
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


class _KeepAliveBody:
    """The response body; once it is written, Werkzeug's socket drain reads an empty stream instead of the
    client's next request, and the real stream is back before the next request is read."""

    def __init__(self, result: Iterable[bytes], handler: Any) -> None:
        self.result, self.handler = result, handler
        self.rfile = handler.rfile

    def __iter__(self) -> Iterator[bytes]:
        yield from self.result
        self.handler.rfile = io.BytesIO()

    def close(self) -> None:
        self.handler.rfile = self.rfile
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


class EmulatorServer:
    """Runs a WSGI app on 127.0.0.1 in a background thread until `stop()`."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            _DropSafeApp(app),
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=ssl_context,
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]  # ThreadingMixIn attribute
        self._thread: threading.Thread | None = None
        self.scheme = "https" if ssl_context else "http"

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> str:
        # A short poll interval makes stop() quick (serve_forever checks for shutdown between polls).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self.base_url

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

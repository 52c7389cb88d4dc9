"""Push channels (webhooks) on the daemon's HTTP server: the channel's own credential, store, then 2xx.

A back end that calls us (Dispatch1's webhooks, for one) exposes `PushChannel`s (connector.ports). Each is
served as one `POST` route at the channel's `path`. The handler is the pull channel's "store first, then
settle" rule in HTTP form: the caller is answered 2xx only after every delivery of its request is committed to
the inbox, so a caller that sees anything else sends again, and the inbox (keyed by message id) turns the
resend into a counted redelivery with no second effect.

Paths. Every push path starts with `/hooks/` (PUSH_PREFIX), followed by one or more segments of letters,
digits, `.`, `_`, `~`, `-`, none starting with `.` (so no `..`, no empty segment, no trailing slash, no `{`).
The dashboard serves nothing under `/hooks/` (mounting refuses to start if any other route is there), so a
channel can never shadow a dashboard page, and the dashboard token guard can leave that prefix alone: a
channel authenticates its callers itself, and the dashboard token is neither required nor accepted there.
Two channels on one path is a start-up error naming both back ends.

Answers, in the order they are decided:

- 413 `{"error": ...}`: the body is over `max_body_bytes` (`PUSH_MAX_BODY_BYTES`). `Content-Length` is checked
  first; a chunked body is counted while it is read and cut off at the limit. Nothing is stored.
- 401: the channel raised `PushRejected` (missing or wrong credential). Nothing is stored; an error row in the
  sync log names the back end and the path, never the body or the credential.
- 400: the channel raised `MalformedDelivery`. Nothing is stored; an error row carries the message and the
  body's first 200 characters (`connector.text.storable`), so support can fix the sender.
- 500: the channel raised anything else (a bug in it): nothing stored, the traceback in the daemon log.
- 503 with `Retry-After: 5`: storing failed (the store is down or locked); nothing is acknowledged, the caller
  retries.
- 200 `{"stored": n, "duplicates": m}`: every delivery of the request committed in one transaction.

Ids. The inbox key is the message id alone, so a delivery's id must be unique across the store: Dispatch
Connect's agent/out ids are used as they are; every other channel prefixes its ids with its system name
(`dispatch1:<event id>`), so two back ends can never collide.

`accept` gets the request's headers as Starlette's case-insensitive mapping and the raw body. It and the store
are synchronous code, so both run in the threadpool, never on the event loop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from connector.errors import MalformedDelivery, PushRejected
from connector.ports import Delivery, PushChannel
from connector.text import storable
from sync.context import SyncContext
from sync.errors import SettingsError
from sync.inbound.inbox import store_delivery
from sync.store.db import session_scope
from sync.store.synclog import write_log

log = logging.getLogger("dispatch_connector.push")
PUSH_PREFIX = "/hooks/"
# A segment may not start with '.', so neither `.` nor `..` can appear as one.
_PATH = re.compile(r"^/hooks(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$")
EXCERPT_CHARS = 200
RETRY_AFTER_S = "5"


class PushBodyTooLarge(Exception):
    """The request body is over the limit (raised while reading it, so the rest is never read)."""


def check_push_path(path: str) -> None:
    """Refuse a path outside the push prefix rule (see the module docstring)."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise SettingsError(
            f"push channel path {path!r} is not allowed: it must start with {PUSH_PREFIX} and go on with "
            "segments of letters, digits, '.', '_', '~' or '-', none starting with '.' "
            "(e.g. /hooks/dispatch1)"
        )


def mount_push_channels(app: FastAPI, ctx: SyncContext, *, max_body_bytes: int) -> list[str]:
    """Add a POST route for every push channel of every configured back end; return their paths.

    Every path is checked before any route is added, so a bad configuration adds nothing."""
    taken = [p for r in app.routes if (p := _route_path(r)) == "/hooks" or p.startswith(PUSH_PREFIX)]
    if taken:
        raise SettingsError(
            f"routes already under {PUSH_PREFIX}: {', '.join(sorted(taken))}; "
            "that prefix is for push channels only"
        )
    owners: dict[str, str] = {}
    channels: list[tuple[str, PushChannel]] = []
    for name, backend in ctx.all_backends().items():
        for channel in backend.push_channels:
            path = channel.path
            check_push_path(path)
            if path in owners:
                raise SettingsError(
                    f"push channel path {path} is served by two back ends, {owners[path]!r} and {name!r}; "
                    "give one of them another path"
                )
            owners[path] = name
            channels.append((name, channel))
    for name, channel in channels:
        app.add_api_route(
            channel.path,
            _handler(ctx, name, channel, max_body_bytes),
            methods=["POST"],
            include_in_schema=False,
            name=f"push:{name}:{channel.path}",
        )
    return [channel.path for _, channel in channels]


def _route_path(route: BaseRoute) -> str:
    return str(getattr(route, "path", ""))


def _handler(
    ctx: SyncContext, system: str, channel: PushChannel, max_body_bytes: int
) -> Callable[[Request], Awaitable[Response]]:
    path = channel.path

    async def receive_push(request: Request) -> Response:
        remote = request.client.host if request.client else None
        try:
            body = await read_limited(request, max_body_bytes)
        except PushBodyTooLarge:
            message = f"push to {path} refused: body over {max_body_bytes} bytes (PUSH_MAX_BODY_BYTES)"
            await run_in_threadpool(_log_row, ctx, system, message, {"path": path, "remote": remote})
            return _error(413, f"body larger than {max_body_bytes} bytes")
        try:
            deliveries = await run_in_threadpool(channel.accept, request.headers, body)
        except PushRejected as exc:
            message = f"push to {path} rejected (401): {exc}"
            await run_in_threadpool(_log_row, ctx, system, message, {"path": path, "remote": remote})
            return _error(401, "not authenticated")
        except MalformedDelivery as exc:
            details = {"path": path, "remote": remote, "excerpt": excerpt(body)}
            await run_in_threadpool(_log_row, ctx, system, f"push to {path} malformed (400): {exc}", details)
            return _error(400, str(exc))
        except Exception as exc:
            log.exception("push channel %s of %s failed on a request", path, system)
            message = f"push to {path} failed (500): {type(exc).__name__} in the channel; see the daemon log"
            await run_in_threadpool(_log_row, ctx, system, message, {"path": path, "remote": remote})
            return _error(500, "the push channel failed; try again later")
        try:
            stored, duplicates = await run_in_threadpool(store_all, ctx, deliveries)
        except Exception as exc:
            cause = str(getattr(exc, "orig", None) or exc)[:200]  # the driver's words, not the SQL parameters
            log.error(
                "push to %s of %s not stored, answered 503: %s: %s", path, system, type(exc).__name__, cause
            )
            response = _error(503, "could not store the delivery; retry later")
            response.headers["Retry-After"] = RETRY_AFTER_S
            return response
        return JSONResponse({"stored": stored, "duplicates": duplicates})

    return receive_push


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or PushBodyTooLarge as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise PushBodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PushBodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def store_all(ctx: SyncContext, deliveries: Sequence[Delivery]) -> tuple[int, int]:
    """Store every delivery of one request in one transaction: (new, redelivered)."""
    stored = duplicates = 0
    with session_scope(ctx.engine) as session:
        for delivery in deliveries:
            if store_delivery(session, delivery):
                stored += 1
            else:
                duplicates += 1
            session.flush()  # a later delivery of this request with the same id finds this row
    return stored, duplicates


def excerpt(body: bytes) -> str:
    """The first characters of a body, safe to store and show (invalid UTF-8 becomes visible escapes)."""
    text: str = storable(body[: EXCERPT_CHARS * 4].decode("utf-8", "backslashreplace")[:EXCERPT_CHARS])
    return text


def _log_row(ctx: SyncContext, system: str, message: str, details: Mapping[str, Any]) -> None:
    """One error row in the sync log; if the store is down, the daemon log line is all there is."""
    log.warning("%s (back end %s)", message, system)
    try:
        with session_scope(ctx.engine) as session:
            write_log(session, message, level="error", direction="in", entity=system, details=dict(details))
    except Exception as exc:
        log.error("could not write the sync-log row for a push to %s: %s", system, type(exc).__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)

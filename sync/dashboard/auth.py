"""The dashboard's optional access token: `?token=` once (then a cookie), or `Authorization: Bearer`.

The cookie holds an HMAC derived from the token, not the token, so a leaked cookie jar does not leak the
setting. Every comparison is between fixed-length digests in constant time, so neither the token's content nor
its length can be probed by timing. The token is never logged or rendered.

Push channels (webhooks, everything under `/hooks/`, see sync.inbound.push) are outside the guard: each
authenticates its callers with its own credential, and the dashboard token is neither required nor accepted
there (a `?token=` on a push path signs nobody in). The dashboard serves nothing under that prefix.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse

from sync.inbound.push import PUSH_PREFIX

COOKIE_NAME = "dc_dashboard"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Path prefixes the guard leaves alone because they authenticate themselves (push channels).
OPEN_PREFIXES = (PUSH_PREFIX,)
# Paths scraped by machines: a good ?token= is served directly instead of redirected to a clean URL.
NO_REDIRECT_PATHS = frozenset({"/metrics"})
UNAUTHORIZED = (
    "401 Unauthorized: this dashboard requires its access token (the DASHBOARD_TOKEN setting).\n"
    "Open any page once with ?token=<token> (a cookie then keeps you signed in), "
    "or send the header 'Authorization: Bearer <token>'.\n"
)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class TokenGuard:
    def __init__(self, token: str) -> None:
        self._token_digest = _digest(token)
        self._cookie = hmac.new(token.encode(), b"dispatch-connector dashboard session", "sha256").hexdigest()

    def token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(_digest(candidate), self._token_digest)

    def cookie_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(_digest(candidate), _digest(self._cookie))

    def header_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def sign_in(self, request: Request, call_next_response: Response | None) -> Response:
        """After a good ?token=: set the cookie; for pages, redirect to the URL without the token."""
        if call_next_response is not None:
            response = call_next_response
        else:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            url = request.url.path + (f"?{urlencode(params)}" if params else "")
            response = RedirectResponse(url, status_code=303)
        response.set_cookie(COOKIE_NAME, self._cookie, httponly=True, samesite="strict", path="/")
        return response


def install_token_guard(app: FastAPI, token: str) -> None:
    guard = TokenGuard(token)

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if (
            path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or guard.header_ok(request)
            or guard.cookie_ok(request.cookies.get(COOKIE_NAME))
        ):
            return await call_next(request)
        if guard.token_ok(request.query_params.get("token")):
            if path in NO_REDIRECT_PATHS or request.method != "GET":
                return guard.sign_in(request, await call_next(request))
            return guard.sign_in(request, None)
        return PlainTextResponse(
            UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="dispatch-connector"'}
        )

"""Bearer tokens of the Dispatch v3 emulator: client-credentials grants that expire on the injected clock.

A test or a demo makes the client meet an expired token without waiting out three hours: a short TTL
(`POST /control/token_ttl`) for the tokens issued from then on, and `expire_tokens` for those already out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from typing import Any


class TokenBook:
    """Issued tokens and when each was issued and expires. Thread-safe."""

    def __init__(self, client_id: str, client_secret: str, clock: Callable[[], float], ttl_s: float) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self.ttl_s = float(ttl_s)
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}  # token -> (issued, expires)

    def credentials_match(self, client_id: Any, client_secret: Any) -> bool:
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            return False
        same_id = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        return hmac.compare_digest(client_secret.encode(), self._client_secret.encode()) and same_id

    def issue(self) -> dict[str, Any]:
        """A new token, in the token endpoint's answer shape."""
        now = self._clock()
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (now, now + self.ttl_s)
            ttl = self.ttl_s
        expires_in: float | int = int(ttl) if ttl.is_integer() else ttl
        return {"access_token": token, "token_type": "bearer", "expires_in": expires_in}

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            entry = self._tokens.get(token)
        return entry is not None and self._clock() < entry[1]

    def set_ttl(self, seconds: float) -> None:
        """The lifetime of tokens issued from now on (issued tokens keep theirs)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("seconds must be a number >= 0")
        with self._lock:
            self.ttl_s = float(seconds)

    def expire_all(self) -> int:
        """Expire every issued token (as a revocation would); how many were still valid."""
        now = self._clock()
        with self._lock:
            live = sum(1 for _, expires in self._tokens.values() if expires > now)
            self._tokens.clear()
        return live

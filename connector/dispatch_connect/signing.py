"""HMAC request signing for Dispatch Connect.

Dispatch hands out the secret as a hex string; the key is its decoded bytes and the message is exactly the
body bytes on the wire (after gzip, when the body is compressed). Nothing else (URL, method, time) is signed,
so whoever signs must sign the very bytes it sends, never a re-serialisation.
"""

from __future__ import annotations

import hashlib
import hmac

from connector.errors import ConfigurationError


def _key(secret_hex: str) -> bytes:
    try:
        return bytes.fromhex(secret_hex.strip())
    except ValueError:
        # The message names the problem, never the value: the value is a secret.
        raise ConfigurationError("The Dispatch secret is not a hex string (check DISPATCH_SECRET)") from None


def sign(secret_hex: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `body` keyed with the hex-decoded secret."""
    return hmac.new(_key(secret_hex), body, hashlib.sha256).hexdigest()


def verify(secret_hex: str, body: bytes, signature: str | None) -> bool:
    """Constant-time check of a received signature; a missing or non-ASCII signature is simply wrong."""
    if not signature:
        return False
    try:
        given = signature.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(sign(secret_hex, body).encode("ascii"), given)

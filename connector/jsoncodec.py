"""JSON on the hot paths: request bodies, Salesforce answers and the store's JSON columns, through orjson.

The standard library's encoder and decoder were a fifth of a publish cycle's CPU (a 1,000-record change set
is encoded for `agent/in`, decoded from the SOQL answer, and written to the store as snapshots, outbox
payloads and write-back rows); orjson does the same work several times faster. Its output is compact JSON
in UTF-8 (non-ASCII characters are not escaped): equally valid, and what is signed is whatever is sent.

A value orjson refuses (an integer beyond 64 bits, a non-string dict key, a lone surrogate, in a string or
as a \\uXXXX escape) falls back to the standard library, so whatever encoded and decoded before still does.
Not used for the relevant-field hash: the stored hashes were made with the standard library's exact bytes
(`connector.mapping`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, ready for a request body."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # ASCII-escaped, as before: a lone surrogate (which UTF-8 cannot carry) becomes a \\uXXXX escape
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def dumps_text(value: Any) -> str:
    """Compact JSON as text (what SQLAlchemy's JSON columns store)."""
    return dumps(value).decode("utf-8")


def loads(data: bytes | bytearray | str) -> Any:
    """Decode JSON; raises ValueError on malformed input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)

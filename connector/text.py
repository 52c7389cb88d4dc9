"""Making text from the outside world safe to store, without losing what it said."""

from __future__ import annotations

from typing import Any


def storable(value: Any) -> Any:
    """Text the databases accept: lone surrogates (invalid UTF-8 from the wire) become visible escapes.

    Deterministic, so a redelivered message maps to the same inbox row; nothing else is changed."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value

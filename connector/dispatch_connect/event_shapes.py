"""The attribute types `agent/out` events are expected to have, and the lenient typing that enforces them.

Dispatch's payloads are JSON written by another team: a text attribute may arrive as a number, an object
where a string belongs, or text that is not valid UTF-8. The translation (translate.py) reads a normalised
copy, so a wrong-typed attribute is dropped with a warning instead of killing the whole message; the raw
payload stays untouched in the inbox row for support and replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.text import storable

TEXT_ATTRIBUTES = frozenset(
    {
        "external_id",
        "status",
        "status_message",
        "updated_at",
        "start_time",
        "end_time",
        "description",
        "name",
        "message",
        "msg_id",
        "model",
        "data_type",
        "ack_message",
        "action",
        "title",
        "result",
        "file_token",
        "deleted_at",
        "external_appointment_id",
    }
)
NUMBER_ATTRIBUTES = frozenset({"id", "job_id", "rating", "account_rating", "billing_document_id"})
NESTED_ATTRIBUTES = frozenset({"job", "billing_document", "amount", "data", "payload", "err", "customer"})


def normalize_event(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Lenient typing of what Dispatch sent: text attributes become text, a value of the wrong shape is
    dropped (and reported), nested objects are normalised too; strings are made storable. The raw payload
    stays untouched in the inbox."""
    clean: dict[str, Any] = storable(dict(data))
    problems: list[str] = []
    for key, value in list(clean.items()):
        if key in NESTED_ATTRIBUTES and value is not None:
            if isinstance(value, Mapping):
                clean[key], inner = normalize_event(value)
                problems.extend(f"{key}.{p}" for p in inner)
            else:
                problems.append(f"{key} is a {type(value).__name__}, not an object")
                clean[key] = None
        elif key in TEXT_ATTRIBUTES | NUMBER_ATTRIBUTES and isinstance(value, dict | list):
            problems.append(f"{key} is a {type(value).__name__}")
            clean[key] = None
        elif key in TEXT_ATTRIBUTES and isinstance(value, int | float | bool):
            clean[key] = str(value)
    if not isinstance(clean.get("external_ids"), list | type(None)):
        problems.append("external_ids is not a list")
        clean["external_ids"] = None
    return clean, problems

"""File bodies (`blob` values) downloaded and base64-encoded before the outbox commit.

Why apart from build_records: building records runs for every changed row and must stay pure and fast; a
download is I/O that can fail or be too big, and then only that record's change is refused (the caller
reports it like any other refusal), nothing else of the cycle. A retriable failure (Salesforce down) is not a
refusal: it propagates, so the cycle is retried rather than the change dropped. The markers are built by
connector.mapping_values (`{"$blob": <ContentVersion id>, "max_bytes", "at", "field"}`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, MutableMapping, MutableSequence
from typing import Any

from connector.errors import ConnectorError
from connector.mapping_values import BLOB_MARKER

Fetch = Callable[[str], bytes]


class BlobRefused(ConnectorError):
    """A file body could not be sent: its download failed or it is over its `max_bytes`."""


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and BLOB_MARKER in value


def resolve_blobs(records: list[dict[str, Any]], fetch: Fetch) -> int:
    """Replace every file marker of these built records by the file's base64 text; return how many.

    The same ContentVersion named twice is downloaded once. Raises BlobRefused naming the file's id, the
    field it came from and the record key it was for."""
    bodies: dict[str, str] = {}
    count = 0
    for holder, key, marker in _markers(records):
        version_id = str(marker[BLOB_MARKER])
        if version_id not in bodies:
            bodies[version_id] = _download(fetch, marker)
        holder[key] = bodies[version_id]
        count += 1
    return count


def _download(fetch: Fetch, marker: dict[str, Any]) -> str:
    version_id, limit = str(marker[BLOB_MARKER]), int(marker["max_bytes"])
    where = f"file {version_id} (from {marker['field']}) for {marker['at']}"
    try:
        body = fetch(version_id)
    except ConnectorError as exc:
        if exc.retriable:
            # An outage is not the record's fault: the cycle stops before its commit, its watermark stays,
            # and the next cycle downloads again (a refusal would hold the change until the next edit).
            raise
        raise BlobRefused(f"cannot download {where}: {exc}") from None
    if len(body) > limit:
        raise BlobRefused(f"{where} is {len(body)} bytes, over its max_bytes of {limit}")
    return base64.b64encode(body).decode("ascii")


Slot = tuple[MutableMapping[str, Any] | MutableSequence[Any], Any, dict[str, Any]]


def _markers(records: list[dict[str, Any]]) -> Iterator[Slot]:
    for built in records:
        if is_marker(built.get("attachment")):
            yield built, "attachment", built["attachment"]
        yield from _walk(built["record"])


def _walk(node: Any) -> Iterator[Slot]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if is_marker(value):
            yield node, key, value
        elif isinstance(value, dict | list):
            yield from _walk(value)

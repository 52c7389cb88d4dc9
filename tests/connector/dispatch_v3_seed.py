"""The JSON examples of the Job Offer -> Work Order migration guide, read from its text.

`tests/data/dispatch-v3/job-offer-migration-guide.md` is a byte-for-byte copy of
`../shared/seeds/001_d9344ee5b2303f93.txt`, so the tests run from a clone alone. The examples are taken from
the guide's text rather than retyped, so a test compares against what the guide says, duplicate keys
included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GUIDE = Path(__file__).resolve().parents[1] / "data" / "dispatch-v3" / "job-offer-migration-guide.md"
_BLOCK = re.compile(r"```json\n(.*?)\n```", re.DOTALL)


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def json_block_after(marker: str, text: str | None = None) -> str:
    """The first ```json block after the line holding `marker` (e.g. "> Old Job Offer")."""
    text = guide_text() if text is None else text
    start = text.index(marker)
    found = _BLOCK.search(text, start)
    assert found is not None, f"no json block after {marker!r}"
    return found.group(1)


def load(marker: str) -> dict[str, Any]:
    loaded = json.loads(json_block_after(marker))
    assert isinstance(loaded, dict)
    return loaded


def duplicate_keys(block: str) -> list[str]:
    """Keys written twice in one object of `block` (json.loads keeps the last silently)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        found.extend(key for index, key in enumerate(keys) if key in keys[:index])
        return dict(items)

    json.loads(block, object_pairs_hook=pairs)
    return found


def work_order_document() -> dict[str, Any]:
    """The example under "# The Work Order Document"."""
    return load("# The Work Order Document")


def old_job_offer() -> dict[str, Any]:
    return load("> Old Job Offer")


def new_work_order() -> dict[str, Any]:
    return load("> New Work Order")

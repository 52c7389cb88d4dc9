"""The list endpoints' filters and paging: `GET /v3/jobs` and `GET /v3/appointments`.

Filters: `updated_since` (ISO 8601, inclusive), `status` (comma-separated), `external_id` (jobs) and `job_id`
(appointments), both comma-separated; paging `limit` (1..100, default 100) and `offset`; order (`updated_at`,
`id`). A filter meant for the other list is a 400, so a client that sends it learns of its mistake.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.sandbox.dispatch_v3.store import Record, iso, parse_iso

MAX_LIMIT = 100
ONLY_FOR = {"external_id": "jobs", "job_id": "appointments"}


class QueryError(ValueError):
    """A list request the API answers with 400."""


@dataclass(frozen=True)
class ListQuery:
    since: str | None = None
    """`updated_since` as stored times are written (whole seconds, rounded up: the filter stays inclusive)."""
    statuses: frozenset[str] | None = None
    external_ids: frozenset[str] | None = None
    job_ids: frozenset[int] | None = None
    limit: int = MAX_LIMIT
    offset: int = 0


def parse_query(args: Mapping[str, str], kind: str) -> ListQuery:
    """The filters of a `kind` ("jobs" or "appointments") list request; QueryError when one is malformed."""
    for name, owner in ONLY_FOR.items():
        if name in args and owner != kind:
            raise QueryError(f"{name} filters {owner} only")
    since = None
    if "updated_since" in args:
        try:
            since = iso(math.ceil(parse_iso(args["updated_since"])))
        except ValueError as exc:
            raise QueryError("updated_since must be an ISO 8601 time") from exc
    job_ids = None
    if "job_id" in args:
        try:
            job_ids = frozenset(int(x) for x in _split(args["job_id"]))
        except ValueError as exc:
            raise QueryError("job_id must be comma-separated integers") from exc
    return ListQuery(
        since=since,
        statuses=frozenset(_split(args["status"])) if "status" in args else None,
        external_ids=frozenset(_split(args["external_id"])) if "external_id" in args else None,
        job_ids=job_ids,
        limit=_integer(args, "limit", MAX_LIMIT, 1, MAX_LIMIT),
        offset=_integer(args, "offset", 0, 0, None),
    )


def page(records: Iterable[Record], query: ListQuery) -> dict[str, Any]:
    """`{"data", "offset", "limit", "total", "next_offset"}` over the records that pass the filters."""
    kept = sorted((r for r in records if _matches(r, query)), key=lambda r: (r["updated_at"], r["id"]))
    data = kept[query.offset : query.offset + query.limit]
    end = query.offset + len(data)
    return {
        "data": data,
        "offset": query.offset,
        "limit": query.limit,
        "total": len(kept),
        "next_offset": end if end < len(kept) else None,
    }


def _matches(record: Record, query: ListQuery) -> bool:
    if query.since is not None and record["updated_at"] < query.since:
        return False
    if query.statuses is not None and record["status"] not in query.statuses:
        return False
    if query.external_ids is not None and not query.external_ids.intersection(record["external_ids"]):
        return False
    return query.job_ids is None or record["job_id"] in query.job_ids


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _integer(args: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    if name not in args:
        return default
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        value = int(args[name])
    except ValueError as exc:
        raise QueryError(f"{name} must be an integer {bounds}") from exc
    if value < low or (high is not None and value > high):
        raise QueryError(f"{name} must be an integer {bounds}")
    return value

"""Which record support means: any id the store holds for it, resolved to its CRM ids and external ids.

Support asks with whatever they have at hand: a CRM id, the external id sent to the back end, the back end's
own id, or the number people use (a work order's `WorkOrderNumber`, sent as `friendly_external_id`). Exact
ids (CRM id, external id, remote id) are looked up first; when none matches, the ids of the records the
connector sent (outbox items) and the values of the last published snapshots are searched. One record found
that way is shown at once; several are listed for support to choose from, never merged into one timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import String, cast, or_
from sqlmodel import Session, col, select

from sync.store.models import EntityStateRow, OutboxItem, TrackedRecord

MAX_CANDIDATES = 50  # rows read per secondary search: a common word must not read the whole store


@dataclass(frozen=True)
class Candidate:
    crm_object: str
    crm_id: str
    matched: str  # how the asked id was found: "WorkOrderNumber", "outbox customer id", ...


@dataclass
class Resolution:
    crm_ids: set[str] = field(default_factory=set)
    external_ids: set[str] = field(default_factory=set)
    matched: str = ""  # set when the record was found by a value other than its own ids
    candidates: list[Candidate] = field(default_factory=list)  # several records hold the value


def resolve(session: Session, record_id: str) -> Resolution:
    res = Resolution(crm_ids={record_id}, external_ids={record_id})
    if _exact(session, record_id, res):
        return res
    found: dict[str, Candidate] = {}
    for candidate in [*_outbox_items(session, record_id), *_snapshots(session, record_id)]:
        found.setdefault(candidate.crm_id, candidate)
    if len(found) == 1:
        (only,) = found.values()
        res.crm_ids.add(only.crm_id)
        _exact(session, only.crm_id, res)  # and everything linked to it, as if asked by its CRM id
        res.matched = only.matched
    else:
        res.candidates = sorted(found.values(), key=lambda c: (c.crm_object, c.crm_id))
    return res


def _exact(session: Session, rid: str, res: Resolution) -> bool:
    """CRM id, external id or remote id of a tracked record or an entity state (a job's links count)."""
    tracked = session.exec(
        select(TrackedRecord).where(
            or_(
                col(TrackedRecord.crm_id) == rid,
                col(TrackedRecord.external_id) == rid,
                col(TrackedRecord.remote_id) == rid,
            )
        )
    ).all()
    for row in tracked:
        res.crm_ids.add(row.crm_id)
        if row.external_id:
            res.external_ids.add(row.external_id)
    entities = session.exec(
        select(EntityStateRow).where(
            or_(
                col(EntityStateRow.crm_id) == rid,
                col(EntityStateRow.external_id) == rid,
                col(EntityStateRow.remote_id) == rid,
            )
        )
    ).all()
    for entity in entities:
        if entity.kind == "job":
            res.external_ids.add(entity.external_id)
            if entity.crm_id:
                res.crm_ids.add(entity.crm_id)
    return bool(tracked or entities)


def _outbox_items(session: Session, rid: str) -> list[Candidate]:
    """Records whose change sets carried a canonical record with this external id (a customer, a
    provider): each item names the CRM record it came from."""
    items = session.exec(
        select(OutboxItem)
        .where(col(OutboxItem.external_id) == rid, col(OutboxItem.crm_id).is_not(None))
        .limit(MAX_CANDIDATES)
    ).all()
    return [
        Candidate(item.crm_object or "", item.crm_id or "", f"the {item.record_type} id it sent")
        for item in items
    ]


def _snapshots(session: Session, rid: str) -> list[Candidate]:
    """Tracked records whose last published snapshot holds the value exactly (WorkOrderNumber ...)."""
    pattern = '%"' + rid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
    rows = session.exec(
        select(TrackedRecord)
        .where(cast(col(TrackedRecord.snapshot), String).like(pattern, escape="\\"))
        .limit(MAX_CANDIDATES)
    ).all()
    found = []
    for row in rows:
        keys = sorted(
            key
            for key, value in (row.snapshot or {}).items()
            if not key.startswith("_") and isinstance(value, str) and value == rid
        )
        if keys:
            found.append(Candidate(row.crm_object, row.crm_id, ", ".join(keys)))
    return found

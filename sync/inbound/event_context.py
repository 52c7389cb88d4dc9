"""What every report handler works with: the open transaction, the mapping, and which delivery it applies;
and the two look-ups every handler needs: the CRM record a job belongs to, and a job named by its remote id.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from connector.mapping import MappingConfig, ObjectSpec
from sync.store.models import EntityStateRow, TrackedRecord

CrmLink = tuple[str, str, ObjectSpec]  # the CRM object, record id and its mapping


@dataclass
class EventContext:
    session: Session
    mapping: MappingConfig
    msg_id: str
    system: str
    label: str  # the back end's name in messages people read


def crm_link(ctx: EventContext, external_id: str | None) -> CrmLink | None:
    """The CRM record whose primary record has this external id on this back end (a job -> its work
    order). A record that moved to another back end no longer links to the one it left."""
    if not external_id:
        return None
    tracked = ctx.session.exec(
        select(TrackedRecord).where(
            col(TrackedRecord.external_id) == external_id, col(TrackedRecord.system) == ctx.system
        )
    ).first()
    if tracked is None or tracked.crm_object not in ctx.mapping.objects:
        return None
    return tracked.crm_object, tracked.crm_id, ctx.mapping.objects[tracked.crm_object]


def external_of_job(ctx: EventContext, remote_id: str | None) -> str | None:
    """A back end that names a job only by its own id (Dispatch v3's appointments, billing documents): the
    job's external id from the job entity this back end reported before."""
    if remote_id is None:
        return None
    return ctx.session.exec(
        select(EntityStateRow.external_id).where(
            col(EntityStateRow.system) == ctx.system,
            col(EntityStateRow.kind) == "job",
            col(EntityStateRow.remote_id) == remote_id,
        )
    ).first()

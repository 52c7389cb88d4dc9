"""Mirror sync-log rows into the CRM (the playbook's Dispatch_Log__c), so admins see errors in Salesforce
too.

Rows are copied through the write-back queue (creates, flushed in Collections calls); a watermark on the
log's timestamps remembers how far the mirror got, so each row is mirrored once.
"""

from __future__ import annotations

from sqlmodel import col, select

from sync.context import SyncContext
from sync.store.db import session_scope
from sync.store.models import SyncLog, Watermark
from sync.writeback.queue import enqueue_create

MIRROR_KEY = "_sync_log_mirror"
MIRROR_BATCH = 1000


def mirror_log(ctx: SyncContext) -> int:
    spec = ctx.mapping.spec.log_object
    if spec is None:
        return 0
    with session_scope(ctx.engine) as session:
        mark = session.get(Watermark, MIRROR_KEY) or Watermark(crm_object=MIRROR_KEY)
        query = select(SyncLog).where(col(SyncLog.level).in_(spec.levels))
        if mark.system_modstamp is not None:
            query = query.where(col(SyncLog.at) > mark.system_modstamp)
        rows = session.exec(query.order_by(col(SyncLog.at), col(SyncLog.id)).limit(MIRROR_BATCH)).all()
        for row in rows:
            fields = {crm: (getattr(row, attr) or None) for crm, attr in spec.fields.items()}
            enqueue_create(session, spec.object, f"log:{row.id}", fields, system=None, source="sync-log")
        if rows:
            mark.system_modstamp = rows[-1].at
            session.add(mark)
        return len(rows)

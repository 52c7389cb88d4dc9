"""The applied job state follows a status the CRM asked for once Dispatch confirmed it (issue 16 item 5)."""

from __future__ import annotations

from sqlmodel import Session, select

from sync.service.admin import record_status
from sync.store.models import EntityStateRow, SyncLog
from tests.e2e.conftest import Harness


def _job_state(harness: Harness, external_id: str) -> str | None:
    with Session(harness.ctx.engine) as session:
        row = session.exec(
            select(EntityStateRow).where(
                EntityStateRow.kind == "job", EntityStateRow.external_id == external_id
            )
        ).one()
        return row.state


def test_a_confirmed_cancel_from_the_crm_is_the_jobs_state(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.dispatch.accept_job(wo)
    harness.round_trip()
    assert _job_state(harness, wo) == "unscheduled"

    harness.sf.update("WorkOrder", wo, {"Dispatch_Send__c": None})  # the admin clears the flag: cancel
    harness.publish()
    assert _job_state(harness, wo) == "unscheduled"  # sent, not yet confirmed
    harness.round_trip()  # the ack confirms it
    assert _job_state(harness, wo) == "canceled"
    assert record_status(harness.ctx, wo)["state"] == "canceled"  # what `status` shows
    with Session(harness.ctx.engine) as session:
        rows = [r.message for r in session.exec(select(SyncLog)).all()]
    assert f"job {wo}: unscheduled -> canceled (asked by the CRM, confirmed)" in rows


def test_a_request_the_field_has_moved_past_does_not_roll_it_back(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.dispatch.accept_job(wo)
    harness.dispatch.complete_job(wo, "done")
    harness.round_trip()
    harness.sf.update("WorkOrder", wo, {"Subject": "Edited after completion"})  # confirms the old request
    harness.publish()
    harness.round_trip()
    assert _job_state(harness, wo) == "complete"

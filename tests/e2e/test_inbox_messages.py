"""Inbox messages (the playbook's `{"Type": "inbox_message", "Payload": {"Data": {...}}}`) reach support and
the CRM record they concern (issue 16 item 2)."""

from __future__ import annotations

from sqlmodel import Session, select

from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.store.models import InboxMessage, SyncLog
from tests.e2e.conftest import Harness


def _message(harness: Harness, customer: str, organization: str, text: str) -> str:
    data = {
        "external_customer_id": customer,
        "external_organization_id": organization,
        "sender": "customer",
        "message_content": text,
    }
    return harness.dispatch.queue.put("inbox_message", {"Data": data})


def test_an_inbox_message_is_read_and_logged_on_its_work_order(harness: Harness) -> None:
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    customer = f"{harness.provider_id}-{harness.contact_id}"  # the default mapping's customer external id
    message_id = _message(harness, customer, harness.provider_id, "Stop texting me!!")
    drain_pull_channels(harness.ctx)
    assert process_inbox(harness.ctx).processed == 1
    with Session(harness.ctx.engine) as session:
        assert session.get(InboxMessage, message_id).status == "processed"
        row = session.exec(select(SyncLog).where(SyncLog.entity == "message")).one()
    assert (row.level, row.crm_record_id, row.message) == (
        "info",
        wo,
        "message from customer: Stop texting me!!",
    )


def test_a_message_about_no_known_record_is_a_warning_not_a_failure(harness: Harness) -> None:
    _message(harness, "nobody", "no-org", "Hello?")
    drain_pull_channels(harness.ctx)
    assert process_inbox(harness.ctx).processed == 1
    with Session(harness.ctx.engine) as session:
        row = session.exec(select(SyncLog).where(SyncLog.entity == "message")).one()
    assert (
        row.level == "warning"
        and row.crm_record_id is None
        and row.details["note"] == "matches no open CRM record"
    )

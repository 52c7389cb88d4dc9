"""Inbox messages (the playbook's `{"Type": "inbox_message", "Payload": {"Data": {...}}}`) reach support and
the CRM record they concern (issue 16 item 2)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlmodel import Session, select

from connector.mapping import DEFAULT_MAPPING, load_mapping
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


def test_with_inbox_messages_mapped_a_message_becomes_a_task_on_contact_and_work_order(
    harness: Harness, tmp_path: Path
) -> None:
    raw = yaml.safe_load(DEFAULT_MAPPING.read_text())
    raw["inbox_messages"] = {
        "object": "Task",
        "fields": {"Subject": "subject", "Description": "message_content"},
        "constants": {"Status": "Completed"},
        "record_field": "WhatId",
        "contact_field": "WhoId",
        "record_contact_field": "ContactId",
    }
    mapping = tmp_path / "messages.yaml"
    mapping.write_text(yaml.safe_dump(raw))
    harness.ctx.mapping = load_mapping(mapping)
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    _message(harness, f"{harness.provider_id}-{harness.contact_id}", harness.provider_id, "Gate code 1234")
    harness.dispatch.set_queue_faults(duplicate_rate=1.0)  # redelivered: still one Task
    harness.round_trip()
    harness.dispatch.set_queue_faults(clear=True)
    harness.round_trip()
    (task,) = [harness.sf.get("Task", i) for i in harness.sf.record_ids("Task")]
    assert (task["WhatId"], task["WhoId"]) == (wo, harness.contact_id)
    assert task["Subject"] == "Dispatch message from customer" and task["Description"] == "Gate code 1234"
    assert task["Status"] == "Completed"

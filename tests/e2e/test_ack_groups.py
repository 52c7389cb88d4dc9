"""Acks confirmed a group at a time (sync.outbound.ack_groups) have the one-at-a-time path's effects: each
record confirmed once with its own ack as the write-back's source, every batch closed; an ack that matches
nothing still gets its warning while the rest confirm; a group with a message that fails is applied again
one message per transaction, so the failure holds up nothing else."""

from __future__ import annotations

from sqlmodel import Session, col, select

from connector.ports import RecordResult
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import GROUP, process_inbox
from sync.outbound.ack_groups import apply_acks, is_plain_ack
from sync.store.db import session_scope
from sync.store.models import InboxMessage, OutboxBatch, OutboxItem, SyncLog, TrackedRecord, WriteBack
from sync.writeback.queue import flush_writebacks
from tests.e2e.conftest import Harness


def publish(harness: Harness, n: int) -> list[str]:
    orders = [harness.work_order(Subject=f"Job {i}") for i in range(n)]
    harness.publish()
    return orders


def test_a_group_of_acks_confirms_each_record_once(harness: Harness) -> None:
    orders = publish(harness, GROUP + 5)  # more acks than one group
    assert drain_pull_channels(harness.ctx).stored > GROUP
    assert process_inbox(harness.ctx).processed > GROUP
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert all(harness.wo(wo)["Dispatch_Last_Synced__c"] is not None for wo in orders)
    with Session(harness.ctx.engine) as session:
        assert {b.status for b in session.exec(select(OutboxBatch)).all()} == {"confirmed"}
        tracked = session.exec(select(TrackedRecord).where(col(TrackedRecord.crm_id).in_(orders))).all()
        assert all(t.confirmed_at is not None for t in tracked) and len(tracked) == len(orders)
        rows = session.exec(select(WriteBack).where(col(WriteBack.crm_id).in_(orders))).all()
        acks = {m.message_id for m in session.exec(select(InboxMessage)).all()}
    assert sorted(r.crm_id for r in rows) == sorted(orders)  # one confirmation each
    assert all(r.source in acks for r in rows)  # written because of its own ack message


def test_an_ack_matching_nothing_is_warned_about_and_the_others_confirm(harness: Harness) -> None:
    orders = publish(harness, 3)
    with Session(harness.ctx.engine) as session:
        items = session.exec(select(OutboxItem).where(col(OutboxItem.record_type) == "job")).all()
        acks = [
            (RecordResult(i.message_id, "job", i.external_id, ok=True), f"ack-{n}")
            for n, i in enumerate(items)
        ]
    stray = RecordResult(items[0].message_id, "job", "no-such-job", ok=True)
    assert all(is_plain_ack(ack) for ack, _ in acks)
    with session_scope(harness.ctx.engine) as session:
        apply_acks(session, harness.ctx.mapping, [acks[0], (stray, "ack-stray"), *acks[1:]])
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    assert all(harness.wo(wo)["Dispatch_Last_Synced__c"] is not None for wo in orders)
    with Session(harness.ctx.engine) as session:
        warnings = session.exec(select(SyncLog).where(col(SyncLog.level) == "warning")).all()
    assert [w.message for w in warnings if "no-such-job" in w.message] == [
        f"ack for job no-such-job matches no published batch (msg_id {items[0].message_id})"
    ]


def test_an_err_or_a_warning_is_not_a_plain_ack() -> None:
    assert not is_plain_ack(RecordResult("m", "job", "1", ok=False, error="refused"))
    assert not is_plain_ack(RecordResult("m", "job", "1", ok=True, problems=("status: not text",)))
    assert not is_plain_ack(object())


def test_a_failing_message_in_a_group_holds_up_nothing_else(harness: Harness) -> None:
    orders = publish(harness, 6)
    drain_pull_channels(harness.ctx)
    harness.dispatch.emit("job", {"id": 1, "external_id": orders[0], "status": "no-such-status"})
    with Session(harness.ctx.engine) as session:
        broken = session.exec(select(InboxMessage)).first()
        assert broken is not None
        broken.payload = {"not": "a message"}  # unreadable: raises when applied
        session.add(broken)
        session.commit()
        broken_id = broken.message_id
    report = process_inbox(harness.ctx)
    flush_writebacks(harness.ctx.engine, harness.ctx.crm)
    with Session(harness.ctx.engine) as session:
        statuses = {m.message_id: m.status for m in session.exec(select(InboxMessage)).all()}
    assert report.failed == 1 and statuses.pop(broken_id) in ("new", "dead")
    assert set(statuses.values()) == {"processed"}
    assert sum(harness.wo(wo)["Dispatch_Last_Synced__c"] is not None for wo in orders) >= len(orders) - 1

"""No message is unreadable forever: whatever its envelope, an `agent/out` message is stored as received and
acked; one that cannot be read is dead with its reason, logged once, and read again by `retry --dead`."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox, retry_dead
from sync.store.models import InboxMessage, SyncLog
from tests.e2e.conftest import Harness

# A Payload with neither Actions nor Data: an envelope nobody documents.
UNREADABLE = {"Items": [{"id": 41, "message": "Gate code is 1234"}]}


def _rows(harness: Harness) -> dict[str, InboxMessage]:
    with Session(harness.ctx.engine) as session:
        return {row.message_id: row for row in session.exec(select(InboxMessage)).all()}


def _errors(harness: Harness) -> list[str]:
    with Session(harness.ctx.engine) as session:
        return [r.message for r in session.exec(select(SyncLog).where(SyncLog.level == "error")).all()]


def _queue_bad(harness: Harness, payload: dict[str, Any], msg_type: str = "mystery") -> str:
    return harness.dispatch.queue.put(msg_type, payload)


def test_a_malformed_message_in_a_full_page_is_stored_dead_acked_and_the_drain_goes_on(
    harness: Harness,
) -> None:
    good = [harness.dispatch.emit("calendar_event", {"external_id": f"E-{n}"}) for n in range(9)]
    bad = _queue_bad(harness, UNREADABLE)
    later = [harness.dispatch.emit("calendar_event", {"external_id": f"L-{n}"}) for n in range(3)]
    report = drain_pull_channels(harness.ctx)
    assert report.received == 13 and report.stored == 13 and report.unreadable == 1 and report.acked == 13
    assert report.polls == 2  # the first page was full (10 received): the drain did not stop at the bad one
    rows = _rows(harness)
    assert set(good + later + [bad]) <= set(rows)
    assert rows[bad].status == "dead" and rows[bad].last_error.startswith("unreadable: ")
    assert rows[bad].payload["Message"]["Request"]["Payload"] == UNREADABLE  # kept as received
    assert harness.dispatch.queue_depth() == 0  # acked: it will not loop
    assert sum(bad in m for m in _errors(harness)) == 1


def test_a_redelivered_unreadable_message_is_counted_not_logged_again(harness: Harness) -> None:
    bad = _queue_bad(harness, {"Nothing": True})
    harness.dispatch.set_queue_faults(duplicate_rate=1.0)
    drain_pull_channels(harness.ctx)
    harness.dispatch.set_queue_faults(clear=True)
    assert _rows(harness)[bad].deliveries >= 2
    assert sum(bad in m for m in _errors(harness)) == 1


def test_processing_skips_it_and_retry_dead_reads_it_again(harness: Harness) -> None:
    bad = _queue_bad(harness, UNREADABLE)
    drain_pull_channels(harness.ctx)
    report = process_inbox(harness.ctx)
    assert report.processed == 0 and _rows(harness)[bad].status == "dead"
    assert retry_dead(harness.ctx) == 1
    report = process_inbox(harness.ctx)  # still unreadable by this version: dead at once, not retried 3 times
    row = _rows(harness)[bad]
    assert (report.dead, row.status, row.attempts) == (1, "dead", 1)
    assert "has no 'Actions'" in row.last_error


def test_auto_assign_failures_and_unknown_types_carry_the_crm_record(harness: Harness) -> None:
    """Issue 16 item 6: `log --record <work order>` finds them."""
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()
    harness.dispatch.auto_assign_technician_failed(wo)
    harness.dispatch.emit("spaceship", {"external_id": wo, "warp": 9})
    harness.round_trip()
    with Session(harness.ctx.engine) as session:
        rows = session.exec(select(SyncLog).where(SyncLog.level == "warning")).all()
    by_entity = {row.entity: row for row in rows}
    assert by_entity["auto_assign_technician"].crm_record_id == wo
    assert by_entity["spaceship"].crm_record_id == wo and by_entity["spaceship"].external_id == wo


def test_a_store_failure_is_logged_in_words_without_sql(harness: Harness) -> None:
    from sqlalchemy.exc import IntegrityError

    harness.dispatch.emit("calendar_event", {"external_id": "E-1"})

    def broken_store(_: object) -> None:
        raise IntegrityError(
            "INSERT INTO inbox_message (payload) VALUES (?)", {"payload": "x"}, Exception("disk full")
        )

    report = drain_pull_channels(harness.ctx, before_store=broken_store)
    assert report.store_failures and report.acked == 0
    (message,) = _errors(harness)
    assert "disk full" in message and "INSERT" not in message and "payload" not in message

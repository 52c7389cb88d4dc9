"""Dispatch -> CRM, step one: drain `agent/out` into the inbox, store first, then ack.

Exactly the playbook's polling best practices: ask for 10, commit each message to the inbox, acknowledge
it right after its own commit (never before, and never when storing failed, so Dispatch redelivers it),
poll again while a full page came back. Acks of a stored page go out concurrently to save round trips. A
redelivered message (same ID) hits the same inbox row: it is acked again and counted, with no second
effect. Only one poller runs at a time (sync.store.locks). Business processing happens later, in
sync.inbound.processor.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from connector.dispatch_connect.client import MAX_MESSAGES_PER_POLL, MalformedPage, OutboundMessage
from connector.errors import ConnectorError
from connector.text import storable
from sync.context import SyncContext
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.locks import single_instance
from sync.store.models import InboxMessage
from sync.store.synclog import write_log

MAX_PAGES_PER_DRAIN = 1000
ACK_THREADS = 10


@dataclass
class PollReport:
    polls: int = 0
    received: int = 0
    stored: int = 0
    redelivered: int = 0
    acked: int = 0
    store_failures: list[str] = field(default_factory=list)
    ack_failures: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # ordered "stored:ID" / "acked:ID", for tests


def entity_key(message: OutboundMessage) -> str | None:
    """`kind:external id` of the first action, so one entity's events can be found and ordered."""
    for action in message.actions:
        data = action.data
        external = data.get("external_id") or (data.get("job") or {}).get("external_id") or data.get("id")
        if external is not None:
            return f"{action.put_type}:{external}"[:300]
    return None


def store_message(session: Session, message: OutboundMessage) -> bool:
    """Insert the message, or count a redelivery. Returns True when it was new."""
    message_id = storable(message.id)
    existing = session.get(InboxMessage, message_id)
    if existing is not None:
        existing.deliveries += 1
        existing.receipt = storable(message.receipt)
        session.add(existing)
        return False
    session.add(
        InboxMessage(
            message_id=message_id,
            procedure_id=storable(message.procedure_id),
            receipt=storable(message.receipt),
            type=storable(message.type),
            entity_key=storable(entity_key(message)),
            payload=storable(message.raw),
            received_at=utcnow(),
        )
    )
    return True


StoreHook = Callable[[OutboundMessage], None]


def drain_outbound_queue(ctx: SyncContext, *, before_store: StoreHook | None = None) -> PollReport:
    """Poll until a page comes back short. `before_store` lets tests inject a storage failure.

    A page is committed in one transaction, then its acks go out on a thread pool while the next page is
    polled: every ack still follows the commit of its message, and the round trips overlap."""
    report = PollReport()
    acks: list[Future[str | None]] = []
    with single_instance(ctx.engine, "poller"), ThreadPoolExecutor(ACK_THREADS) as pool:
        for _ in range(MAX_PAGES_PER_DRAIN):
            page = _poll_page(ctx, report)
            report.polls += 1
            report.received += len(page)
            acks.extend(
                pool.submit(_ack, ctx, message, report)
                for message in _store_page(ctx, page, report, before_store)
            )
            if len(page) < MAX_MESSAGES_PER_POLL:
                break
        acked = [message_id for future in acks if (message_id := future.result())]
    _mark_acked(ctx, acked)
    return report


def _poll_page(ctx: SyncContext, report: PollReport) -> list[OutboundMessage]:
    try:
        return ctx.dispatch.poll(MAX_MESSAGES_PER_POLL)
    except MalformedPage as exc:
        # Keep the well-formed messages; the bad ones stay un-acked (Dispatch redelivers) and are logged.
        with session_scope(ctx.engine) as session:
            write_log(
                session,
                f"agent/out returned malformed messages; they were not acknowledged: {exc}",
                level="error",
                direction="in",
                details={"bad": exc.bad},
            )
        return list(exc.messages)


def _store_page(
    ctx: SyncContext, page: list[OutboundMessage], report: PollReport, before_store: StoreHook | None
) -> list[OutboundMessage]:
    """Commit a page; if that fails, store message by message so one bad message holds up no other."""
    if not page:
        return []
    try:
        with session_scope(ctx.engine) as session:
            fresh = []
            for message in page:
                if before_store:
                    before_store(message)
                fresh.append(store_message(session, message))
    except Exception:
        return [message for message in page if _store_one(ctx, message, report, before_store)]
    for message, new in zip(page, fresh, strict=True):
        _count_stored(report, message, new)
    return page


def _store_one(
    ctx: SyncContext, message: OutboundMessage, report: PollReport, before_store: StoreHook | None
) -> bool:
    try:
        with session_scope(ctx.engine) as session:
            if before_store:
                before_store(message)
            new = store_message(session, message)
    except Exception as exc:  # storing failed: no ack, Dispatch redelivers after the visibility timeout
        report.store_failures.append(f"{message.id}: {exc}")
        _log_store_failure(ctx, message, exc)
        return False
    _count_stored(report, message, new)
    return True


def _count_stored(report: PollReport, message: OutboundMessage, new: bool) -> None:
    report.stored += int(new)
    report.redelivered += int(not new)
    report.events.append(f"stored:{message.id}")


def _log_store_failure(ctx: SyncContext, message: OutboundMessage, exc: Exception) -> None:
    try:
        with session_scope(ctx.engine) as session:
            write_log(
                session,
                f"could not store message {message.id}; not acknowledged, Dispatch will "
                f"redeliver it: {type(exc).__name__}: {exc}",
                level="error",
                direction="in",
                msg_id=message.id,
                entity=message.type,
            )
    except Exception:  # the store is down; the message is still safe in Dispatch's queue
        pass


def _ack(ctx: SyncContext, message: OutboundMessage, report: PollReport) -> str | None:
    try:
        ctx.dispatch.ack(message.receipt, message.procedure_id)
    except ConnectorError as exc:
        # Stored but not acked: it comes back after the visibility timeout and is recognised as a redelivery.
        report.ack_failures.append(f"{message.id}: {exc}")
        return None
    report.acked += 1
    report.events.append(f"acked:{message.id}")
    return message.id


def _mark_acked(ctx: SyncContext, message_ids: list[str]) -> None:
    """Record ack times in one transaction (bookkeeping for support; correctness does not depend on it)."""
    if not message_ids:
        return
    now = utcnow()
    with session_scope(ctx.engine) as session:
        for row in session.exec(
            select(InboxMessage).where(col(InboxMessage.message_id).in_(message_ids))
        ).all():
            if row.acked_at is None:
                row.acked_at = now
                session.add(row)

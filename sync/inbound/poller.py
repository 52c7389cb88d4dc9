"""Field service -> CRM, step one: drain every pull channel into the inbox, store first, then settle.

The playbook's polling best practices, for any queue-like channel: ask for a page, commit each delivery to
the inbox, settle it (acknowledge) right after its own commit (never before, and never when storing
failed, so the source delivers it again), fetch again while a full page came back. Settlements of a
stored page go out concurrently to save round trips. A redelivered message (same id) hits the same inbox
row: it is settled again and counted, with no second effect. Only one poller runs at a time
(sync.store.locks). Business processing happens later, in sync.inbound.processor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import update

from connector.errors import ConnectorError
from connector.ports import Delivery, PullChannel
from sync.context import SyncContext
from sync.inbound.inbox import store_delivery, store_page
from sync.store.db import IN_CLAUSE_CHUNK, chunked, session_scope
from sync.store.dbtypes import utcnow
from sync.store.locks import single_instance
from sync.store.models import InboxMessage, table_of
from sync.store.synclog import error_words, write_log

MAX_PAGES_PER_DRAIN = 1000
ACK_THREADS = 10
# After a poll that received something, or a publish that sent something, the daemon polls again at once
# while messages come, then every POLL_HOT_S for POLL_HOT_FOR_S (field events come in bursts: accepted,
# scheduled, en route ...); then back to the idle interval (POLL_INTERVAL_S). docs/engine.md, "Wake-ups".
POLL_HOT_S = 0.5
POLL_HOT_FOR_S = 60.0


@dataclass
class PollReport:
    polls: int = 0
    received: int = 0
    stored: int = 0
    redelivered: int = 0
    unreadable: int = 0  # stored dead: the channel could not read them
    acked: int = 0
    store_failures: list[str] = field(default_factory=list)
    ack_failures: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # ordered "stored:ID" / "acked:ID", for tests


StoreHook = Callable[[Delivery], None]


class StoreTurns:
    """In one process, a page the poller stores goes before the processor's next message.

    Both write the store, and SQLite has one writer at a time: a writer that finds the lock taken sleeps
    and retries (1, 2, 5 ... 100 ms), while a processor applying messages takes it again at once. Measured
    in bench/poller.py with the stages overlapped, storing a page of 10 then took ~55 ms instead of ~5 ms
    and the drain fell from 400 to 110 events/s. So, within this process: the poller says it wants to store
    (`storing`) and waits on a condition, not on SQLite's retries, until the processor's transaction in hand
    has committed; the processor ends its group at the next message while the poller waits (`wanted`) and
    starts no transaction while a page is being stored (`applying`, at most `wait_s`, so it is never held up
    for long). Across processes (the poller and processor roles apart) SQLite's own retries remain."""

    def __init__(self, wait_s: float = 0.5) -> None:
        self._cond = threading.Condition()
        self._storing = 0
        self._applying = 0
        self.wait_s = wait_s

    @contextmanager
    def storing(self) -> Iterator[None]:
        with self._cond:
            self._storing += 1
            self._cond.wait_for(lambda: not self._applying, self.wait_s)
        try:
            yield
        finally:
            with self._cond:
                self._storing -= 1
                self._cond.notify_all()

    @contextmanager
    def applying(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._storing, self.wait_s)
            self._applying += 1
        try:
            yield
        finally:
            with self._cond:
                self._applying -= 1
                self._cond.notify_all()

    def wanted(self) -> bool:
        """True while the poller waits to store a page: the processor should commit what it has."""
        return self._storing > 0


STORE_TURNS = StoreTurns()


def poll_again_in(received: int, quiet_for_s: float) -> float | None:
    """When to poll again after a poll that received `received` messages, the last message (or publish)
    having been `quiet_for_s` ago: 0.0 at once, POLL_HOT_S in a hot spell, None: at the idle interval."""
    if received:
        return 0.0
    return POLL_HOT_S if quiet_for_s < POLL_HOT_FOR_S else None


def drain_pull_channels(
    ctx: SyncContext,
    *,
    before_store: StoreHook | None = None,
    on_stored: Callable[[], None] | None = None,
) -> PollReport:
    """Drain every configured back end's pull channels. `before_store` lets tests inject a storage failure;
    `on_stored` is called after each commit that stored a new message (the daemon wakes the processor with
    it, so processing overlaps the rest of the drain).

    A page is committed in one transaction, then its settlements go out on a thread pool while the next
    page is fetched: every settlement still follows the commit of its delivery, and the round trips
    overlap."""
    report = PollReport()
    acks: list[Future[str | None]] = []
    with single_instance(ctx.engine, "poller"), ThreadPoolExecutor(ACK_THREADS) as pool:
        for backend in ctx.all_backends().values():
            for channel in backend.pull_channels:
                _drain(ctx, channel, report, before_store, pool, acks, on_stored)
        acked = [message_id for future in acks if (message_id := future.result())]
    _mark_acked(ctx, acked)
    return report


def _drain(
    ctx: SyncContext,
    channel: PullChannel,
    report: PollReport,
    before_store: StoreHook | None,
    pool: ThreadPoolExecutor,
    acks: list[Future[str | None]],
    on_stored: Callable[[], None] | None,
) -> None:
    for _ in range(MAX_PAGES_PER_DRAIN):
        page = channel.fetch(channel.page_size)
        if page.problem:
            _log_bad_entries(ctx, page.problem, list(page.bad))
        report.polls += 1
        report.received += len(page.deliveries)
        before = report.stored
        with STORE_TURNS.storing():
            stored = _store_page(ctx, list(page.deliveries), report, before_store)
        acks.extend(pool.submit(_ack, channel, delivery, report) for delivery in stored)
        if on_stored is not None and report.stored > before:
            on_stored()
        if not page.full:
            return


def _log_bad_entries(ctx: SyncContext, problem: str, bad: list[object]) -> None:
    """Keep the well-formed deliveries; the bad ones stay unsettled (the source redelivers) and are logged."""
    with session_scope(ctx.engine) as session:
        write_log(
            session,
            f"a channel returned malformed messages; they were not acknowledged: {problem}",
            level="error",
            direction="in",
            details={"bad": bad},
        )


def _store_page(
    ctx: SyncContext, page: list[Delivery], report: PollReport, before_store: StoreHook | None
) -> list[Delivery]:
    """Commit a page; if that fails, store message by message so one bad message holds up no other."""
    if not page:
        return []
    try:
        with session_scope(ctx.engine) as session, session.no_autoflush:
            # Set-based (sync.inbound.inbox.store_page): the page's stored rows in one query, its new rows
            # in one INSERT. One lookup, one ORM object and one flush per message were most of its cost.
            if before_store:
                for message in page:
                    before_store(message)
            fresh = store_page(session, page)
    except Exception:
        return [message for message in page if _store_one(ctx, message, report, before_store)]
    for message, new in zip(page, fresh, strict=True):
        _count_stored(report, message, new)
    return page


def _store_one(
    ctx: SyncContext, message: Delivery, report: PollReport, before_store: StoreHook | None
) -> bool:
    try:
        with session_scope(ctx.engine) as session:
            if before_store:
                before_store(message)
            new = store_delivery(session, message)
    except Exception as exc:  # storing failed: not settled, the source redelivers it
        report.store_failures.append(f"{message.id}: {error_words(exc)}")
        _log_store_failure(ctx, message, exc)
        return False
    _count_stored(report, message, new)
    return True


def _count_stored(report: PollReport, message: Delivery, new: bool) -> None:
    report.stored += int(new)
    report.redelivered += int(not new)
    report.unreadable += int(new and message.problem is not None)
    report.events.append(f"stored:{message.id}")


def _log_store_failure(ctx: SyncContext, message: Delivery, exc: Exception) -> None:
    try:
        with session_scope(ctx.engine) as session:
            write_log(
                session,
                f"could not store message {message.id}; not acknowledged, {message.system} will "
                f"redeliver it: {error_words(exc)}",
                level="error",
                direction="in",
                msg_id=message.id,
                entity=message.kind,
            )
    except Exception:  # the store is down; the message is still safe in the source's queue
        pass


def _ack(channel: PullChannel, message: Delivery, report: PollReport) -> str | None:
    try:
        channel.settle(message)
    except ConnectorError as exc:
        # Stored but not settled: it comes back (a visibility timeout) and is recognised as a redelivery.
        report.ack_failures.append(f"{message.id}: {exc}")
        return None
    report.acked += 1
    report.events.append(f"acked:{message.id}")
    return message.id


def _mark_acked(ctx: SyncContext, message_ids: list[str]) -> None:
    """Record ack times in one transaction (bookkeeping for support; correctness does not depend on it).
    An UPDATE per chunk: loading a long drain's rows (payloads and all) held the write lock for long."""
    if not message_ids:
        return
    now = utcnow()
    inbox = table_of(InboxMessage)
    with session_scope(ctx.engine) as session:
        for chunk in chunked(message_ids, IN_CLAUSE_CHUNK):
            session.execute(
                update(inbox)
                .where(inbox.c.message_id.in_(chunk), inbox.c.acked_at.is_(None))
                .values(acked_at=now)
            )

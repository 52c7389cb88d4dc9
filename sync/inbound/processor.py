"""Field service -> CRM, step two: apply stored inbox messages, one transaction per message.

Each message is translated by the back end type that received it (`BackendType.translate`) into reports in the
engine's words, then applied by sync.inbound.events.

A message's state changes, sync-log rows and write-back intents commit together with its `processed`
mark, so an event has exactly one effect even if the process dies half way. A message that raises is
rolled back, retried with backoff, and after `max_attempts` marked `dead` with its error in the sync log;
the messages behind it keep flowing. Redelivered messages never reach here twice: the inbox is keyed by
message ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, text
from sqlmodel import Session, col, select

from connector.errors import MalformedDelivery
from connector.ports import Delivery, RecordResult
from sync.context import SyncContext
from sync.inbound.event_context import EventContext
from sync.inbound.events import apply_report
from sync.inbound.poller import STORE_TURNS
from sync.outbound.ack_groups import apply_acks, is_plain_ack
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.locks import HOLDER
from sync.store.models import InboxMessage
from sync.store.synclog import error_words, write_log
from sync.writeback.queue import backoff


@dataclass
class ProcessReport:
    processed: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def due_messages(ctx: SyncContext, limit: int) -> list[str]:
    now = utcnow()
    with session_scope(ctx.engine) as session:
        query = (
            select(InboxMessage.message_id)
            .where(col(InboxMessage.status) == "new")
            .where(or_(col(InboxMessage.next_attempt_at).is_(None), col(InboxMessage.next_attempt_at) <= now))
            .order_by(col(InboxMessage.received_at), col(InboxMessage.message_id))
            .limit(limit)
        )
        return list(session.exec(query).all())


# Several workers on PostgreSQL: claim the oldest unprocessed message of each entity, skipping rows another
# worker has locked. Only the oldest of an entity is claimable, so no two workers hold one entity at once and
# its events apply in arrival order. A crashed worker's claims lapse after CLAIM_LEASE.
CLAIM_SQL = text("""
UPDATE inbox_message SET claimed_by = :worker, claimed_until = :until
WHERE message_id IN (
    SELECT m.message_id FROM inbox_message m
    WHERE m.status = 'new'
      AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= :now)
      AND (m.claimed_until IS NULL OR m.claimed_until < :now)
      AND NOT EXISTS (
          SELECT 1 FROM inbox_message o
          WHERE o.entity_key = m.entity_key AND o.status = 'new'
            AND (o.received_at < m.received_at
                 OR (o.received_at = m.received_at AND o.message_id < m.message_id)))
    ORDER BY m.received_at, m.message_id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED)
RETURNING message_id, received_at
""")
CLAIM_BATCH = 10
CLAIM_LEASE = timedelta(minutes=5)


def claim_messages(ctx: SyncContext, limit: int) -> list[str]:
    now = utcnow()
    with ctx.engine.begin() as connection:
        rows = connection.execute(
            CLAIM_SQL, {"worker": HOLDER, "until": now + CLAIM_LEASE, "now": now, "limit": limit}
        ).all()
    return [row.message_id for row in sorted(rows, key=lambda r: (r.received_at, r.message_id))]


def process_inbox(ctx: SyncContext, *, limit: int = 1000) -> ProcessReport:
    report = ProcessReport()
    if ctx.engine.dialect.name != "postgresql":
        # SQLite: one writer at a time anyway; process_message re-checks the status under BEGIN IMMEDIATE.
        _process_ids(ctx, due_messages(ctx, limit), report)
        return report
    done = 0
    while done < limit and (claimed := claim_messages(ctx, min(CLAIM_BATCH, limit - done))):
        _process_ids(ctx, claimed, report)
        done += len(claimed)
    return report


# Messages applied per transaction: a transaction costs a BEGIN IMMEDIATE, the inbox row's lock and a
# commit, about a third of applying an ack alone (bench/publisher.py, acks on). A group that raises is rolled
# back whole and its messages applied one per transaction, so a bad message holds up no other and every
# message still has exactly one effect, committed with its `processed` mark.
GROUP = 20


def _process_ids(ctx: SyncContext, message_ids: list[str], report: ProcessReport) -> None:
    todo = list(message_ids)
    while todo:
        group = todo[:GROUP]
        if len(group) > 1:
            try:
                with STORE_TURNS.applying():  # a page being stored (the poller, this process) goes first
                    consumed, applied = process_group(ctx, group, stop=STORE_TURNS.wanted)
                report.processed += applied
                todo = todo[consumed:]
                continue
            except Exception:  # one of them fails: find which, one transaction each
                pass
        for message_id in group:
            with STORE_TURNS.applying():
                _process_one(ctx, message_id, report)
        todo = todo[len(group) :]


def _process_one(ctx: SyncContext, message_id: str, report: ProcessReport) -> None:
    try:
        if process_message(ctx, message_id):
            report.processed += 1
    except MalformedDelivery as exc:  # no retry can read it: dead at once, until a fix and retry --dead
        report.failed += 1
        report.dead += 1
        report.errors.append(f"{message_id}: {exc}")
        _mark_unreadable(ctx, message_id, exc)
    except Exception as exc:
        report.failed += 1
        report.errors.append(f"{message_id}: {type(exc).__name__}: {exc}")
        if _record_failure(ctx, message_id, exc):
            report.dead += 1


def _mark_unreadable(ctx: SyncContext, message_id: str, exc: MalformedDelivery) -> None:
    with session_scope(ctx.engine) as session:
        row = session.get(InboxMessage, message_id)
        if row is None:
            return
        row.status, row.attempts = "dead", row.attempts + 1
        row.claimed_by = row.claimed_until = None
        row.last_error = f"unreadable: {exc}"[:4000]
        session.add(row)
        write_log(
            session,
            f"message {message_id} ({row.type}) cannot be read: {exc}; it is dead. Fix the sender or the "
            "translation, then `dispatch-connector retry --dead`",
            level="error",
            direction="in",
            entity=row.type,
            msg_id=message_id,
        )


def process_message(ctx: SyncContext, message_id: str) -> bool:
    """Apply one message; False when another worker already did."""
    with session_scope(ctx.engine) as session:
        return _apply(ctx, session, message_id)


def process_group(
    ctx: SyncContext, message_ids: list[str], *, stop: Callable[[], bool] | None = None
) -> tuple[int, int]:
    """Apply messages in order in one transaction (all or none); returns how many it went through and how
    many of those were still to apply. `stop` ends the group early, after a message (the poller waits).

    Consecutive messages that are plain acks are confirmed together (sync.outbound.ack_groups), before
    the next message of another kind is applied, so the order of effects is the messages' order."""
    acks: list[tuple[RecordResult, str]] = []
    consumed = applied = 0
    with session_scope(ctx.engine) as session:
        rows = _locked_rows(session, message_ids)
        for message_id in message_ids:
            applied += _apply(ctx, session, message_id, acks, row=rows.get(message_id))
            consumed += 1
            if stop is not None and stop():
                break
        if acks:
            apply_acks(session, ctx.mapping, acks)
    return consumed, applied


def _locked_rows(session: Session, message_ids: list[str]) -> dict[str, InboxMessage]:
    """A group's inbox rows in one query (one each was ~a tenth of applying an ack), locked as one."""
    query = select(InboxMessage).where(col(InboxMessage.message_id).in_(message_ids)).with_for_update()
    return {row.message_id: row for row in session.exec(query).all()}


def _apply(
    ctx: SyncContext,
    session: Session,
    message_id: str,
    acks: list[tuple[RecordResult, str]] | None = None,
    *,
    row: InboxMessage | None = None,
) -> bool:
    """Apply one message in `session`; `row`: its inbox row, loaded and locked already (else looked up)."""
    if row is None:
        row = session.get(InboxMessage, message_id, with_for_update=True)
    if row is None or row.status != "new":
        return False
    translate, label = ctx.translator(row.system)
    delivery = Delivery(row.system, row.message_id, row.type or "", row.payload, row.entity_key)
    reports = list(translate(delivery))
    if acks is not None and reports and all(is_plain_ack(report) for report in reports):
        acks.extend((report, message_id) for report in reports if isinstance(report, RecordResult))
    else:
        if acks:  # the acks before this message take effect first
            apply_acks(session, ctx.mapping, acks)
            acks.clear()
        event_ctx = EventContext(session, ctx.mapping, message_id, row.system, label)
        for report in reports:
            apply_report(event_ctx, report)
    row.status, row.processed_at, row.last_error = "processed", utcnow(), None
    row.attempts += 1
    row.claimed_by = row.claimed_until = None
    session.add(row)
    return True


def _record_failure(ctx: SyncContext, message_id: str, exc: Exception) -> bool:
    """Count the attempt in a fresh transaction (the failed one was rolled back). True when it went dead."""
    with session_scope(ctx.engine) as session:
        row = session.get(InboxMessage, message_id)
        if row is None:
            return False
        row.attempts += 1
        row.claimed_by = row.claimed_until = None
        row.last_error = error_words(exc)[:4000]  # shown to support: a database error without its SQL
        row.next_attempt_at = utcnow() + backoff(row.attempts, base_s=1.0)
        dead = row.attempts >= ctx.settings.max_attempts
        if dead:
            row.status = "dead"
            write_log(
                session,
                f"message {message_id} ({row.type}) failed {row.attempts} times and is dead; "
                f"fix the cause, then `dispatch-connector retry --dead`. Last error: {row.last_error}",
                level="error",
                direction="in",
                entity=row.type,
                msg_id=message_id,
            )
        session.add(row)
        return dead


def retry_dead(ctx: SyncContext) -> int:
    with session_scope(ctx.engine) as session:
        rows = session.exec(select(InboxMessage).where(col(InboxMessage.status) == "dead")).all()
        for row in rows:
            row.status, row.attempts, row.next_attempt_at = "new", 0, None
            session.add(row)
        return len(rows)


def replay(ctx: SyncContext, message_id: str) -> bool:
    """Process a stored message again (for support after fixing a mapping); its effects apply once more."""
    with session_scope(ctx.engine) as session:
        row = session.get(InboxMessage, message_id)
        if row is None:
            return False
        row.status, row.next_attempt_at = "new", None
        session.add(row)
    return process_message(ctx, message_id)


def inbox_depth(ctx: SyncContext) -> dict[str, Any]:
    from sqlalchemy import func

    with session_scope(ctx.engine) as session:
        rows = session.exec(select(InboxMessage.status, func.count()).group_by(InboxMessage.status)).all()
    return {status: count for status, count in rows}

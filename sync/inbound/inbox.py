"""The inbox: every delivery any channel receives is stored here first, keyed by its id.

Store, then settle: a pull channel's delivery is acknowledged only after its commit, a push channel's
caller is answered 2xx only after its commit. A redelivery hits the same row (counted, no second effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import insert
from sqlmodel import Session, col, select

from connector.ports import Delivery
from connector.text import storable
from sync.store.dbtypes import utcnow
from sync.store.models import InboxMessage, table_of
from sync.store.synclog import write_log

INBOX = table_of(InboxMessage)


def store_delivery(session: Session, delivery: Delivery) -> bool:
    """Insert the delivery, or count a redelivery. Returns True when it was new. A delivery the channel
    could not read is stored whole, dead with its reason, so it is settled and never loops."""
    message_id = storable(delivery.id)
    existing = session.get(InboxMessage, message_id)
    if existing is not None:
        existing.deliveries += 1
        session.add(existing)
        return False
    session.add(InboxMessage(**_new_row(delivery, message_id)))
    _log_unreadable(session, delivery, message_id)
    return True


def store_page(session: Session, page: Sequence[Delivery]) -> list[bool]:
    """`store_delivery` for a page of deliveries, set-based: the page's stored rows looked up in one query,
    the new ones inserted in one statement (one lookup and one ORM object per message were most of a
    page's storing time, bench/publisher.py with acks on). Returns, per delivery, True when it was new; an
    id seen twice in the page is stored once and counted as a redelivery the second time."""
    ids = [storable(delivery.id) for delivery in page]
    query = select(InboxMessage).where(col(InboxMessage.message_id).in_(set(ids)))
    stored: dict[str, InboxMessage | dict[str, Any]] = {row.message_id: row for row in session.exec(query)}
    fresh: list[dict[str, Any]] = []
    new: list[bool] = []
    for delivery, message_id in zip(page, ids, strict=True):
        existing = stored.get(message_id)
        if isinstance(existing, InboxMessage):
            existing.deliveries += 1
            session.add(existing)
        elif existing is not None:
            existing["deliveries"] += 1
        else:
            stored[message_id] = row = _new_row(delivery, message_id)
            fresh.append(row)
        new.append(existing is None)
    if fresh:
        session.execute(insert(INBOX), fresh)
    for delivery, message_id, is_new in zip(page, ids, new, strict=True):
        if is_new:
            _log_unreadable(session, delivery, message_id)
    return new


def _new_row(delivery: Delivery, message_id: str) -> dict[str, Any]:
    """The inbox row of a delivery received now, as column values."""
    unreadable = delivery.problem is not None
    return {
        "message_id": message_id,
        "system": delivery.system,
        "type": storable(delivery.kind)[:40],
        "entity_key": storable(delivery.entity_key),
        "payload": _storable_payload(delivery.payload),
        "status": "dead" if unreadable else "new",
        "attempts": 0,
        "deliveries": 1,
        "received_at": utcnow(),
        "last_error": storable(f"unreadable: {delivery.problem}")[:4000] if unreadable else None,
    }


def _storable_payload(payload: Any) -> Any:
    """`storable(payload)`, without walking a payload that has nothing to change: orjson refuses a lone
    surrogate (and a key that is not a string) and writes NUL as an escape, so a payload it encodes with
    no NUL in it is returned as it is; any other goes through `storable`."""
    try:
        if b"\\u0000" not in orjson.dumps(payload):
            return payload
    except (orjson.JSONEncodeError, TypeError):
        pass
    return storable(payload)


def _log_unreadable(session: Session, delivery: Delivery, message_id: str) -> None:
    if delivery.problem is not None:  # logged once: a redelivery of it is counted, not logged again
        write_log(
            session,
            f"message {message_id} from {delivery.system} cannot be read ({delivery.problem}); stored as "
            "received and marked dead. Fix the sender or the translation, then `dispatch-connector retry "
            "--dead` reads it again",
            level="error",
            direction="in",
            entity=storable(delivery.kind)[:40],
            msg_id=message_id,
        )

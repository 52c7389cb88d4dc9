"""The inbox: every delivery any channel receives is stored here first, keyed by its id.

Store, then settle: a pull channel's delivery is acknowledged only after its commit, a push channel's
caller is answered 2xx only after its commit. A redelivery hits the same row (counted, no second effect).
"""

from __future__ import annotations

from sqlmodel import Session

from connector.ports import Delivery
from connector.text import storable
from sync.store.dbtypes import utcnow
from sync.store.models import InboxMessage


def store_delivery(session: Session, delivery: Delivery) -> bool:
    """Insert the delivery, or count a redelivery. Returns True when it was new."""
    message_id = storable(delivery.id)
    existing = session.get(InboxMessage, message_id)
    if existing is not None:
        existing.deliveries += 1
        session.add(existing)
        return False
    session.add(
        InboxMessage(
            message_id=message_id,
            system=delivery.system,
            type=storable(delivery.kind),
            entity_key=storable(delivery.entity_key),
            payload=storable(delivery.payload),
            received_at=utcnow(),
        )
    )
    return True

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
from sync.store.synclog import write_log


def store_delivery(session: Session, delivery: Delivery) -> bool:
    """Insert the delivery, or count a redelivery. Returns True when it was new. A delivery the channel
    could not read is stored whole, dead with its reason, so it is settled and never loops."""
    message_id = storable(delivery.id)
    existing = session.get(InboxMessage, message_id)
    if existing is not None:
        existing.deliveries += 1
        session.add(existing)
        return False
    unreadable = delivery.problem is not None
    session.add(
        InboxMessage(
            message_id=message_id,
            system=delivery.system,
            type=storable(delivery.kind)[:40],
            entity_key=storable(delivery.entity_key),
            payload=storable(delivery.payload),
            received_at=utcnow(),
            status="dead" if unreadable else "new",
            last_error=storable(f"unreadable: {delivery.problem}")[:4000] if unreadable else None,
        )
    )
    if unreadable:  # logged once: a redelivery of it is counted above, not logged again
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
    return True

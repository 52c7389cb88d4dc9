"""An SQS-like FIFO for the Dispatch Connect emulator's `agent/out`.

A delivered message becomes invisible for the visibility timeout and carries a fresh receipt; once the
timeout passes the receipt is dead and the message is delivered again with a new one. Time comes from an
injected clock so tests move it forward instead of sleeping.
"""

from __future__ import annotations

import base64
import os
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_PAGE = 10


class ReceiptError(Exception):
    """An ack the queue refuses; `code` is 'unknown_receipt', 'expired_receipt' or 'procedure_mismatch'."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class QueueFaults:
    """Delivery faults SQS really has. Rates are probabilities in [0, 1]; a seed keeps runs reproducible.

    duplicate_rate: a delivered message is delivered once more (same page if there is room, else the next
    poll) with a different receipt. shuffle_rate: a page is returned out of FIFO order.
    """

    duplicate_rate: float = 0.0
    shuffle_rate: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set(self, *, duplicate_rate: float | None = None, shuffle_rate: float | None = None) -> None:
        if duplicate_rate is not None:
            self.duplicate_rate = float(duplicate_rate)
        if shuffle_rate is not None:
            self.shuffle_rate = float(shuffle_rate)

    def clear(self) -> None:
        self.duplicate_rate = 0.0
        self.shuffle_rate = 0.0

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def as_dict(self) -> dict[str, float]:
        return {"duplicate_rate": self.duplicate_rate, "shuffle_rate": self.shuffle_rate}


@dataclass
class _Message:
    id: str
    procedure_id: str
    type: str
    payload: dict[str, Any]
    invisible_until: float = 0.0
    receipts: dict[str, float] = field(default_factory=dict)  # receipt -> expiry
    duplicate_pending: bool = False
    deliveries: int = 0


def _new_receipt() -> str:
    return base64.b64encode(os.urandom(48)).decode("ascii")


class OutboundQueue:
    """FIFO of outbound events with receipts, visibility timeout and optional delivery faults."""

    def __init__(
        self,
        clock: Callable[[], float],
        visibility_timeout: float = 30.0,
        faults: QueueFaults | None = None,
    ) -> None:
        self.clock = clock
        self.visibility_timeout = visibility_timeout
        self.faults = faults or QueueFaults()
        self._messages: list[_Message] = []
        self._deleted_receipts: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, msg_type: str, payload: dict[str, Any]) -> str:
        message = _Message(str(uuid.uuid4()), str(uuid.uuid4()), msg_type, payload)
        with self._lock:
            self._messages.append(message)
        return message.id

    def depth(self) -> int:
        with self._lock:
            return len(self._messages)

    def peek(self) -> list[dict[str, Any]]:
        """Every message still queued, visible or not, as envelopes without receipts (for inspection)."""
        with self._lock:
            return [self._envelope(m, "") for m in self._messages]

    def receive(self, max_messages: int) -> list[dict[str, Any]]:
        n = max(1, min(max_messages, MAX_PAGE))
        now = self.clock()
        page: list[dict[str, Any]] = []
        with self._lock:
            for message in self._messages:
                if len(page) >= n:
                    break
                if message.duplicate_pending:
                    message.duplicate_pending = False
                    page.append(self._deliver(message, now))
                elif message.invisible_until <= now:
                    page.append(self._deliver(message, now))
                    if self.faults.roll(self.faults.duplicate_rate):
                        message.duplicate_pending = True
            for message in self._messages:
                if len(page) >= n:
                    break
                if message.duplicate_pending:
                    message.duplicate_pending = False
                    page.append(self._deliver(message, now))
            if len(page) > 1 and self.faults.roll(self.faults.shuffle_rate):
                original = list(page)
                self.faults._rng.shuffle(page)
                if page == original:
                    page.reverse()
        return page

    def _deliver(self, message: _Message, now: float) -> dict[str, Any]:
        expiry = now + self.visibility_timeout
        message.invisible_until = expiry
        # Receipts of earlier deliveries die when a new visibility window opens, as in SQS.
        message.receipts = {r: e for r, e in message.receipts.items() if e > now}
        receipt = _new_receipt()
        message.receipts[receipt] = expiry
        message.deliveries += 1
        return self._envelope(message, receipt)

    @staticmethod
    def _envelope(message: _Message, receipt: str) -> dict[str, Any]:
        return {
            "Message": {
                "ID": message.id,
                "Receipt": receipt,
                "Request": {
                    "ProcedureID": message.procedure_id,
                    "Type": message.type,
                    "Payload": message.payload,
                },
            }
        }

    def delete(self, receipt: str, procedure_id: str | None) -> str:
        """Ack: delete the message the receipt belongs to. Returns 'deleted' or 'already_deleted'."""
        now = self.clock()
        with self._lock:
            for index, message in enumerate(self._messages):
                expiry = message.receipts.get(receipt)
                if expiry is None:
                    continue
                if expiry <= now:
                    raise ReceiptError(
                        "expired_receipt",
                        "receipt expired: the visibility timeout passed, poll again for a new receipt",
                    )
                if procedure_id is not None and procedure_id != message.procedure_id:
                    raise ReceiptError("procedure_mismatch", "ProcedureID does not belong to this receipt")
                del self._messages[index]
                for other, other_expiry in message.receipts.items():
                    self._deleted_receipts[other] = other_expiry
                return "deleted"
            expiry = self._deleted_receipts.get(receipt)
            if expiry is not None:
                if expiry <= now:
                    raise ReceiptError("expired_receipt", "receipt expired")
                # A duplicate delivery's receipt after the original was acked: SQS treats it as done.
                return "already_deleted"
        raise ReceiptError("unknown_receipt", "unknown receipt")

"""The `agent/in` apply pipeline: verified bodies are queued and applied later, in order, on one thread.

Dispatch answers 200 when a request is received, not when it is applied, so the emulator does the same:
`receive` only queues. `wait_idle` lets tests and benchmarks wait for the worker deterministically instead
of sleeping. The worker knows nothing of the emulator: it is handed the store and three callables.
"""

from __future__ import annotations

import csv
import gzip
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from connector.dispatch_connect.canonical import InboundRecord, parse_csv_body, parse_json_body
from connector.sandbox.dispatch_connect import events as ev
from connector.sandbox.dispatch_connect.store import RecordStore


class ApplyWorker:
    """Applies queued `agent/in` bodies to `store`.

    `count` bumps the emulator's counters, `feedback` sends an ack/err event (the emulator drops it when acks
    are off) and `fail` always emits, for an emulator bug that must not pass silently.
    """

    def __init__(
        self,
        store: RecordStore,
        *,
        count: Callable[[str], None],
        feedback: Callable[[ev.Event], None],
        fail: Callable[[ev.Event], None],
    ) -> None:
        self.store = store
        self._count = count
        self._feedback = feedback
        self._fail = fail
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dispatch-apply", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def receive(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        content_encoding: str = "",
        record_type: str | None = None,
        msg_id: str | None = None,
    ) -> None:
        """Queue a verified `agent/in` body for in-order application (decompression happens here too)."""
        with self._idle:
            self._pending += 1
        self._inbox.put(
            {
                "body": body,
                "content_type": content_type,
                "content_encoding": content_encoding,
                "record_type": record_type,
                "msg_id": msg_id,
            }
        )

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every received `agent/in` body is applied; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _work(self) -> None:
        while True:
            job = self._inbox.get()
            if job is None:
                return
            try:
                self._apply_body(**job)
            except Exception as exc:  # an emulator bug must not silently stop applying later requests
                self._fail(ev.err("unknown", None, job.get("msg_id"), f"Problem applying request ({exc})"))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _apply_body(
        self,
        body: bytes,
        content_type: str,
        content_encoding: str,
        record_type: str | None,
        msg_id: str | None,
    ) -> None:
        data_type = record_type or "unknown"
        try:
            if "gzip" in content_encoding.lower() or body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            text = body.decode("utf-8-sig")
            if "csv" in content_type.lower():
                items = parse_csv_body(text, record_type)
            else:
                items = list(parse_json_body(json.loads(text), record_type))
        except (OSError, EOFError, UnicodeDecodeError, ValueError, csv.Error) as exc:
            self._count("records_failed")
            self._feedback(ev.err(data_type, None, msg_id, f"Problem reading payload ({exc})"))
            return
        for item in items:
            if isinstance(item, InboundRecord):
                event = self.store.apply(item, msg_id)
            else:
                event = ev.err(item.record_type, None, msg_id, f"Problem reading csv ({item.message})")
            self._count("records_applied" if event[0] == "ack" else "records_failed")
            self._feedback(event)

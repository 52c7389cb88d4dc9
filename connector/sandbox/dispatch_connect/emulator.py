"""The Dispatch Connect emulator: signed `agent/in`, SQS-like `agent/out`/`agent/ack`, and a control API.

`agent/in` answers 200 as soon as the signature checks out and applies the records later, in order, on one
worker thread (like Dispatch, where 200 means received); `wait_idle()` lets tests and benchmarks wait for that
deterministically. The control methods play the field technician and emit outbound events in the playbook's
shapes. Nothing that came in through `agent/in` is echoed back, except `ack`/`err` events.

This module holds the server's lifecycle, the counters and the inspection helpers; the technician's actions
are in `control.py` (mixed in), the `agent/in` pipeline in `apply.py` and the WSGI routes in `app.py`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from connector.sandbox.dispatch_connect import events as ev
from connector.sandbox.dispatch_connect.app import DispatchApp
from connector.sandbox.dispatch_connect.apply import ApplyWorker
from connector.sandbox.dispatch_connect.control import (
    CONTROL_METHODS,
    NULL_ACTION_ID_TYPES,
    PAUSING_COMPLETE_REASONS,
    FieldControl,
)
from connector.sandbox.dispatch_connect.queue import OutboundQueue, QueueFaults
from connector.sandbox.dispatch_connect.store import RecordStore, json_copy, key_organization
from connector.sandbox.server import EmulatorServer, Faults

# Re-exported: they were defined here before control.py existed.
__all__ = [
    "CONTROL_METHODS",
    "NULL_ACTION_ID_TYPES",
    "PAUSING_COMPLETE_REASONS",
    "DispatchEmulator",
    "serve",
]


class DispatchEmulator(FieldControl):
    """A local Dispatch Connect account. Use as a context manager or `start()`/`stop()`."""

    def __init__(
        self,
        public_key: str,
        secret_hex: str,
        *,
        clock: Callable[[], float] = time.time,
        visibility_timeout: float = 30.0,
        acks_enabled: bool = True,
        faults: Faults | None = None,
        queue_faults: QueueFaults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.public_key = public_key
        self.secret_hex = secret_hex
        self.clock = clock
        self.acks_enabled = acks_enabled
        self.faults = faults or Faults()
        self.queue = OutboundQueue(clock, visibility_timeout, queue_faults)
        self.store = RecordStore(clock, key_organization(public_key))
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._applier = ApplyWorker(
            self.store, count=self.count, feedback=self._emit_feedback, fail=self._emit
        )
        self._server = EmulatorServer(DispatchApp(self), host=host, port=port)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def queue_faults(self) -> QueueFaults:
        return self.queue.faults

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def start(self) -> str:
        self._applier.start()
        return self._server.start()

    def serve_forever(self) -> None:
        self._applier.start()
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stop()
        self._applier.stop()

    def __enter__(self) -> DispatchEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n

    @property
    def counts(self) -> dict[str, int]:
        """Requests per endpoint ('agent/in', 'agent/out', 'agent/ack', 'control'), 'records_applied',
        'records_failed', 'events', 'acks', 'acks_refused', 'unauthorized'."""
        with self._counts_lock:
            return dict(self._counts)

    def records(self, record_type: str) -> dict[str, dict[str, Any]]:
        """Current records of a type by external id (records without one are keyed '#<dispatch id>')."""
        return self.store.snapshot(record_type)

    def job_assignments(self, external_id: str) -> list[dict[str, Any]]:
        """Every provider a job has been created for, with that Dispatch job's status."""
        with self.store.lock:
            return json_copy(self.store.job_assignments.get(external_id, []))

    @property
    def warnings(self) -> list[str]:
        with self.store.lock:
            return list(self.store.warnings)

    def queue_depth(self) -> int:
        return self.queue.depth()

    def state(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "queue_depth": self.queue_depth(),
            "faults": {k: vars(v) for k, v in self.faults.plans.items()},
            "queue_faults": self.queue.faults.as_dict(),
            "acks_enabled": self.acks_enabled,
        }

    # -- fault and config endpoints --------------------------------------------------------------

    def set_faults(self, endpoint: str = "*", clear: bool = False, **plan: Any) -> dict[str, Any]:
        if clear:
            self.faults.clear()
        else:
            self.faults.set(endpoint, **plan)
        return self.state()

    def set_queue_faults(
        self,
        duplicate_rate: float | None = None,
        shuffle_rate: float | None = None,
        clear: bool = False,
    ) -> dict[str, Any]:
        if clear:
            self.queue.faults.clear()
        self.queue.faults.set(duplicate_rate=duplicate_rate, shuffle_rate=shuffle_rate)
        return self.state()

    # -- agent/in --------------------------------------------------------------------------------

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
        self._applier.receive(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            record_type=record_type,
            msg_id=msg_id,
        )

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every received `agent/in` body is applied; False on timeout."""
        return self._applier.wait_idle(timeout)

    def _emit(self, event: ev.Event) -> None:
        self.emit(*event)

    def _emit_feedback(self, event: ev.Event) -> None:
        """Read `acks_enabled` at send time, so a test may switch acks off on a running emulator."""
        if self.acks_enabled:
            self.emit(*event)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    public_key: str,
    secret_hex: str,
    notes: Iterable[str] = (),
    **kwargs: Any,
) -> None:
    """Run the emulator in the foreground until interrupted (for `dispatch-connector sandbox dispatch`).

    Prints its URL, the key it expects and where the technician's control API is, then `notes` (the caller
    says where the secret came from: this module cannot tell a throwaway secret from a real one, so it never
    prints it)."""
    emulator = DispatchEmulator(public_key, secret_hex, host=host, port=port, **kwargs)
    print(f"Dispatch Connect emulator on {emulator.base_url}")
    print(f"  X-Dispatch-Key (public key): {public_key}")
    print(f"  field technician: POST {emulator.base_url}/control/<method> (docs/wire-formats.md)")
    for line in notes:
        print(line)
    print("", flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()

"""For bench/poller.py and bench/publisher.py: the daemon's receiving jobs, run as `dispatch-connector run`
runs them, and a watcher that tells when everything they were given has landed.

The benchmarks measure the engine the way it runs: a started `Daemon` whose poll, process and writeback jobs
wake each other (sync.service.cadence), not a loop calling the stages one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sync.context import SyncContext
from sync.service import daemon as daemon_module

INBOUND_ROLE = "bench-inbound"  # the receiving jobs only: no publish cycle inside the measurement
WATCH_S = 0.02  # how often the watcher reads the store's progress (from its own connection)


def inbound_daemon(ctx: SyncContext) -> daemon_module.Daemon:
    """A daemon with the poll, process and writeback jobs at their default intervals, not yet started."""
    daemon_module.ROLES[INBOUND_ROLE] = ("poll", "process", "writeback")
    daemon = daemon_module.Daemon(ctx, role=INBOUND_ROLE)
    daemon.check_mapping()  # asked once per context: its describe calls stay out of measured counts
    return daemon


@dataclass
class Progress:
    inbox: int  # inbox rows
    new: int  # inbox rows not yet applied
    pending: int  # write-back rows not yet written
    sent: int  # outbox batches sent and not yet confirmed


_COUNTS = (
    "SELECT count(*) FROM inbox_message",
    "SELECT count(*) FROM inbox_message WHERE status = 'new'",
    "SELECT count(*) FROM write_back WHERE status = 'pending'",
    "SELECT count(*) FROM outbox_batch WHERE status = 'sent'",
)


def progress(ctx: SyncContext) -> Progress:
    """Read outside any transaction: the engine's transactions take SQLite's write lock (BEGIN IMMEDIATE),
    and a watcher taking it every WATCH_S would slow down what it measures. WAL readers take no lock."""
    raw = ctx.engine.raw_connection()
    try:
        cursor = raw.cursor()
        counts = [cursor.execute(sql).fetchone()[0] for sql in _COUNTS]
        cursor.close()
    finally:
        raw.close()
    return Progress(*counts)


@dataclass
class Run:
    received_s: float  # until the inbox held `expected` more messages
    done_s: float  # until they were applied and nothing waited to be written back
    received: int
    runs: dict[str, int]  # job -> runs during the measurement


def run_until_landed(
    ctx: SyncContext,
    daemon: daemon_module.Daemon,
    expected: int,
    *,
    started: float | None = None,
    done: Callable[[Progress], bool] = lambda p: True,
    give_up_s: float = 900,
) -> Run:
    """Start `daemon`, watch the store until `expected` new messages are in, applied and written back (and
    `done` holds), stop it. Times count from `started` (perf_counter; default: now)."""
    before = progress(ctx).inbox
    started = time.perf_counter() if started is None else started
    received_s: float | None = None
    daemon.start()
    try:
        while True:
            time.sleep(WATCH_S)
            now = time.perf_counter()
            if now - started > give_up_s:
                raise SystemExit(f"the daemon did not land {expected} messages in {give_up_s} s")
            p = progress(ctx)
            if received_s is None and p.inbox - before >= expected:
                received_s = now - started
            if received_s is not None and p.new == 0 and p.pending == 0 and done(p):
                break
    finally:
        daemon.stop()
    runs = {name: status.runs for name, status in daemon.health.snapshot().items()}
    return Run(received_s, now - started, p.inbox - before, runs)

"""What each daemon job asks of the others when it has done something (the wake-ups' rules).

The intervals stay the idle cadence; these make work flow through at once (docs/engine.md, "Wake-ups"):

- poll: every commit that stored a new message wakes the processor (during the drain); after the drain,
  poll again at once when messages came, every POLL_HOT_S for a while after the last message or publish,
  then the idle interval;
- process: when it applied (or failed) a message, wake the write-back flush; when it hit its batch limit,
  run again at once;
- publish: when it sent a batch, wake the flush (HTTP-200 confirmations and refusals queue write-backs)
  and poll at once, which starts a hot spell (the acks and field reactions come back through the pull
  channel);
- writeback: a flush woken early waits for its Collections calls to fill (sync.writeback.queue
  flush_wait_s), by waking itself again later instead of flushing a handful of records.

Every call is a no-op outside a running daemon (sync.service.wakeups.wake).
"""

from __future__ import annotations

import math
import time

from sync.context import SyncContext
from sync.inbound.poller import PollReport, poll_again_in
from sync.inbound.processor import ProcessReport
from sync.service.wakeups import wake, waking
from sync.writeback.queue import flush_wait_s

_last_activity: dict[int, float] = {}  # monotonic time of the last message received or batch sent, per ctx


def wake_processor() -> None:
    wake("process")


def after_publish(ctx: SyncContext, requests_sent: int) -> None:
    if requests_sent:
        _last_activity[id(ctx)] = time.monotonic()
        wake("writeback")
        wake("poll")  # Dispatch answers the first batches while the last are sent


def after_poll(ctx: SyncContext, report: PollReport) -> None:
    now = time.monotonic()
    if report.received:
        _last_activity[id(ctx)] = now
    delay = poll_again_in(report.received, now - _last_activity.get(id(ctx), -math.inf))
    if delay is not None:
        wake("poll", delay)


def after_process(report: ProcessReport, limit: int) -> None:
    if report.processed or report.failed:
        wake("writeback")
    if report.processed + report.failed >= limit:
        wake("process")


def writeback_wait(ctx: SyncContext) -> float:
    """Seconds to let the write-back queue fill before flushing (0.0: flush now); asks for that later run.
    Outside a running daemon (`run --once`) nobody would run it later: always now."""
    if not waking():
        return 0.0
    wait = flush_wait_s(ctx.engine, batch_size=ctx.settings.writeback_batch_size)
    if wait > 0:
        wake("writeback", wait)
    return wait

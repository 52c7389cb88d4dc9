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
  flush_timing), by waking itself again later instead of flushing a handful of records; one that goes
  while the queue still fills sends whole calls and wakes itself for the rest.

Every call is a no-op outside a running daemon (sync.service.wakeups.wake).
"""

from __future__ import annotations

import math
import time

from sync.context import SyncContext
from sync.inbound.poller import PollReport, poll_again_in
from sync.inbound.processor import ProcessReport
from sync.service.wakeups import wake, waking
from sync.writeback.queue import flush_timing

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


_whole_calls: dict[int, bool] = {}  # per ctx: the flush writeback_wait said to run now sends whole calls


def writeback_wait(ctx: SyncContext) -> float:
    """Seconds to let the write-back queue fill before flushing (0.0: flush now); asks for that later run.
    A flush now while the queue still fills sends whole Collections calls (`whole_calls`), and the rest is
    asked for when the burst is quiet or overdue. Outside a running daemon (`run --once`) nobody would run
    it later: always now, everything."""
    _whole_calls[id(ctx)] = False
    if not waking():
        return 0.0
    wait, rest_in = flush_timing(ctx.engine, batch_size=ctx.settings.writeback_batch_size)
    if wait > 0:
        wake("writeback", wait)
    elif rest_in is not None:
        _whole_calls[id(ctx)] = True
        wake("writeback", rest_in)
    return wait


def whole_calls(ctx: SyncContext) -> bool:
    """Whether the flush after the last `writeback_wait` (same job run) sends only full Collections calls."""
    return _whole_calls.get(id(ctx), False)

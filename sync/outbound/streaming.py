"""CRM change events drive the publisher: a Salesforce Change Data Capture subscription over every mapped
object publishes just the records that changed, a coalescing window after the first event (docs/streaming.md).

Why a listener and not a faster polling cycle: a cycle costs one SOQL query per object whatever changed, and
its latency is its interval; change events name the records, so a change reaches the back end within the
window plus one query by id. The watermark cycle stays as the safety net, at a longer interval.

Store then advance: a channel's replay id is stored only after the outbox holding its events' changes has
committed (or the polling cycle that covered a gap has), so a crash re-reads events and never skips one; what
it re-reads hashes the same and publishes nothing. Anything that stops the stream (an expired replay id, the
daily allocation, an outage, a dropped subscription) falls back to the watermark cycle at once, which covers
every change since the last cycle, then subscribes again from new events with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlmodel import Session, select

from connector.crm import CrmError
from connector.crm_stream import (
    AllocationExhausted,
    ChangeEvent,
    ChangeStream,
    ReplayIdTooOld,
    StreamUnavailable,
    channel_for,
)
from connector.mapping import MappingConfig, ObjectSpec
from sync.context import SyncContext
from sync.outbound.outbox import PublishReport
from sync.outbound.publisher import publish_changes, rows_by_id
from sync.store.db import session_scope
from sync.store.dbtypes import utcnow
from sync.store.models import StreamPosition
from sync.store.synclog import error_words, write_log

log = logging.getLogger("dispatch_connector.streaming")

# Fields Salesforce itself moves on every save: an update that changed only these and write-back fields is
# the connector's own write landing (or a no-op save), never a reason to publish.
SYSTEM_FIELDS = frozenset({"lastmodifieddate", "systemmodstamp", "lastmodifiedbyid"})
# Longest long-poll round with nothing buffered: how soon stop() is heard (a connect in flight cannot be cut
# short), at the price of one streaming request per round (they do not count against the REST API limit).
IDLE_WAIT_S = 5.0
FIRST_BACKOFF_S = 2.0  # resubscribing after a fallback waits 2 s, 4 s, 8 s ... up to PUBLISH_INTERVAL_S

_CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (ReplayIdTooOld, "the stored replay id is older than the events Salesforce still keeps"),
    (AllocationExhausted, "the org's daily change-event delivery allocation is used up"),
    (StreamUnavailable, "the subscription is unavailable"),
    (CrmError, "Salesforce could not be reached"),
)


class HealthBoard(Protocol):
    """What the listener reports to (sync.service.health.JobHealth)."""

    def started(self, name: str) -> None: ...
    def finished(
        self, name: str, result: str, *, summary: str | None = None, error: str | None = None
    ) -> None: ...


@dataclass
class _ChangeSet:
    """What the window collected: record ids per object, child ids per child object, gaps, replay ids."""

    ids: dict[str, dict[str, None]] = field(default_factory=dict)
    child_ids: dict[str, dict[str, None]] = field(default_factory=dict)
    gaps: list[ChangeEvent] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    events: int = 0
    oldest: datetime | None = None  # commit time of the window's oldest event (for the lag)

    def add(self, into: dict[str, dict[str, None]], entity: str, ids: Iterable[str]) -> None:
        into.setdefault(entity, {}).update(dict.fromkeys(ids))


def stream_channels(mapping: MappingConfig) -> dict[str, str]:
    """channel -> object: every mapped object and the child objects its `children` declare."""
    channels = {channel_for(name): name for name in mapping.objects}
    for child, _parent, _field in _child_links(mapping):
        channels.setdefault(channel_for(child), child)
    return channels


def _child_links(mapping: MappingConfig) -> list[tuple[str, str, str]]:
    """(child object, parent object, the child's lookup field) for each declared child relationship."""
    links = []
    for name, spec in mapping.objects.items():
        for child in spec.children.values():
            links.append((child.object, name, child.parent_field))
    return links


def echo_fields(spec: ObjectSpec) -> frozenset[str]:
    """Lower-cased fields whose change alone is no reason to publish: what the connector writes back (and
    the pending flag it clears) plus Salesforce's system fields."""
    names = {f for f in spec.write_back.all_fields() if f}
    if spec.pending:
        names.add(spec.pending.field)
    return frozenset({n.lower() for n in names} | SYSTEM_FIELDS)


class StreamListener:
    """One ChangeStream over every mapped object's channel, in a thread of its own (start/stop/health).

    `step()` is one long-poll round and, when the window closed, one publish: tests drive it directly with an
    injected `clock` (the window), `wait` (backoff) and `stream_factory`."""

    def __init__(
        self,
        ctx: SyncContext,
        *,
        auto: bool = False,
        board: HealthBoard | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], Any] | None = None,
        stream_factory: Callable[..., Any] = ChangeStream,
        idle_wait_s: float = IDLE_WAIT_S,
    ) -> None:
        self.ctx, self.auto, self.board = ctx, auto, board
        self.channels = stream_channels(ctx.mapping)
        self.parents: dict[str, list[tuple[str, str]]] = {}
        for child, parent, lookup in _child_links(ctx.mapping):
            self.parents.setdefault(child, []).append((parent, lookup))
        self.echo = {name: echo_fields(spec) for name, spec in ctx.mapping.objects.items()}
        self._clock, self._factory, self._idle_wait_s = clock, stream_factory, idle_wait_s
        self._stopping = threading.Event()
        self._busy = threading.Lock()  # held while publishing (never while polling): stop() waits for it
        self._wait = wait or self._stopping.wait
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._buffer = _ChangeSet()
        self._deadline: float | None = None
        self._failures = 0  # fallbacks (or failed publishes) in a row: the backoff's exponent
        self._outage: str | None = None  # the cause already reported: the same again writes no row
        self._bridge = False  # a cycle is due once the new subscription stands (it covers the time before)
        self._blips = 0  # transient stream errors in a row while streaming: the first is retried in place
        self.state = "starting"  # streaming | polling | unavailable (auto, no CDC) | stopped
        self.counts = {
            "events": 0,
            "echoes": 0,
            "change_sets": 0,
            "records_read": 0,
            "records_changed": 0,
            "fallbacks": 0,
            "retried_in_place": 0,
            "cycles": 0,
        }
        self.last_error: str | None = None
        self.last_lag_s: float | None = None
        self._last_cycle: float | None = None  # when a watermark cycle last ran (the safety net's clock)

    # -- thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self.run, name="crm-change-events", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop: wait for a publish in hand, not for a long poll in flight (the thread ends when it returns,
        doing nothing more). Events not yet published are read again at the next start."""
        self._stopping.set()
        if self._busy.acquire(timeout=timeout):
            self._busy.release()
        if self._thread is None or not self._thread.is_alive():
            self._close()
        if self.state != "unavailable":
            self.state = "stopped"

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self.step()
                except Exception as exc:  # a failed publish: the buffer is kept and tried again
                    self._publish_failed(exc)
        finally:
            self._close()
            if self.state != "unavailable":
                self.state = "stopped"

    def cycle_due(self) -> bool:
        """Whether the scheduled watermark cycle runs now: always while events do not stream (polling,
        unavailable, starting), else once every STREAM_PUBLISH_INTERVAL_S as the safety net."""
        now = self._clock()
        interval = self.ctx.settings.stream_publish_interval_s
        if self.state == "streaming" and self._last_cycle is not None and now - self._last_cycle < interval:
            return False
        self._last_cycle = now
        return True

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "channels": sorted(self.channels),
            "buffered_events": self._buffer.events,
            "last_error": self.last_error,
            "last_lag_s": self.last_lag_s,
            **self.counts,
        }

    # -- one round ------------------------------------------------------------------------------

    def step(self) -> None:
        if self.state == "unavailable":  # auto, and the org has no change events: the daemon polls as before
            self._stopping.set()
            return
        if self._stream is None and self._failures:
            self._wait(self._backoff())
            if self._stopping.is_set():
                return
        error: CrmError | None = None
        try:
            if self._stream is None:
                self._stream = self._open()  # logs in to Salesforce on first use
            events = self._stream.poll(self._poll_wait())
        except CrmError as exc:  # StreamError and its kinds, or Salesforce unreachable
            events, error = [], exc
        with self._busy:
            if self._stopping.is_set():
                return  # stopped while polling: these events are read again at the next start
            if error is not None:
                if self._retry_in_place(error):
                    return
                self._fall_back(error)
                return
            self._blips = 0
            self._take(events)
            if self._bridge:  # the subscription stands: a cycle covers the changes from before it
                self._cycle()
                self._bridge = False
            if self.state != "streaming":
                self._resumed()
            if self._buffer.events and self._deadline is not None and self._clock() >= self._deadline:
                self._flush()

    def _retry_in_place(self, error: CrmError) -> bool:
        """One transient failure (a 503, a dropped connection) while streaming is retried on the same stream,
        which resumes after the last replay id it returned: a fallback (warning rows, a full cycle, a new
        subscription) for one lost request was most of what a flaky network produced. A second in a row, or
        an error retrying cannot mend (an expired replay id, a used-up allocation), falls back."""
        mendable = error.retriable and not isinstance(error, ReplayIdTooOld | AllocationExhausted)
        if self.state != "streaming" or self._stream is None or not mendable or self._blips:
            self._blips = 0
            return False
        self._blips += 1
        self.counts["retried_in_place"] += 1
        log.info("change events: %s; retrying on the same subscription", error_words(error))
        return True

    def _poll_wait(self) -> float:
        if self._deadline is None:
            return self._idle_wait_s
        return max(0.0, self._deadline - self._clock())

    def _open(self) -> Any:
        """A stream resuming after each channel's stored replay id; a channel without one (first start, or
        after a fallback) starts from new events and a bridging cycle covers what came before."""
        with Session(self.ctx.engine) as session:
            rows = {row.channel: row for row in session.exec(select(StreamPosition)).all()}
        replay: dict[str, int | None] = {}
        for channel in self.channels:
            row = rows.get(channel)
            usable = row is not None and row.mode == "streaming" and row.replay_id
            replay[channel] = int(str(row.replay_id)) if usable and row is not None else None
        self._bridge = any(value is None for value in replay.values())
        return self._factory(self.ctx.crm, replay)

    def _take(self, events: Iterable[ChangeEvent]) -> None:
        for event in events:
            buffer = self._buffer
            buffer.events += 1
            self.counts["events"] += 1
            buffer.positions[event.channel] = max(event.replay_id, buffer.positions.get(event.channel, 0))
            stamp = event.commit_timestamp
            buffer.oldest = stamp if buffer.oldest is None or stamp < buffer.oldest else buffer.oldest
            if self._deadline is None:
                self._deadline = self._clock() + self.ctx.settings.stream_coalesce_ms / 1000
            if event.gap:
                buffer.gaps.append(event)
            elif self._is_echo(event):
                self.counts["echoes"] += 1
            elif event.entity in self.ctx.mapping.objects:
                buffer.add(buffer.ids, event.entity, event.record_ids)
            elif event.entity in self.parents:
                buffer.add(buffer.child_ids, event.entity, event.record_ids)

    def _is_echo(self, event: ChangeEvent) -> bool:
        ignorable = self.echo.get(event.entity)
        if event.change_type != "UPDATE" or ignorable is None or not event.changed_fields:
            return False
        return all(name.lower() in ignorable for name in event.changed_fields)

    # -- publishing -----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Publish the window's change set (or, after a gap, run the watermark cycle), then store the
        replay ids: store then advance."""
        buffer = self._buffer
        if self.board:
            self.board.started("stream")
        if buffer.gaps:
            report = self._cycle()
        else:
            only = {name: list(ids) for name, ids in buffer.ids.items()}
            for name, ids in self._parents_of(buffer.child_ids).items():
                only.setdefault(name, []).extend(i for i in ids if i not in buffer.ids.get(name, {}))
            only = {name: ids for name, ids in only.items() if ids}
            report = publish_changes(self.ctx, only=only) if only else PublishReport()
        with session_scope(self.ctx.engine) as session:
            for event in buffer.gaps:
                write_log(
                    session,
                    f"change events on {event.channel}: Salesforce sent a gap event ({event.change_type}, "
                    f"{len(event.record_ids)} record id(s)) in place of changes it could not deliver; the "
                    "watermark polling cycle run at once covered them",
                    level="warning",
                    entity=event.entity,
                )
            self._store_positions(session, buffer.positions)
        if buffer.oldest is not None:
            self.last_lag_s = max(0.0, (datetime.now(UTC) - buffer.oldest).total_seconds())
        self.counts["change_sets"] += 1
        self.counts["records_read"] += report.read
        self.counts["records_changed"] += report.changed
        summary = (
            f"{buffer.events} event(s), {report.changed} record(s) changed, {report.requests_sent} request(s)"
            + (f", {len(buffer.gaps)} gap(s) covered by a polling cycle" if buffer.gaps else "")
        )
        self._buffer, self._deadline, self._failures, self.last_error = _ChangeSet(), None, 0, None
        if self.board:
            self.board.finished("stream", "ok", summary=summary)
        log.info("change events: %s", summary)

    def _parents_of(self, child_ids: Mapping[str, Mapping[str, None]]) -> dict[str, list[str]]:
        """Parent record ids of changed child rows, one query per child object (deleted children too)."""
        parents: dict[str, dict[str, None]] = {}
        for child, ids in child_ids.items():
            for parent, lookup in self.parents.get(child, []):
                select_soql = f"SELECT Id, {lookup} FROM {child}"
                for row in rows_by_id(self.ctx.crm, child, ids, select_soql):
                    if row.get(lookup):
                        parents.setdefault(parent, {})[str(row[lookup])] = None
        return {name: list(ids) for name, ids in parents.items()}

    def _store_positions(self, session: Session, positions: Mapping[str, int]) -> None:
        for channel, replay_id in positions.items():
            row = session.get(StreamPosition, channel) or StreamPosition(channel=channel)
            row.replay_id, row.mode, row.last_error, row.updated_at = (
                str(replay_id),
                "streaming",
                None,
                utcnow(),
            )
            session.add(row)

    def _cycle(self) -> PublishReport:
        """The watermark polling cycle: it covers every change since the last one, whatever was missed."""
        report = publish_changes(self.ctx)
        self._last_cycle = self._clock()
        self.counts["cycles"] += 1
        return report

    # -- falling back and coming back -----------------------------------------------------------

    def _fall_back(self, exc: Exception) -> None:
        """Stream lost: say so once per cause, mark the channels polling, run the cycle now (it covers the
        gap and whatever the window held), and subscribe again from new events after a backoff."""
        self._close()
        cause = next(text for kind, text in _CAUSES if isinstance(exc, kind))
        words = error_words(exc)
        self.last_error = f"{cause} ({words})"
        self._buffer, self._deadline = _ChangeSet(), None
        if self.auto and self.state == "starting" and isinstance(exc, StreamUnavailable):
            self._unavailable(words)
            return
        self.counts["fallbacks"] += 1
        self._failures += 1
        self.state = "polling"
        with session_scope(self.ctx.engine) as session:
            for channel in sorted(self.channels):
                if self._outage != cause:
                    write_log(
                        session,
                        f"change events on {channel} stopped: {cause} ({words}); publishing by the watermark "
                        "polling cycle, run now to cover the gap, and subscribing again from new events",
                        level="warning",
                        entity=self.channels[channel],
                    )
                self._mark(session, channel, "polling", f"{cause} ({words})")
        self._outage = cause
        log.warning("change events stopped: %s (%s); falling back to the polling cycle", cause, words)
        self._cycle_logged()

    def _unavailable(self, words: str) -> None:
        """STREAMING=auto and the org gives us no change events: poll as without streaming, said once."""
        self.state = "unavailable"
        interval = self.ctx.settings.publish_interval_s
        with session_scope(self.ctx.engine) as session:
            write_log(
                session,
                f"change events are not available ({words}); STREAMING=auto publishes by the watermark "
                f"polling cycle every {interval:g} s. Enable Change Data Capture for "
                f"{', '.join(self.channels.values())} (docs/streaming.md) and restart to stream",
                level="info",
            )
            for channel in self.channels:
                self._mark(session, channel, "polling", f"change events not available ({words})")
        log.info("change events not available (%s); polling every %g s", words, interval)

    def _cycle_logged(self) -> None:
        try:
            self._cycle()
        except Exception as exc:  # the CRM is down too: the next attempt runs the cycle again
            log.error("polling cycle after the fallback failed: %s", error_words(exc))

    def _resumed(self) -> None:
        if self.state == "polling":
            with session_scope(self.ctx.engine) as session:
                write_log(
                    session,
                    f"change events resumed on {', '.join(sorted(self.channels))} (from new events; the "
                    "polling cycle covered the time without them)",
                    level="info",
                )
                for channel in self.channels:
                    self._mark(session, channel, "streaming", None)
        self.state, self._outage, self._failures = "streaming", None, 0

    def _mark(self, session: Session, channel: str, mode: str, error: str | None) -> None:
        row = session.get(StreamPosition, channel) or StreamPosition(channel=channel)
        row.mode, row.last_error, row.updated_at = mode, error, utcnow()
        if mode == "polling":
            row.replay_id = None  # the cycle covers what came before; resubscribe from new events
        session.add(row)

    def _publish_failed(self, exc: Exception) -> None:
        """A publish of the window failed (CRM or store down, another process publishing): keep the events,
        say it once per message, retry after a backoff. Replay ids stay where they were."""
        words = error_words(exc)
        if words != self.last_error:
            try:
                with session_scope(self.ctx.engine) as session:
                    write_log(
                        session,
                        f"publishing {self._buffer.events} change event(s) failed, retrying: {words}",
                        level="warning",
                    )
            except Exception:  # the store itself is down: the log line below is all we can do
                pass
        self.last_error = words
        self._failures += 1
        if self.board:
            self.board.finished("stream", "error", error=words)
        log.error("publishing change events failed, retrying: %s", words)
        self._wait(self._backoff())

    def _backoff(self) -> float:
        return float(
            min(self.ctx.settings.publish_interval_s, FIRST_BACKOFF_S * 2 ** max(0, self._failures - 1))
        )

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:  # closing a dead stream: nothing left to release
                log.debug("closing the change stream: %s", error_words(exc))

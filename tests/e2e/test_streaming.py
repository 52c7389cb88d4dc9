"""CRM change events drive the publisher, over real sockets: the Salesforce emulator's Streaming API (CometD,
Change Data Capture on WorkOrder and Account), the connector's ChangeStream, the listener, Dispatch Connect.

The listener is stepped in the test thread (one long-poll round per step) with an injected clock for the
coalescing window; waiting for the emulator to deliver events is a bounded loop of rounds, not a sleep. The
emulator's own clock is moved for the retention window."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from connector.crm_stream import channel_for
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.outbound.streaming import StreamListener
from sync.service.daemon import Daemon
from sync.store.models import StreamPosition, SyncLog
from tests.e2e.conftest import FIXTURE, PUBLIC_KEY, SECRET, FakeClock, Harness, make_context
from tests.org import PROVIDER_ACCOUNT

WO, ACCOUNT = channel_for("WorkOrder"), channel_for("Account")


class Moving:
    """A clock that moves only when told (the emulator's datetime clock, the listener's monotonic one)."""

    def __init__(self, start: Any) -> None:
        self.now = start

    def __call__(self) -> Any:
        return self.now


@dataclass
class Live:
    h: Harness
    sf_clock: Moving
    clock: Moving
    waits: list[float]

    def listener(self, **kw: Any) -> StreamListener:
        return StreamListener(self.h.ctx, clock=self.clock, wait=self.waits.append, idle_wait_s=0.2, **kw)

    def pump(self, listener: StreamListener, done: Callable[[], bool], rounds: int = 100) -> None:
        """Long-poll rounds until `done` (the emulator delivers on its own threads)."""
        for _ in range(rounds):
            if done():
                return
            listener.step()
        assert done(), f"not delivered after {rounds} rounds: {listener.health()}"

    def settle(self, listener: StreamListener) -> None:
        """Close the coalescing window and publish what it holds."""
        self.clock.now += self.h.ctx.settings.stream_coalesce_ms / 1000
        listener.step()

    def agent_in(self) -> int:
        self.h.dispatch.wait_idle(10)
        return int(self.h.dispatch.counts.get("agent/in", 0))

    def jobs(self) -> dict[str, Any]:
        self.h.dispatch.wait_idle(10)
        return dict(self.h.dispatch.records("job"))

    def positions(self) -> dict[str, StreamPosition]:
        with Session(self.h.ctx.engine) as session:
            return {row.channel: row for row in session.exec(select(StreamPosition)).all()}

    def rows(self, level: str) -> list[str]:
        with Session(self.h.ctx.engine) as session:
            return [r.message for r in session.exec(select(SyncLog).where(SyncLog.level == level)).all()]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    sf_clock = Moving(datetime.now(UTC).replace(microsecond=0))
    clock = FakeClock()
    with (
        SalesforceEmulator(FIXTURE, clock=sf_clock) as sf,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock) as dispatch,
    ):
        provider = sf.insert("Account", dict(PROVIDER_ACCOUNT))
        contact = sf.insert("Contact", {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com"})
        ctx = make_context(tmp_path, sf, dispatch)
        yield Live(Harness(sf, dispatch, ctx, clock, provider, contact), sf_clock, Moving(1000.0), [])
        ctx.engine.dispose()


def test_a_change_is_published_from_its_event(live: Live) -> None:
    listener = live.listener()
    listener.step()  # subscribes (a bridging cycle covers the time before)
    wo = live.h.work_order(Subject="From an event")
    live.pump(listener, lambda: listener.health()["buffered_events"] >= 1)
    live.settle(listener)
    assert live.jobs()[wo]["title"] == "From an event"
    assert int(str(live.positions()[WO].replay_id)) > 0 and listener.state == "streaming"


def test_a_burst_of_1000_saves_is_one_change_set(live: Live) -> None:
    listener = live.listener()
    listener.step()
    base = {
        "Subject": "Burst",
        "Street": "1 Main St",
        "City": "Springfield",
        "State": "IL",
        "PostalCode": "62701",
    }
    rows = [
        {**base, "Dispatch_Send__c": "2026-11-25T09:00:00Z", "Subject": f"Burst {n}"} for n in range(1000)
    ]
    before = live.agent_in()
    live.h.sf.insert_many("WorkOrder", rows)
    live.pump(listener, lambda: listener.health()["buffered_events"] >= 1000)
    assert live.agent_in() == before  # still inside the window
    live.settle(listener)
    batch = live.h.ctx.settings.batch_size
    assert listener.counts["records_changed"] == 1000
    assert live.agent_in() - before == math.ceil(1000 / batch) == 5
    assert len(live.jobs()) == 1000


def test_a_restart_resumes_from_the_stored_replay_ids_and_loses_nothing(live: Live) -> None:
    first = live.listener()
    first.step()
    wo = live.h.work_order(Subject="Before the restart")
    live.h.sf.update("Account", live.h.provider_id, {"Phone": "+15550199"})  # an event on each channel
    live.pump(first, lambda: first.health()["buffered_events"] >= 2)
    live.settle(first)
    first.stop()
    stored = {channel: row.replay_id for channel, row in live.positions().items()}
    assert set(stored) == {WO, ACCOUNT} and all(stored.values())
    # while the connector is down: an edit and a new record
    live.h.sf.update("WorkOrder", wo, {"Subject": "Edited while down"})
    created = live.h.work_order(Subject="Created while down")
    second = live.listener()
    live.pump(second, lambda: second.health()["buffered_events"] >= 2)
    live.settle(second)
    jobs = live.jobs()
    assert jobs[wo]["title"] == "Edited while down" and jobs[created]["title"] == "Created while down"
    assert second.counts["cycles"] == 0  # the events themselves, not a polling cycle, carried the changes


def test_a_gap_event_falls_back_to_the_cycle_and_loses_nothing(live: Live) -> None:
    listener = live.listener()
    listener.step()
    live.h.sf.streaming.inject_gaps(1)
    lost = live.h.work_order(Subject="Only a gap event says so")
    live.pump(listener, lambda: listener.health()["buffered_events"] >= 1)
    live.settle(listener)
    assert live.jobs()[lost]["title"] == "Only a gap event says so"
    assert any(WO in m and "gap event (GAP_CREATE" in m for m in live.rows("warning"))
    assert listener.counts["cycles"] == 2  # the bridge at subscription, the gap's


def test_a_retention_miss_falls_back_to_the_cycle_and_loses_nothing(live: Live) -> None:
    first = live.listener()
    first.step()
    wo = live.h.work_order()
    live.h.sf.update("Account", live.h.provider_id, {"Phone": "+15550199"})
    live.pump(first, lambda: first.health()["buffered_events"] >= 2)
    live.settle(first)
    first.stop()
    live.sf_clock.now += timedelta(hours=73)  # down longer than Salesforce keeps events (72 h)
    live.h.sf.update("WorkOrder", wo, {"Subject": "Edited three days later"})
    second = live.listener()
    second.step()  # the stored replay id is refused: warning, polling cycle at once
    assert live.jobs()[wo]["title"] == "Edited three days later"
    warnings = live.rows("warning")
    assert any(WO in m and "older than the events Salesforce still keeps" in m for m in warnings), warnings
    assert live.positions()[WO].mode == "polling" and second.state == "polling"
    second.step()  # resubscribes from new events after a backoff
    assert live.waits == [2.0] and second.state == "streaming" and live.positions()[WO].mode == "streaming"


def test_an_exhausted_allocation_falls_back_with_a_warning_row(live: Live) -> None:
    listener = live.listener()
    listener.step()
    live.h.sf.streaming.set_allocation(10, used=10)
    wo = live.h.work_order(Subject="No events left today")
    live.pump(listener, lambda: listener.state == "polling")
    assert live.jobs()[wo]["title"] == "No events left today"
    warnings = [m for m in live.rows("warning") if "daily change-event delivery allocation is used up" in m]
    assert {WO, ACCOUNT} == {channel for channel in (WO, ACCOUNT) for m in warnings if channel in m}


def test_write_backs_publish_nothing(live: Live) -> None:
    listener = live.listener()
    listener.step()
    wo = live.h.work_order()
    live.pump(listener, lambda: listener.health()["buffered_events"] >= 1)
    live.settle(listener)
    live.h.round_trip()  # the connector writes Dispatch_Last_Synced__c (as the integration user)
    assert live.h.wo(wo)["Dispatch_Last_Synced__c"] is not None
    before = live.agent_in()
    live.pump(listener, lambda: listener.counts["echoes"] >= 1)
    live.settle(listener)
    assert live.agent_in() == before and listener.counts["records_changed"] == 1


def test_streaming_off_runs_no_listener_and_publishes_as_before(live: Live, tmp_path: Path) -> None:
    (tmp_path / "off").mkdir()
    ctx = make_context(tmp_path / "off", live.h.sf, live.h.dispatch, streaming="off")
    daemon = Daemon(ctx, role="publisher")
    daemon.start()
    daemon.stop()
    assert daemon.listener is None and "stream" not in daemon.health.snapshot()
    assert daemon.interval("publish") == ctx.settings.publish_interval_s == 60.0
    wo = live.h.work_order()
    Daemon(ctx, role="publisher").run_once()  # the polling cycle, as before
    live.h.dispatch.wait_idle(10)
    assert wo in live.jobs()
    assert live.h.sf.counts.get("streaming_handshake", 0) == 0


def test_the_daemon_streams_when_on(live: Live, tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    ctx = make_context(tmp_path / "on", live.h.sf, live.h.dispatch, streaming="on")
    daemon = Daemon(ctx, role="publisher")
    daemon.start()
    try:
        listener = daemon.listener
        assert listener is not None
        delivered = threading.Event()
        for _ in range(200):  # wait for the listener thread to subscribe (bounded, not a timing assertion)
            if listener.state == "streaming" and listener.counts["cycles"] >= 1:
                break
            delivered.wait(0.05)
        assert listener.state == "streaming"
        wo = live.h.work_order(Subject="Streamed by the daemon")
        for _ in range(200):
            if listener.counts["change_sets"] >= 1:
                break
            delivered.wait(0.05)
        live.h.dispatch.wait_idle(10)
        assert live.jobs()[wo]["title"] == "Streamed by the daemon"
        status = daemon.health.snapshot()["stream"]
        assert (
            status.last_result == "ok"
            and status.last_summary
            and "1 record(s) changed" in status.last_summary
        )
        assert not listener.cycle_due()  # the scheduled cycle waits for STREAM_PUBLISH_INTERVAL_S
    finally:
        daemon.stop()
    assert listener.state == "stopped"


def test_a_batch_left_pending_by_an_outage_is_resent_on_the_publish_interval_while_streaming(
    live: Live,
) -> None:
    listener = live.listener()
    listener.step()
    assert listener.state == "streaming" and not listener.cycle_due()
    live.h.dispatch.faults.set("agent/in", error_rate=1.0, error_status=503)
    wo = live.h.work_order(Subject="Sent during an outage")
    live.pump(listener, lambda: listener.health()["buffered_events"] >= 1)
    live.settle(listener)
    assert wo not in live.jobs()  # the send failed: its batch waits in the outbox
    live.h.dispatch.faults.clear()
    daemon = Daemon(live.h.ctx, role="publisher")
    daemon.listener = listener  # streaming, and the safety-net cycle is not due
    queries = live.h.sf.counts["query"]  # query and queryAll alike
    daemon.run_job("publish")
    assert live.jobs()[wo]["title"] == "Sent during an outage"
    assert live.h.sf.counts["query"] == queries  # nothing read
    assert "re-sent pending batches: requests 1" in str(daemon.health.snapshot()["publish"].last_summary)


def test_one_lost_request_is_retried_on_the_same_subscription_without_a_fallback(live: Live) -> None:
    listener = live.listener()
    listener.step()
    assert listener.state == "streaming"
    live.h.sf.faults.set("streaming_connect", error_rate=1.0, error_status=503)
    listener.step()  # one failed long poll: retried in place
    live.h.sf.faults.clear()
    wo = live.h.work_order(Subject="After one lost request")
    live.pump(listener, lambda: listener.health()["buffered_events"] >= 1)
    live.settle(listener)
    assert live.jobs()[wo]["title"] == "After one lost request"
    assert listener.counts["retried_in_place"] == 1 and listener.counts["fallbacks"] == 0
    assert listener.state == "streaming" and live.rows("warning") == []


def test_two_lost_requests_in_a_row_fall_back_and_lose_nothing(live: Live) -> None:
    listener = live.listener()
    listener.step()
    live.h.sf.faults.set("streaming_connect", error_rate=1.0, error_status=503)
    wo = live.h.work_order(Subject="Edited while the stream fails")
    listener.step()
    listener.step()  # the second failure in a row: fall back, the cycle publishes the edit
    live.h.sf.faults.clear()
    assert listener.counts["fallbacks"] == 1 and listener.state == "polling"
    assert live.jobs()[wo]["title"] == "Edited while the stream fails"
    assert any("change events on /data/WorkOrderChangeEvent stopped" in row for row in live.rows("warning"))

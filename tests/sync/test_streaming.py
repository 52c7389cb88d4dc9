"""The change-event listener's decisions, driven step by step: both emulators on real sockets, the change
stream scripted (its protocol is tested in tests/connector/test_crm_stream.py; the listener over the real
stream in tests/e2e/test_streaming.py). Time is an injected clock; backoff waits are recorded, not slept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from connector.crm import CrmError, RetryPolicy
from connector.crm_stream import (
    AllocationExhausted,
    ChangeEvent,
    ReplayIdTooOld,
    StreamUnavailable,
    channel_for,
)
from connector.mapping import DEFAULT_MAPPING, load_mapping
from sync.outbound.publisher import publish_changes
from sync.outbound.streaming import SYSTEM_FIELDS, StreamListener, echo_fields, stream_channels
from sync.service.health import JobHealth
from sync.store.models import StreamPosition, SyncLog, TrackedRecord
from tests.e2e.conftest import Harness, harness  # noqa: F401  (the fixture)

WO = channel_for("WorkOrder")
LINES = "WorkOrderLineItems"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Script:
    """Stands in for ChangeStream: each poll returns the next scripted item (events, or raises an error)."""

    def __init__(self) -> None:
        self.items: list[list[ChangeEvent] | Exception] = []
        self.opened: list[dict[str, int | None]] = []
        self.closed = 0

    def __call__(self, crm: Any, replay: dict[str, int | None], **_: Any) -> Script:
        self.opened.append(dict(replay))
        return self

    def poll(self, max_wait_s: float) -> list[ChangeEvent]:
        item = self.items.pop(0) if self.items else []
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed += 1


_replay = iter(range(1, 1_000_000))


def event(
    ids: list[str], kind: str = "UPDATE", fields: tuple[str, ...] = ("Subject",), entity: str = "WorkOrder"
):
    return ChangeEvent(
        channel=channel_for(entity),
        replay_id=next(_replay),
        entity=entity,
        change_type=kind,
        record_ids=tuple(ids),
        changed_fields=fields,
        commit_timestamp=datetime.now(UTC),
        commit_user=None,
    )


@pytest.fixture
def rig(harness: Harness) -> Iterator[tuple[Harness, StreamListener, Script, Clock, list[float]]]:  # noqa: F811
    script, clock, waits = Script(), Clock(), []
    listener = StreamListener(harness.ctx, clock=clock, wait=waits.append, stream_factory=script)
    yield harness, listener, script, clock, waits


def agent_in(h: Harness) -> int:
    h.dispatch.wait_idle(10)
    return int(h.dispatch.counts.get("agent/in", 0))


def jobs(h: Harness) -> dict[str, Any]:
    h.dispatch.wait_idle(10)
    return dict(h.dispatch.records("job"))


def positions(h: Harness) -> dict[str, StreamPosition]:
    with Session(h.ctx.engine) as session:
        return {row.channel: row for row in session.exec(select(StreamPosition)).all()}


def log_rows(h: Harness, level: str) -> list[str]:
    with Session(h.ctx.engine) as session:
        return [r.message for r in session.exec(select(SyncLog).where(SyncLog.level == level)).all()]


def settle(listener: StreamListener, clock: Clock) -> None:
    """Close the coalescing window: the next round publishes what it holds."""
    clock.now += 0.2
    listener.step()


def test_channels_cover_every_mapped_object(harness: Harness) -> None:  # noqa: F811
    assert set(stream_channels(harness.ctx.mapping).values()) == set(harness.ctx.mapping.objects)


def test_echo_fields_are_write_backs_and_system_fields(harness: Harness) -> None:  # noqa: F811
    fields = echo_fields(harness.ctx.mapping.objects["WorkOrder"])
    assert {"dispatch_last_synced__c", "dispatch_error__c"} <= fields and fields >= SYSTEM_FIELDS
    assert "subject" not in fields


def test_events_in_one_window_are_one_change_set(rig: Any) -> None:
    h, listener, script, clock, _ = rig
    listener.step()  # subscribes; the first start runs a bridging cycle (nothing flagged yet)
    before = agent_in(h)
    first, second = h.work_order(Subject="A"), h.work_order(Subject="B")
    script.items = [[event([first], "CREATE")], [event([second], "CREATE")]]
    listener.step()
    clock.now += 0.1  # inside the 200 ms window: keeps collecting
    listener.step()
    assert agent_in(h) == before and listener.health()["buffered_events"] == 2
    settle(listener, clock)
    assert agent_in(h) == before + 1
    published = jobs(h)
    assert published[first]["title"] == "A" and published[second]["title"] == "B"
    assert positions(h)[WO].replay_id is not None and listener.health()["buffered_events"] == 0


def test_replay_id_is_stored_only_after_the_outbox_commit(rig: Any) -> None:
    h, listener, script, clock, _ = rig
    listener.step()
    wo = h.work_order()
    created = event([wo], "CREATE")
    script.items = [[created]]
    listener.step()
    h.ctx.crm.retry = RetryPolicy(attempts=1)
    h.sf.fail_next_with_request_limit(1)  # the by-id query fails: nothing is committed
    clock.now += 0.2
    with pytest.raises(CrmError, match="REQUEST_LIMIT_EXCEEDED"):
        listener.step()
    assert WO not in positions(h) and wo not in jobs(h)
    listener.step()  # the window still holds the event: published now, then its replay id is stored
    assert wo in jobs(h)
    assert positions(h)[WO].replay_id == str(created.replay_id)


def test_write_back_echo_publishes_nothing(rig: Any) -> None:
    h, listener, script, clock, _ = rig
    wo = h.work_order()
    h.publish()
    listener.step()
    before = agent_in(h)
    script.items = [[event([wo], fields=("Dispatch_Last_Synced__c", "LastModifiedDate", "SystemModstamp"))]]
    listener.step()
    settle(listener, clock)
    assert (
        agent_in(h) == before and listener.counts["echoes"] == 1 and listener.counts["records_changed"] == 0
    )
    assert positions(h)[WO].replay_id is not None  # the echo's replay id is stored all the same


def test_an_echo_that_gets_through_is_stopped_by_the_hash(harness: Harness) -> None:  # noqa: F811
    wo = harness.work_order()
    harness.publish()
    harness.round_trip()  # the connector writes Dispatch_Last_Synced__c back
    report = publish_changes(harness.ctx, only={"WorkOrder": [wo]})
    assert report.read == 1 and report.changed == 0 and report.requests_sent == 0


def test_an_edit_with_write_back_fields_and_a_relevant_field_publishes(rig: Any) -> None:
    h, listener, script, clock, _ = rig
    wo = h.work_order()
    h.publish()
    listener.step()
    h.sf.update("WorkOrder", wo, {"Subject": "Changed"})
    script.items = [[event([wo], fields=("Subject", "Dispatch_Error__c", "LastModifiedDate"))]]
    listener.step()
    settle(listener, clock)
    assert jobs(h)[wo]["title"] == "Changed"


def test_by_id_publish_does_not_move_the_watermark(harness: Harness) -> None:  # noqa: F811
    from sync.store.models import Watermark

    harness.work_order()
    harness.publish()
    with Session(harness.ctx.engine) as session:
        mark = session.get(Watermark, "WorkOrder")
        assert mark is not None
        stamp = mark.system_modstamp
    later = harness.work_order(Subject="Later")
    publish_changes(harness.ctx, only={"WorkOrder": [later]})
    with Session(harness.ctx.engine) as session:
        mark = session.get(Watermark, "WorkOrder")
        assert mark is not None and mark.system_modstamp == stamp
    assert later in jobs(harness)


def test_a_deleted_record_follows_on_delete(harness: Harness) -> None:  # noqa: F811
    wo = harness.work_order()
    harness.publish()
    harness.sf.delete("WorkOrder", wo)
    report = publish_changes(harness.ctx, only={"WorkOrder": [wo]})
    assert report.read == 1  # seen through queryAll
    assert any("was deleted in the CRM" in m for m in log_rows(harness, "info"))


def test_unmapped_object_and_bad_ids_are_refused(harness: Harness) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="not mapped: Lead"):
        publish_changes(harness.ctx, only={"Lead": ["00Q000000000001AAA"]})
    with pytest.raises(ValueError, match="not Salesforce record ids: \"x' OR Id != '\""):
        publish_changes(harness.ctx, only={"WorkOrder": ["x' OR Id != '"]})


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (ReplayIdTooOld("replay id 7 is too old"), "older than the events Salesforce still keeps"),
        (
            AllocationExhausted("daily allocation exceeded"),
            "daily change-event delivery allocation is used up",
        ),
        (StreamUnavailable("403::Unknown client"), "the subscription is unavailable"),
    ],
)
def test_a_lost_stream_falls_back_to_the_cycle_and_loses_nothing(
    rig: Any, error: Exception, cause: str
) -> None:
    h, listener, script, _, waits = rig
    listener.step()
    missed = h.work_order(Subject="Made while events were lost")
    script.items = [error]
    listener.step()
    assert missed in jobs(h)  # the cycle ran at once
    warnings = log_rows(h, "warning")
    assert any(WO in m and cause in m and "polling cycle" in m for m in warnings), warnings
    assert positions(h)[WO].mode == "polling" and positions(h)[WO].replay_id is None
    assert listener.state == "polling"
    listener.step()  # after a backoff: subscribe again from new events, resume
    assert waits == [2.0] and script.opened[-1][WO] is None
    assert listener.state == "streaming" and positions(h)[WO].mode == "streaming"
    assert any("change events resumed" in m for m in log_rows(h, "info"))


def test_the_same_outage_is_said_once_and_backoff_grows(rig: Any) -> None:
    h, listener, script, _, waits = rig
    listener.step()
    script.items = [
        AllocationExhausted("used up"),
        AllocationExhausted("used up"),
        AllocationExhausted("used up"),
    ]
    for _ in range(3):
        listener.step()
    channels = len(listener.channels)
    assert len([m for m in log_rows(h, "warning") if "allocation" in m]) == channels
    assert waits == [2.0, 4.0]


def test_a_gap_event_runs_the_cycle_and_keeps_the_stream(rig: Any) -> None:
    h, listener, script, clock, _ = rig
    listener.step()
    missed = h.work_order(Subject="Lost in a gap")
    script.items = [[event([missed], "GAP_UPDATE", fields=())]]
    listener.step()
    settle(listener, clock)
    assert missed in jobs(h)
    assert any(WO in m and "gap event (GAP_UPDATE" in m for m in log_rows(h, "warning"))
    assert listener.state == "streaming" and positions(h)[WO].replay_id is not None
    assert len(script.opened) == 1


def test_restart_resumes_from_the_stored_replay_ids(rig: Any) -> None:
    h, listener, script, clock, waits = rig
    listener.step()
    wo = h.work_order()
    script.items = [[event([wo], "CREATE")]]
    listener.step()
    settle(listener, clock)
    stored = positions(h)[WO].replay_id
    again = Script()
    StreamListener(h.ctx, clock=clock, wait=waits.append, stream_factory=again).step()
    assert again.opened == [
        {channel: (int(stored) if channel == WO else None) for channel in listener.channels}
    ]


def test_events_not_yet_published_are_read_again_after_a_restart(rig: Any) -> None:
    h, listener, script, clock, _ = rig
    listener.step()
    settle(listener, clock)
    wo = h.work_order()
    script.items = [[event([wo], "CREATE")]]
    listener.step()  # held in the window when the process stops
    assert positions(h).get(WO) is None or positions(h)[WO].replay_id is None
    assert wo not in jobs(h)


def test_auto_without_change_events_polls_as_before_with_one_row(harness: Harness) -> None:  # noqa: F811
    script = Script()
    script.items = [StreamUnavailable("channel /data/WorkOrderChangeEvent is not enabled")]
    listener = StreamListener(harness.ctx, auto=True, stream_factory=script, wait=lambda _s: None)
    listener.run()  # ends by itself: the daemon's cycle publishes every PUBLISH_INTERVAL_S
    assert listener.state == "unavailable" and listener.cycle_due() and listener.cycle_due()
    info = [m for m in log_rows(harness, "info") if "change events are not available" in m]
    assert len(info) == 1 and "every 60 s" in info[0] and "Enable Change Data Capture" in info[0]
    assert log_rows(harness, "warning") == []


def test_the_safety_net_cycle_runs_once_an_interval_while_streaming(rig: Any) -> None:
    h, listener, _, clock, _ = rig
    assert listener.cycle_due()  # not streaming yet
    listener.step()
    assert listener.state == "streaming"
    assert not listener.cycle_due()  # the bridging cycle just ran
    clock.now += h.ctx.settings.stream_publish_interval_s
    assert listener.cycle_due() and not listener.cycle_due()


def test_health_board_gets_a_stream_entry(harness: Harness) -> None:  # noqa: F811
    board, script, clock = JobHealth(), Script(), Clock()
    board.register("stream", 0.2)
    listener = StreamListener(
        harness.ctx, board=board, clock=clock, stream_factory=script, wait=lambda _s: None
    )
    listener.step()
    wo = harness.work_order()
    script.items = [[event([wo], "CREATE")]]
    listener.step()
    settle(listener, clock)
    status = board.snapshot()["stream"]
    assert status.last_result == "ok" and status.last_summary and "1 event(s)" in status.last_summary
    with Session(harness.ctx.engine) as session:
        assert session.exec(select(TrackedRecord).where(TrackedRecord.crm_id == wo)).first() is not None


def test_a_child_rows_event_publishes_its_parent(harness: Harness, tmp_path: Any) -> None:  # noqa: F811
    sf = harness.sf
    sf.define_object(
        "WorkOrderLineItem",
        {
            "Description": "string",
            "WorkOrderId": {
                "type": "reference",
                "to": "WorkOrder",
                "child_relationship": "WorkOrderLineItems",
            },
        },
        key_prefix="1WL",
    )
    raw = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))
    raw["objects"]["WorkOrder"]["children"] = {
        LINES: {"object": "WorkOrderLineItem", "parent_field": "WorkOrderId", "select": ["Id"]}
    }
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    harness.ctx.mapping = load_mapping(path)
    wo = harness.work_order()
    harness.publish()
    line = sf.insert("WorkOrderLineItem", {"WorkOrderId": wo, "Description": "Breaker 20A"})
    script, clock = Script(), Clock()
    listener = StreamListener(harness.ctx, clock=clock, stream_factory=script, wait=lambda _s: None)
    assert channel_for("WorkOrderLineItem") in listener.channels
    listener.step()
    script.items = [[event([line], "CREATE", fields=(), entity="WorkOrderLineItem")]]
    listener.step()
    settle(listener, clock)
    assert listener.counts["records_read"] == 1  # the parent work order, read by id

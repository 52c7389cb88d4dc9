"""A line item edited after its work order left the incremental window re-publishes the work order, read by
id. Regression: the lookup of published parents opened a second SQLite transaction while the cycle's own
held the write lock (BEGIN IMMEDIATE), so the cycle failed with `database is locked` after the 30 s busy
timeout. Both emulators run on one injected clock (tests/bench_rig.py), so the window moves without sleeps."""

from __future__ import annotations

from pathlib import Path

import yaml

from connector.mapping import load_mapping
from sync.outbound.publisher import publish_changes
from sync.writeback.queue import flush_writebacks
from tests.bench_rig import Rig, rig
from tests.e2e.test_child_records import LINE_ITEM_FIELDS, LINE_ITEMS, LINE_RECORDS


def _with_line_items(r: Rig) -> None:
    r.sf.define_object("WorkOrderLineItem", LINE_ITEM_FIELDS, key_prefix="1WL")
    data = yaml.safe_load(Path(str(r.ctx.settings.mapping_file)).read_text(encoding="utf-8"))
    work_order = data["objects"]["WorkOrder"]
    work_order["children"] = {"WorkOrderLineItems": LINE_ITEMS}
    job = work_order["records"].pop()
    work_order["records"] += [*LINE_RECORDS, job]  # billing items and the estimate; the job stays last
    path = r.tmp / "lines.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    r.ctx.mapping = load_mapping(path)


def _cycle(r: Rig) -> int:
    changed = publish_changes(r.ctx).changed
    flush_writebacks(r.ctx.engine, r.ctx.crm)
    r.dispatch.wait_idle(10)
    return changed


def test_a_line_item_edited_after_its_work_order_left_the_window_re_sends_the_estimate() -> None:
    with rig(contacts=1, lookback_s=300, dispatch_acks=False) as r:
        _with_line_items(r)
        (wo,) = r.insert_work_orders(1)
        item = r.sf.insert(
            "WorkOrderLineItem",
            {
                "WorkOrderId": wo,
                "LineItemNumber": "1",
                "Description": "Part 1",
                "Quantity": 1.0,
                "UnitPrice": 10.0,
                "Status": "New",
            },
        )
        assert _cycle(r) == 1
        r.clock.advance(1800)
        _cycle(r)  # the confirmation's echo
        r.clock.advance(1800)
        r.sf.update("WorkOrderLineItem", item, {"Quantity": 3.0})
        assert _cycle(r) == 1
        assert r.dispatch.records("billing_document")[f"{wo}-estimate"]["lines"][0]["qty"] == 3

"""Job Offer -> Work Order (connector/dispatch_v3/convert.py), held to the migration guide's own examples.

The guide's two examples disagree with each other in one value (the description's final period) and carry a
duplicate key; docs/wire-formats.md ("Converter: where the seed disagrees with itself") lists them and says
which side the converter follows. The comparison below patches exactly those places in the expected work
order, and asserts first that each of them really is in the guide's text.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from connector.dispatch_v3.convert import NotAJobOffer, convert_job_offer
from connector.dispatch_v3.validation import validate_work_order
from tests.connector.dispatch_v3_seed import duplicate_keys, json_block_after, new_work_order, old_job_offer

# The documented differences: where the converter (following the table) differs from the example work order.
FOLLOWING_THE_TABLE = {"description": "The sink needs fixing."}  # the example dropped the offer's period


def converted(offer: dict[str, Any] | None = None, **top: Any) -> tuple[dict[str, Any], list[str]]:
    offer = copy.deepcopy(old_job_offer()) if offer is None else offer
    offer.update(top)
    return convert_job_offer(offer, source="offer.json")


def test_the_documented_differences_are_in_the_guide() -> None:
    assert old_job_offer()["job"]["description"] == "The sink needs fixing."
    assert new_work_order()["description"] == "The sink needs fixing"
    assert duplicate_keys(json_block_after("> New Work Order")) == ["preferred"]
    phone = json_block_after("> New Work Order").split('"value": "+15551234567"')[0].rsplit("{", 1)[1]
    assert phone.count('"preferred": true') == 1  # the other copy follows the value: same meaning twice


def test_the_guides_job_offer_converts_to_the_guides_work_order_modulo_the_documented_differences() -> None:
    order, _ = converted()
    assert order == {**new_work_order(), **FOLLOWING_THE_TABLE}


def test_the_converted_work_order_keeps_the_examples_attribute_order() -> None:
    order, _ = converted()
    assert list(order) == list(new_work_order())


def test_the_guides_job_offer_warns_about_exactly_what_it_drops() -> None:
    _, warnings = converted()
    assert warnings == [
        "offer.json: duration: dropped: expiration is no longer supported",
        "offer.json: entities[0].type: dropped ('organization'): "
        "work orders can only be sent to service providers",
    ]


def test_the_converted_guide_example_validates_clean() -> None:
    order, _ = converted()
    assert validate_work_order(order) == []


def test_no_notify_attribute_primary_becomes_preferred() -> None:
    order, _ = converted()
    phones = [m for m in order["contacts"][0]["contact_methods"] if m["method"] == "phone"]
    assert [(p["type"], p["preferred"]) for p in phones] == [("mobile", True), ("home", False)]
    assert all("notify" not in p for p in phones)


def test_a_phone_without_primary_is_not_preferred() -> None:
    offer = old_job_offer()
    del offer["customer"]["phone_numbers"][0]["primary"]
    order, _ = converted(offer)
    assert order["contacts"][0]["contact_methods"][1]["preferred"] is False


def test_workflow_service_and_direct_orchestration_are_made_explicit() -> None:
    offer = old_job_offer()
    del offer["offer_strategy"]
    order, warnings = converted(offer)
    assert (order["workflow"], order["orchestration"]) == ("service", "direct")
    assert not any("offer_strategy" in w for w in warnings)


@pytest.mark.parametrize(
    ("strategy", "orchestration"),
    [
        ("direct", "direct"),
        ("round robin", "round_robin"),
        ("Jump-Ball", "jump_ball"),
        ("jump_ball", "jump_ball"),
    ],
)
def test_offer_strategy_becomes_orchestration(strategy: str, orchestration: str) -> None:
    order, _ = converted(offer_strategy=strategy)
    assert order["orchestration"] == orchestration


def test_an_unknown_offer_strategy_is_kept_with_a_warning() -> None:
    order, warnings = converted(offer_strategy="broadcast")
    assert order["orchestration"] == "broadcast"
    assert "offer.json: offer_strategy: 'broadcast' is not an orchestration v3 knows" in warnings[0]


def _with(path: str, value: Any) -> dict[str, Any]:
    offer = old_job_offer()
    *parents, last = path.split(".")
    holder: Any = offer
    for step in parents:
        holder = holder[int(step)] if step.isdigit() else holder[step]
    holder[last] = value
    return offer


@pytest.mark.parametrize(
    ("path", "warning"),
    [
        ("duration_algorithm", "duration_algorithm: dropped: expiration is no longer supported"),
        ("ui_options", "ui_options: dropped: these are configured per account now"),
        ("customer.home_address", "customer.home_address: dropped: no home address any more"),
        ("priority", "priority: not an attribute the migration guide maps; dropped"),
        ("job.priority", "job.priority: not an attribute"),
        ("job.address.latitude", "job.address.latitude: not an attribute"),
        ("appointment.priority", "appointment.priority: not an attribute"),
        ("customer.priority", "customer.priority: not an attribute"),
        ("customer.phone_numbers.0.priority", "customer.phone_numbers[0].priority: not an attribute"),
        ("customer.billing_address.priority", "customer.billing_address.priority: not an attribute"),
        ("entities.0.priority", "entities[0].priority: not an attribute"),
        ("entities.0.data.priority", "entities[0].data.priority: not an attribute"),
        ("entities.0.data.address.priority", "entities[0].data.address.priority: not an attribute"),
    ],
)
def test_a_dropped_attribute_is_a_warning_and_is_not_kept(path: str, warning: str) -> None:
    order, warnings = converted(_with(path, {"priority": "sentinel-value"}))
    assert any(w.startswith(f"offer.json: {warning}") for w in warnings), warnings
    assert "sentinel-value" not in json.dumps(order)


def test_warnings_without_a_source_start_at_the_path() -> None:
    _, warnings = convert_job_offer(old_job_offer())
    assert warnings[0] == "duration: dropped: expiration is no longer supported"


def test_window_times_without_a_partner_are_dropped_with_a_warning() -> None:
    offer = _with("appointment.window_start_time", ["2017-01-01T05:00:00Z", "2017-01-01T11:00:00Z"])
    offer["appointment"]["window_end_time"] = ["2017-01-01T07:00:00Z"]
    order, warnings = converted(offer)
    assert order["appointment_windows"] == [
        {"start_time": "2017-01-01T05:00:00Z", "end_time": "2017-01-01T07:00:00Z"}
    ]
    assert "offer.json: appointment.window_start_time[1]: no matching window_end_time; dropped" in warnings


def test_a_numeric_external_id_becomes_a_string() -> None:
    order, _ = converted(_with("job.external_id", 42))
    assert order["external_ids"] == ["42"]


def test_the_offer_is_not_changed() -> None:
    offer = old_job_offer()
    convert_job_offer(offer)
    assert offer == old_job_offer()


@pytest.mark.parametrize("document", [[], "job", {"customer": {}}, {"job": "Fix the Sink"}])
def test_a_document_without_a_job_object_is_not_a_job_offer(document: Any) -> None:
    with pytest.raises(NotAJobOffer, match="not a job offer"):
        convert_job_offer(document)

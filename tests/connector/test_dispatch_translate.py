"""Dispatch Connect's translation: each put-type becomes one report in the engine's words."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.dispatch_connect.translate import translate_action, translate_message
from connector.errors import MalformedDelivery
from connector.ports import Notice, RecordResult, ReportedEvent

SYSTEM = "dispatch_connect"


def one(put_type: str, data: dict[str, Any]) -> Any:
    (report,) = translate_action(SYSTEM, put_type, data)
    return report


def test_ack_is_a_confirming_result() -> None:
    report = one("ack", {"id": 77, "external_id": "WO-1", "msg_id": "m-1", "model": "job"})
    assert report == RecordResult("m-1", "job", "WO-1", ok=True, remote_id="77")


def test_err_reads_the_nested_payload() -> None:
    inner = {"data_type": "job", "external_id": "WO-1", "msg_id": "m-1", "message": "address incomplete"}
    report = one("err", {"payload": {"err": inner}})
    assert report == RecordResult("m-1", "job", "WO-1", ok=False, error="address incomplete")


def test_auto_assign_failure_is_a_warning_notice() -> None:
    report = one("ack", {"model": "auto_assign_tech", "ack_message": "no technician", "msg_id": "m-2"})
    assert isinstance(report, Notice)
    assert report.level == "warning" and report.message == "auto_assign_tech: no technician"


def test_appointment_names_its_job_and_window() -> None:
    report = one(
        "appointment",
        {
            "id": 5,
            "external_id": "A-1",
            "status": "scheduled",
            "job": {"external_id": "WO-1"},
            "job_id": 9,
            "start_time": "2026-11-30T09:00:00+0000",
            "end_time": "2026-11-30T11:00:00+0000",
            "updated_at": "2026-11-28T10:05:46+0000",
        },
    )
    assert isinstance(report, ReportedEvent) and report.kind == "appointment"
    assert (report.parent_external_id, report.parent_remote_id) == ("WO-1", "9")
    assert report.window_start == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert report.updated_at == datetime(2026, 11, 28, 10, 5, 46, tzinfo=UTC)


def test_job_falls_back_to_its_external_ids_list() -> None:
    report = one("job", {"id": 3, "external_ids": ["WO-9"], "status": "offered"})
    assert (report.external_id, report.remote_id, report.status) == ("WO-9", "3", "offered")


def test_survey_splits_reasons_from_comment() -> None:
    report = one("surveyresponse", {"id": 1, "rating": "4", "message": "[Late, Messy] Great tech"})
    assert report.kind == "survey" and report.reason == "Great tech"
    assert report.attributes["rating"] == 4.0 and report.attributes["reasons"] == ["Late", "Messy"]


def test_wrong_typed_attributes_ride_on_the_report() -> None:
    report = one("job", {"external_id": "WO-1", "status": "offered", "status_message": {"x": 1}})
    assert report.reason is None and report.problems == ("status_message is a dict",)


def test_unknown_put_type_is_a_warning_notice() -> None:
    report = one("spaceship", {"id": 1})
    assert isinstance(report, Notice) and report.level == "warning" and "'spaceship'" in report.message


def test_an_unreadable_envelope_is_malformed() -> None:
    with pytest.raises(MalformedDelivery, match="agent/out message is malformed"):
        list(translate_message(SYSTEM, {"Message": {"ID": "x"}}))

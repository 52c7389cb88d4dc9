"""The emulator takes every playbook To-Dispatch type and refuses, with an `err` event, what Dispatch refuses.

Over real sockets: the client signs and posts `agent/in`, the emulator applies, the test drains `agent/out`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.dispatch_connect.client import DispatchConnectClient
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from tests.connector.conftest import DISPATCH_KEY, DISPATCH_SECRET
from tests.connector.dispatch_helpers import ADDRESS, drain, puts

ORG_KEY = "organization|42|acme"
ORG = {"external_id": "org-1", "name": "Provider", "phone_number": "(555)010-0352"}
USER = {
    "external_id": "u-1",
    "first_name": "John",
    "email": "john@example.com",
    "external_organization_id": "org-1",
}
JOB = {"external_id": "job-1", "title": "Fix", "external_organization_id": "org-1", "address": dict(ADDRESS)}
ITEM = {
    "external_id": "item-1",
    "title": "Line 1",
    "item_type": "service",
    "external_organization_id": "org-1",
}
BASE = [("organization", ORG), ("user", USER), ("job", JOB), ("billing_item", ITEM)]


class Account:
    """One emulator account and a client for it; `send` posts built records and returns the events."""

    def __init__(self, emulator: DispatchEmulator, key: str) -> None:
        self.emulator = emulator
        self.client = DispatchConnectClient(emulator.base_url, key, DISPATCH_SECRET, backoff_s=0.0)

    def send(
        self, *items: tuple[str, dict[str, Any]] | dict[str, Any], msg: str = "m-1"
    ) -> list[tuple[str, Any]]:
        built = [i if isinstance(i, dict) else {"record_type": i[0], "record": i[1]} for i in items]
        self.client.send_records(built, message_id=msg)
        assert self.emulator.wait_idle(5)
        return puts(drain(self.client))

    def errors(self, *items: tuple[str, dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
        return [data["payload"]["err"] for put, data in self.send(*items) if put == "err"]


@pytest.fixture
def account() -> Iterator[Account]:
    with DispatchEmulator(ORG_KEY, DISPATCH_SECRET) as emulator:
        account = Account(emulator, ORG_KEY)
        assert account.errors(*BASE) == []
        yield account


@pytest.fixture
def enterprise() -> Iterator[Account]:
    with DispatchEmulator(DISPATCH_KEY, DISPATCH_SECRET) as emulator:
        yield Account(emulator, DISPATCH_KEY)


def only_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(errors) == 1, errors
    return errors[0]


# -- the playbook's samples are taken as sent ---------------------------------------------------------

SAMPLES: list[tuple[str, dict[str, Any], str]] = [
    (
        "config",
        {
            "external_organization_id": "org-1",
            "organization_customer": {"app": {"profileBuilderEnabled": True}},
        },
        "org-1",
    ),
    (
        "trade_account_org",
        {"external_id": "t-1", "external_organization_id": "org-1", "trades": ["Trade 1"]},
        "t-1",
    ),
    (
        "job_attribution",
        {"external_id": "src-1", "external_organization_id": "org-1", "name": "Cold Call"},
        "src-1",
    ),
    ("appointment_type", {"name": "Repair", "is_default": False, "default_duration_seconds": 7200}, "Repair"),
    ("trade_account_user", {"external_id": "u-1", "trades": ["Trade 1", "Trade 2"]}, "u-1"),
    (
        "user_tag",
        {"external_id": "u-1", "external_user_id": "u-1", "key": "ranking_score", "value": "44"},
        "u-1/ranking_score",
    ),
    (
        "service_area",
        {
            "external_id": "sa-1",
            "external_organization_id": "org-1",
            "service_area_type": "zcta5",
            "postal_codes": [{"postal_code": "02446"}],
        },
        "sa-1",
    ),
    (
        "service_area",
        {"external_id": "sa-1-u-1", "service_area_type": "fsaldu", "canadian_postal_codes": ["H7M 6J3"]},
        "sa-1-u-1",
    ),
    ("job_trade", {"external_job_id": "job-1", "trades": ["Trade 1", "Trade 2"]}, "job-1"),
    (
        "suggested_times",
        {
            "external_job_id": "job-1",
            "suggested_times": [
                {"start_time": "2022-06-13T12:00:00.000Z", "end_time": "2022-06-13T16:00:00.000Z"}
            ],
        },
        "job-1",
    ),
    (
        "custom_form",
        {"external_job_id": "job-1", "form_id": "wfm_custom_form_x", "form_data": [{"f": "v"}]},
        "job-1/wfm_custom_form_x",
    ),
    (
        "attachment",
        {"external_id": "note-1", "external_job_id": "job-1", "description": "some note"},
        "note-1",
    ),
    (
        "auto_assign_technician",
        {"external_id": "job-1", "external_technician_ids": ["u-1"], "two_tech": False},
        "job-1",
    ),
    ("auto_assign_org", {"include_linked_orgs": True, "trades": ["Trade 1"], "postal_code": "02151"}, None),
    (
        "offer",
        {"external_id": "offer-1", "title": "Job title", "status": "unassigned", "address": dict(ADDRESS)},
        "offer-1",
    ),
    (
        "calendar_event",
        {
            "external_id": "ev-1",
            "start_time": "2019-10-21T08:30:00Z",
            "duration": 3600,
            "title": "Lunch",
            "external_organization_id": "org-1",
            "external_user_id": "u-1",
        },
        "ev-1",
    ),
]


@pytest.mark.parametrize(
    ("record_type", "record", "key"), SAMPLES, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(SAMPLES)]
)
def test_each_sample_is_acked_and_stored_as_sent(
    account: Account, record_type: str, record: dict[str, Any], key: str | None
) -> None:
    events = account.send((record_type, record))
    assert [(put, data["model"]) for put, data in events] == [("ack", record_type)]
    stored = account.emulator.records(record_type)
    held = stored[key] if key else next(iter(stored.values()))
    assert {k: held[k] for k in record} == record  # exactly the payload's shape, plus Dispatch's ids


def test_job_child_acks_name_the_job_when_the_record_has_no_external_id(account: Account) -> None:
    ((put, data),) = account.send(("job_trade", {"external_job_id": "job-1", "trades": ["Trade 1"]}))
    assert (put, data["external_id"], data["model"]) == ("ack", "job-1", "job_trade")


def test_billing_document_with_known_job_and_items_is_stored_with_its_lines(account: Account) -> None:
    doc = {
        "external_id": "doc-1",
        "external_job_id": "job-1",
        "doc_type": "Estimate",
        "lines": [{"external_billing_item_id": "item-1", "qty": 1}],
    }
    assert account.errors({"record_type": "billing_document", "version": "v2", "record": doc}) == []
    held = account.emulator.records("billing_document")["doc-1"]
    assert held["lines"] == doc["lines"] and held["job_id"] == account.emulator.records("job")["job-1"]["id"]


def test_profile_picture_keeps_its_top_level_attachment(account: Account) -> None:
    picture = {
        "record_type": "profile_picture",
        "record": {"external_id": "u-1", "file_name": "me.jpg"},
        "attachment": "aGk=",
    }
    assert account.errors(picture) == []
    assert account.emulator.records("profile_picture")["u-1"]["attachment"] == "aGk="


# -- what Dispatch refuses ---------------------------------------------------------------------------

REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "billing_document",
        {"external_id": "d", "external_job_id": "job-1", "lines": [{"external_billing_item_id": "nope"}]},
        "lines",
        "line 0: billing item nope not found",
    ),
    (
        "billing_document",
        {"external_id": "d", "external_job_id": "ghost", "lines": []},
        "job",
        "not found (external_job_id ghost)",
    ),
    (
        "job",
        {**JOB, "external_organization_id": "ghost"},
        "organization",
        "not found (external_organization_id ghost)",
    ),
    (
        "user",
        {**USER, "external_organization_id": "ghost"},
        "organization",
        "not found (external_organization_id ghost)",
    ),
    ("job_trade", {"external_job_id": "ghost", "trades": ["T"]}, "job", "not found (external_job_id ghost)"),
    ("suggested_times", {"external_job_id": "ghost", "suggested_times": []}, "job", "not found"),
    ("custom_form", {"external_job_id": "ghost", "form_id": "f"}, "job", "not found"),
    ("attachment", {"external_job_id": "ghost", "description": "note"}, "job", "not found"),
    (
        "appointment",
        {"external_id": "a", "external_job_id": "ghost", "time": "2018-10-30T22:00:00.000Z"},
        "job",
        "not found",
    ),
    (
        "calendar_event",
        {"external_id": "e", "external_user_id": "ghost", "external_organization_id": "org-1"},
        "user",
        "not found (external_user_id ghost)",
    ),
    (
        "calendar_event",
        {"external_id": "e", "external_user_id": "u-1", "external_organization_id": "ghost"},
        "organization",
        "not found",
    ),
    (
        "profile_picture",
        {"external_id": "ghost", "file_name": "x.jpg", "attachment": "QQ=="},
        "user",
        "not found (external_user_id ghost)",
    ),
    ("profile_picture", {"external_id": "u-1", "file_name": "x.jpg"}, "attachment", "missing"),
    (
        "service_area",
        {"external_id": "sa", "external_organization_id": "ghost", "census_tracts": ["1"]},
        "organization",
        "not found",
    ),
    (
        "service_area",
        {"external_id": "sa-ghost", "census_tracts": ["1"]},
        "service_area",
        "needs its organization",
    ),
    (
        "service_area",
        {"external_id": "sa", "external_organization_id": "org-1", "service_area_type": "tract"},
        "census_tracts",
        "required",
    ),
    (
        "user_tag",
        {"external_id": "ghost", "external_user_id": "ghost", "key": "k", "value": "v"},
        "user",
        "not found",
    ),
    ("trade_account_user", {"external_id": "ghost", "trades": ["T"]}, "user", "not found"),
    (
        "trade_account_org",
        {"external_id": "t", "external_organization_id": "ghost", "trades": ["T"]},
        "organization",
        "not found",
    ),
    ("appointment_type", {"is_default": True}, "name", "missing"),
    ("auto_assign_technician", {"external_id": "ghost"}, "job", "not found"),
]


@pytest.mark.parametrize(
    ("record_type", "record", "field", "problem"),
    REFUSED,
    ids=[f"{t}-{f}-{i}" for i, (t, _, f, _) in enumerate(REFUSED)],
)
def test_dispatch_refusals_are_err_events_naming_the_field(
    account: Account, record_type: str, record: dict[str, Any], field: str, problem: str
) -> None:
    before = account.emulator.records(record_type)
    err = only_error(account.errors((record_type, record)))
    assert (err["data_type"], err["msg_id"]) == (record_type, "m-1")
    assert err["message"].startswith(f"Problem writing {record_type} (") and f'"{field}":[' in err["message"]
    assert problem in err["message"]
    assert account.emulator.records(record_type) == before  # nothing stored


def test_err_names_the_job_of_a_record_without_external_id(account: Account) -> None:
    err = only_error(account.errors(("job_trade", {"external_job_id": "ghost", "trades": ["T"]})))
    assert err["external_id"] == "ghost"


def test_organization_sent_earlier_in_the_same_request_counts(account: Account) -> None:
    org = {"external_id": "org-new", "name": "New", "phone_number": "(555)010-0399"}
    assert (
        account.errors(
            ("organization", org),
            ("job", {**JOB, "external_id": "job-2", "external_organization_id": "org-new"}),
        )
        == []
    )


def test_job_naming_no_organization_belongs_to_the_keys_organization(account: Account) -> None:
    job = {k: v for k, v in JOB.items() if k != "external_organization_id"} | {"external_id": "job-2"}
    assert account.errors(("job", job)) == []
    assert account.emulator.records("job")["job-2"]["organization_id"] == 42


def test_job_naming_no_organization_is_refused_under_an_enterprise_key(enterprise: Account) -> None:
    job = {k: v for k, v in JOB.items() if k != "external_organization_id"}
    err = only_error(enterprise.errors(("job", job)))
    assert "external_organization_id is required with an enterprise key" in err["message"]


def test_gateway_update_by_dispatch_ids_keeps_working(account: Account) -> None:
    job_id = account.emulator.records("job")["job-1"]["id"]
    update = {"id": job_id, "organization_id": 42, "status": "unscheduled"}
    assert account.errors(("job", update)) == []
    assert account.emulator.records("job")["job-1"]["status"] == "unscheduled"


def test_header_action_delete_deletes_the_calendar_event(account: Account) -> None:
    event = {
        "external_id": "ev-1",
        "title": "Lunch",
        "external_organization_id": "org-1",
        "external_user_id": "u-1",
    }
    assert account.errors(("calendar_event", event)) == []
    deleted = account.send(
        {"record_type": "calendar_event", "record": {"external_id": "ev-1"}, "header": {"action": "delete"}}
    )
    assert [(put, data["external_id"]) for put, data in deleted] == [("ack", "ev-1")]
    assert account.emulator.records("calendar_event") == {}


def test_deleting_an_unknown_calendar_event_is_an_err(account: Account) -> None:
    delete = {
        "record_type": "calendar_event",
        "record": {"external_id": "ghost"},
        "header": {"action": "delete"},
    }
    assert "calendar_event ghost not found" in only_error(account.errors(delete))["message"]

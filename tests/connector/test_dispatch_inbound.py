"""agent/in of the emulator: signatures, body forms, upsert, reassignment, typical errors, ack/err events."""

from __future__ import annotations

import json

import pytest

from connector.dispatch_connect.canonical import to_csv
from connector.dispatch_connect.client import DispatchConnectClient
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from tests.connector.dispatch_helpers import (
    ORG,
    canonical,
    drain,
    gz,
    job,
    post_signed,
    puts,
)

# Jobs name existing organizations: the playbook's "contractor_2" of a reassignment exists in Dispatch.
ORG_2 = ("organization", {"external_id": "org-2", "name": "Other provider", "phone_number": "(555)010-0353"})


def send(client: DispatchConnectClient, emulator: DispatchEmulator, *items, msg: str = "m-1") -> None:
    client.send_records([{"record_type": t, "record": r} for t, r in items], message_id=msg)
    assert emulator.wait_idle(5)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Dispatch-Signature": "0" * 64},
        {"X-Dispatch-Signature": ""},
        {"X-Dispatch-Key": "account|1|someone-else"},
    ],
)
def test_bad_key_or_signature_is_401_and_nothing_is_stored(
    dispatch_emulator: DispatchEmulator, headers: dict[str, str]
) -> None:
    body = canonical(ORG)
    response = post_signed(dispatch_emulator.base_url, "/agent/in", body, headers=headers)
    assert response.status_code == 401
    assert "error" in response.json()
    assert dispatch_emulator.wait_idle(5)
    assert dispatch_emulator.records("organization") == {}
    assert dispatch_emulator.queue_depth() == 0


def test_signature_over_other_secret_is_401(dispatch_emulator: DispatchEmulator) -> None:
    body = canonical(ORG)
    response = post_signed(dispatch_emulator.base_url, "/agent/in", body, secret="11" * 32)
    assert response.status_code == 401
    assert dispatch_emulator.counts["unauthorized"] == 1


def test_gzip_body_signed_compressed_is_applied(dispatch_emulator: DispatchEmulator) -> None:
    body = gz(canonical(ORG))
    response = post_signed(
        dispatch_emulator.base_url, "/agent/in", body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert dispatch_emulator.wait_idle(5)
    assert "org-1" in dispatch_emulator.records("organization")


def test_signature_over_uncompressed_bytes_of_gzip_body_is_401(
    dispatch_emulator: DispatchEmulator,
) -> None:
    from connector.dispatch_connect.signing import sign
    from tests.connector.conftest import DISPATCH_SECRET

    raw = canonical(ORG)
    response = post_signed(
        dispatch_emulator.base_url,
        "/agent/in",
        gz(raw),
        headers={"Content-Encoding": "gzip"},
        signature=sign(DISPATCH_SECRET, raw),
    )
    assert response.status_code == 401


def test_client_sends_gzip_with_message_id(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, msg="batch-7")
    (put,) = puts(drain(dispatch_client))
    assert put[0] == "ack"
    assert put[1]["msg_id"] == "batch-7"
    assert put[1]["model"] == "organization"


def test_uncompressed_json_array_is_applied_in_order(dispatch_emulator: DispatchEmulator) -> None:
    body = canonical(ORG, job(), ("appointment", {"external_id": "a-1", "external_job_id": "job-1"}))
    assert post_signed(dispatch_emulator.base_url, "/agent/in", body).status_code == 200
    assert dispatch_emulator.wait_idle(5)
    appointment = dispatch_emulator.records("appointment")["a-1"]
    assert appointment["job_id"] == dispatch_emulator.records("job")["job-1"]["id"]


def test_record_type_header_form_single_record(dispatch_emulator: DispatchEmulator) -> None:
    body = json.dumps({"external_id": "org-9", "name": "Solo", "phone_number": "5550100352"}).encode()
    response = post_signed(
        dispatch_emulator.base_url, "/agent/in", body, headers={"RecordType": "organization"}
    )
    assert response.status_code == 200
    assert dispatch_emulator.wait_idle(5)
    assert dispatch_emulator.records("organization")["org-9"]["name"] == "Solo"


def test_record_nested_under_its_type_is_unwrapped(dispatch_emulator: DispatchEmulator) -> None:
    body = canonical(("organization", {"organization": {"external_id": "org-n", "name": "Nested"}}))
    post_signed(dispatch_emulator.base_url, "/agent/in", body)
    assert dispatch_emulator.wait_idle(5)
    assert dispatch_emulator.records("organization")["org-n"]["name"] == "Nested"


def test_csv_dot_notation(dispatch_emulator: DispatchEmulator) -> None:
    body = to_csv(
        "organization",
        [
            {"name": "Alpha", "external_id": "a", "address": {"city": "Brookline", "state": "MA"}},
            {"name": "Beta", "external_id": "b", "address": {"city": "New York", "state": "NY"}},
        ],
    ).encode()
    response = post_signed(
        dispatch_emulator.base_url, "/agent/in", body, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200
    assert dispatch_emulator.wait_idle(5)
    orgs = dispatch_emulator.records("organization")
    assert orgs["b"]["address"] == {"city": "New York", "state": "NY"}
    assert orgs["a"]["name"] == "Alpha"


def test_csv_row_with_missing_column_is_an_err_event(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    body = (
        b"v3.organization.name,v3.organization.external_id,v3.organization.address.state\n"
        b"Alpha,a,MA\n"
        b"Beta,NY\n"
    )
    post_signed(
        dispatch_emulator.base_url,
        "/agent/in",
        body,
        headers={"Content-Type": "text/csv", "MessageId": "csv-1"},
    )
    assert dispatch_emulator.wait_idle(5)
    events = puts(drain(dispatch_client))
    assert [e[0] for e in events] == ["ack", "err"]
    assert events[1][1]["payload"]["err"]["msg_id"] == "csv-1"
    assert "row 3" in events[1][1]["payload"]["err"]["message"]


def test_upsert_by_external_id_updates_in_place(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, job(title="First"))
    first = dispatch_emulator.records("job")["job-1"]
    send(dispatch_client, dispatch_emulator, job(title="Second"))
    jobs = dispatch_emulator.records("job")
    assert list(jobs) == ["job-1"]
    assert jobs["job-1"]["title"] == "Second"
    assert jobs["job-1"]["id"] == first["id"]


def test_changing_organization_cancels_for_old_and_creates_for_new(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, job(org="org-1"))
    old_id = dispatch_emulator.records("job")["job-1"]["id"]
    send(dispatch_client, dispatch_emulator, ORG_2, job(org="org-2"))
    history = dispatch_emulator.job_assignments("job-1")
    assert [(h["external_organization_id"], h["status"]) for h in history] == [
        ("org-1", "canceled"),
        ("org-2", "offered"),
    ]
    current = dispatch_emulator.records("job")["job-1"]
    assert current["id"] != old_id
    assert current["external_organization_id"] == "org-2"


def test_reassignment_emits_no_echo_event(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, ORG_2, job(org="org-1"), job(org="org-2"))
    assert {put for put, _ in puts(drain(dispatch_client))} == {"ack"}


def test_address_without_state_and_zip_is_err_with_msg_id(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, job(address={"street_1": "1 Main St"}), msg="m-addr")
    ((put, data),) = puts(drain(dispatch_client))
    assert put == "err"
    err = data["payload"]["err"]
    assert (err["data_type"], err["external_id"], err["msg_id"]) == ("job", "job-1", "m-addr")
    assert "address" in err["message"]
    assert dispatch_emulator.records("job") == {}


def test_address_with_zip_only_is_enough(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, job(address={"postal_code": "02110"}))
    assert "job-1" in dispatch_emulator.records("job")


def test_technician_without_email_or_phone_is_err(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    tech = {"external_id": "u-1", "first_name": "John", "roles": ["technician"]}
    send(dispatch_client, dispatch_emulator, ("user", tech), msg="m-user")
    ((put, data),) = puts(drain(dispatch_client))
    assert put == "err"
    assert data["payload"]["err"]["data_type"] == "user"
    assert data["payload"]["err"]["msg_id"] == "m-user"


def test_technician_with_only_invalid_contacts_is_err(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    tech = {"external_id": "u-1", "email": "jim@@abc.com", "phone_number": "555123"}
    send(dispatch_client, dispatch_emulator, ("user", tech))
    assert [p for p, _ in puts(drain(dispatch_client))] == ["err"]


def test_invalid_email_is_stripped_not_fatal(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    tech = {"external_id": "u-1", "email": "jim@@abc.com", "phone_number": "(555) 122-1912"}
    tech["external_organization_id"] = "org-1"  # a user needs its organization (the key is no provider's)
    send(dispatch_client, dispatch_emulator, ORG, ("user", tech))
    user = dispatch_emulator.records("user")["u-1"]
    assert "email" not in user
    assert user["phone_number"] == "(555) 122-1912"
    assert [(p, d["model"]) for p, d in puts(drain(dispatch_client))] == [
        ("ack", "organization"),
        ("ack", "user"),
    ]


def test_invalid_customer_phone_is_stripped(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    record = job()
    record[1]["customer"]["phone_number"] = "555123"
    send(dispatch_client, dispatch_emulator, ORG, record)
    assert "phone_number" not in dispatch_emulator.records("customer")["cust-1"]


def test_unknown_status_reproduces_the_playbook_err(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, job(status="bogus"))
    ((put, data),) = puts(drain(dispatch_client))
    assert put == "err"
    assert "is not included in the list" in data["payload"]["err"]["message"]


def test_note_for_unknown_job_is_err(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ("attachment", {"external_job_id": "nope", "description": "x"}))
    assert [p for p, _ in puts(drain(dispatch_client))] == ["err"]


def test_ack_events_carry_msg_id_model_and_dispatch_id(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, job(), msg="m-42")
    events = puts(drain(dispatch_client))
    assert [(p, d["model"], d["msg_id"]) for p, d in events] == [
        ("ack", "organization", "m-42"),
        ("ack", "job", "m-42"),
    ]
    job_ack = events[1][1]
    assert job_ack["id"] == dispatch_emulator.records("job")["job-1"]["id"]
    assert job_ack["data"]["organization_id"] == dispatch_emulator.records("organization")["org-1"]["id"]


def test_acks_disabled_emits_nothing(dispatch_clock) -> None:  # type: ignore[no-untyped-def]
    from tests.connector.conftest import DISPATCH_KEY, DISPATCH_SECRET

    with DispatchEmulator(DISPATCH_KEY, DISPATCH_SECRET, clock=dispatch_clock, acks_enabled=False) as em:
        post_signed(em.base_url, "/agent/in", canonical(ORG, job(address={})))
        assert em.wait_idle(5)
        assert em.queue_depth() == 0
        assert em.counts["records_applied"] == 1
        assert em.counts["records_failed"] == 1


def test_unparseable_body_is_200_then_err(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    response = post_signed(
        dispatch_emulator.base_url, "/agent/in", b"{not json", headers={"MessageId": "bad"}
    )
    assert response.status_code == 200
    assert dispatch_emulator.wait_idle(5)
    ((put, data),) = puts(drain(dispatch_client))
    assert put == "err"
    assert data["payload"]["err"]["msg_id"] == "bad"


def test_request_counters(
    dispatch_client: DispatchConnectClient, dispatch_emulator: DispatchEmulator
) -> None:
    send(dispatch_client, dispatch_emulator, ORG, job())
    drain(dispatch_client)
    counts = dispatch_emulator.counts
    assert counts["agent/in"] == 1
    assert counts["records_applied"] == 2
    assert counts["agent/out"] >= 1
    assert counts["agent/ack"] == 2

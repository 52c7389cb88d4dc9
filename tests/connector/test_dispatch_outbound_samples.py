"""Every outbound sample of the playbook is produced by the emulator's control API and parses back.

The emulator's event must have the sample's keys (recursively) and the sample's `ID` null-ness; the client's
OutboundMessage must parse the envelope it arrives in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from connector.dispatch_connect.client import DispatchConnectClient, OutboundMessage
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from tests.connector.dispatch_helpers import ADDRESS, ORG, drain, job, shape

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "outbound-samples"
JOB = "your_system_id"
CUSTOMER = {"first_name": "James", "last_name": "Dodd", "email": "devs+dodd@dispatch.me"}
LINES = [{"external_billing_item_id": "your_catalog_id", "title": "", "qty": 2, "price": 3.33}]

GATEWAY_JOB = json.loads((SAMPLES / "09-job-job-created.json").read_text())["payload"]["Actions"][0]["Put"][
    "job"
]

Trigger = Callable[[DispatchEmulator, DispatchConnectClient], Any]


def _send_bad_job(em: DispatchEmulator, client: DispatchConnectClient) -> None:
    client.send_records(
        [{"record_type": "job", "record": {"external_id": "x", "address": {}}}], message_id="m"
    )
    em.wait_idle(5)


def _send_good_job(em: DispatchEmulator, client: DispatchConnectClient) -> None:
    client.send_records([{"record_type": t, "record": r} for t, r in (job("j2"),)], message_id="m")
    em.wait_idle(5)


def _payment(em: DispatchEmulator, client: DispatchConnectClient) -> None:
    em.create_invoice(JOB, external_id="inv-1", lines=LINES)
    drain(client)
    em.record_payment("inv-1", "1.11", transaction_id="xxxx")


TRIGGERS: dict[str, Trigger] = {
    "01": lambda em, c: em.accept_job(JOB),
    "02": lambda em, c: em.create_job(title="t", address=ADDRESS, customer=CUSTOMER, shape="dnm"),
    "03": lambda em, c: em.schedule_appointment(JOB, "2018-05-19T15:00:00+0000", "2018-05-19T16:00:00+0000"),
    "04": lambda em, c: em.add_note(JOB, "some note"),
    "05": lambda em, c: em.add_attachment(JOB, "DispatchConnect.png"),
    "06": lambda em, c: em.submit_survey(JOB, 5, "Great!", 3, "Average"),
    "07": lambda em, c: em.offer(JOB, "offered"),
    "08": lambda em, c: em.create_job(
        title="t", address=ADDRESS, customer=CUSTOMER, external_id="e", shape="fsm"
    ),
    "09": lambda em, c: em.create_job(
        title="t",
        address=ADDRESS,
        customer=CUSTOMER,
        organization_external_id="org-1",
        external_id="e",
        equipment_descriptions=GATEWAY_JOB["equipment_descriptions"],
        custom_fields={"field1": "x"},
        marketing_attributions=GATEWAY_JOB["marketing_attributions"],
    ),
    "10": _send_good_job,
    "11": _send_bad_job,
    "12": lambda em, c: em.auto_assign_technician_failed(JOB, "appt-1", msg_id="m"),
    "13": lambda em, c: em.auto_assign_org_failed(JOB, msg_id="m"),
    "14": lambda em, c: em.create_estimate(JOB, external_id="est-1", lines=LINES, discount_amount=30),
    "15": lambda em, c: em.create_invoice(JOB, external_id="inv-1", lines=LINES, discount_amount=30),
    "16": _payment,
    "17": lambda em, c: em.calendar_event(
        "Event title", "2019-10-21T08:30:00Z", "2019-10-21T09:30:00Z", "id"
    ),
    "18": lambda em, c: em.submit_custom_form(
        JOB, "wfm_custom_form_close_out", {"cash_amount": "1222", "mileage": "1232"}
    ),
    "19": lambda em, c: em.cancel_job(JOB, "customer_canceled"),
}


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.json"))


def test_every_sample_has_a_trigger() -> None:
    assert {p.name[:2] for p in sample_files()} == set(TRIGGERS)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.stem)
def test_control_api_produces_sample_shape(
    path: Path, dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    sample = json.loads(path.read_text())["payload"]["Actions"][0]
    dispatch_client.send_records(
        [{"record_type": t, "record": r} for t, r in (ORG, job(JOB))], message_id="setup"
    )
    assert dispatch_emulator.wait_idle(5)
    drain(dispatch_client)

    TRIGGERS[path.name[:2]](dispatch_emulator, dispatch_client)
    (message,) = dispatch_client.poll(10)
    (action,) = message.actions
    (put_type,) = sample["Put"]
    assert message.type == put_type
    assert action.put_type == put_type
    assert shape(action.data) == shape(sample["Put"][put_type])
    assert (action.id == "") == (sample["ID"] is None)
    assert OutboundMessage.parse(message.raw) == message


def test_ready_for_billing_completes_the_job(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_client.send_records([{"record_type": t, "record": r} for t, r in (ORG, job())], message_id="s")
    dispatch_emulator.wait_idle(5)
    appt = dispatch_emulator.schedule_appointment("job-1", "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
    dispatch_emulator.complete_appointment(appt, "ready_for_billing")
    events = [
        (a.put_type, a.data["status"])
        for m in drain(dispatch_client)
        for a in m.actions
        if a.put_type != "ack"
    ]
    assert events == [("appointment", "scheduled"), ("appointment", "complete"), ("job", "complete")]


def test_no_show_pauses_the_job(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_client.send_records([{"record_type": t, "record": r} for t, r in (ORG, job())], message_id="s")
    dispatch_emulator.wait_idle(5)
    appt = dispatch_emulator.schedule_appointment("job-1", "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z")
    dispatch_emulator.complete_appointment(appt, "no_show")
    last = drain(dispatch_client)[-1].actions[0]
    assert (last.put_type, last.data["status"], last.data["status_message"]) == ("job", "paused", "no_show")


def test_http_control_api_emits_events(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_client.send_records([{"record_type": t, "record": r} for t, r in (ORG, job())], message_id="s")
    dispatch_emulator.wait_idle(5)
    drain(dispatch_client)
    base = dispatch_emulator.base_url
    response = requests.post(
        f"{base}/control/reject_job", json={"external_id": "job-1", "reason": "wrong_trade"}, timeout=5
    )
    assert response.status_code == 200
    ((put_type, data),) = [(a.put_type, a.data) for m in dispatch_client.poll() for a in m.actions]
    assert (put_type, data["status"], data["status_message"]) == ("job", "rejected", "wrong_trade")


def test_http_control_unknown_job_is_404(dispatch_emulator: DispatchEmulator) -> None:
    response = requests.post(
        f"{dispatch_emulator.base_url}/control/accept_job", json={"external_id": "nope"}, timeout=5
    )
    assert response.status_code == 404


def test_http_control_unknown_action_is_404(dispatch_emulator: DispatchEmulator) -> None:
    response = requests.post(f"{dispatch_emulator.base_url}/control/stop", json={}, timeout=5)
    assert response.status_code == 404


def test_http_control_records_and_faults(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    base = dispatch_emulator.base_url
    dispatch_client.send_records([{"record_type": t, "record": r} for t, r in (ORG,)], message_id="s")
    requests.post(f"{base}/control/wait_idle", json={"timeout": 5}, timeout=10).raise_for_status()
    assert "org-1" in requests.get(f"{base}/control/records/organization", timeout=5).json()
    state = requests.post(
        f"{base}/control/faults", json={"endpoint": "agent/out", "error_rate": 1.0}, timeout=5
    ).json()
    assert state["faults"]["agent/out"]["error_rate"] == 1.0
    assert dispatch_emulator.faults.plan_for("agent/out") is not None

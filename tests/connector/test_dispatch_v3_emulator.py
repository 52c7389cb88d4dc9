"""The Dispatch v3 emulator over real sockets, built to docs/wire-formats.md ("Dispatch v3 REST")."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connector.sandbox.dispatch_v3 import DispatchV3Emulator
from connector.sandbox.server import Faults, apply_faults
from tests.connector.conftest import DispatchFakeClock

CLIENT_ID = "v3-client"
CLIENT_SECRET = "v3-secret"  # a throwaway test value

WORK_ORDER: dict[str, Any] = {
    "title": "PLB 123: Fix the Toilet",
    "description": "## Job Info\n* Dog attacked the last guy",
    "service_type": "PLB",
    "workflow": "service",
    "orchestration": "direct",
    "status": "offered",
    "external_ids": ["AAA123"],
    "location": {
        "street_1": "1234 Test Avenue",
        "city": "Boston",
        "state": "MA",
        "postal_code": "02115",
        "timezone": "America/New_York",
    },
    "contacts": [
        {
            "first_name": "Testy",
            "last_name": "McGee",
            "external_ids": ["BBB456"],
            "primary": True,
            "contact_methods": [
                {"method": "phone", "type": "mobile", "value": "+15551234567", "preferred": True},
                {"method": "email", "type": "work", "value": "testy.mcgee@widgets.com", "preferred": True},
            ],
        }
    ],
    "service_providers": [
        {
            "name": "Joe's Plumbing",
            "address": {
                "street_1": "5555 Test Street",
                "city": "Boston",
                "state": "MA",
                "postal_code": "02114",
            },
            "phone_number": "+15558889999",
            "email": "joe@joesplumbing.com",
            "external_ids": ["CCC789"],
        }
    ],
}
WINDOWS = [
    {"start_time": "2017-01-01T05:00:00Z", "end_time": "2017-01-01T07:00:00Z"},
    {"start_time": "2017-01-01T11:00:00Z", "end_time": "2017-01-01T13:00:00Z"},
]


def work_order(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(WORK_ORDER)
    doc.update(changes)
    return doc


@pytest.fixture
def v3(dispatch_clock: DispatchFakeClock) -> Iterator[DispatchV3Emulator]:
    with DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET, clock=dispatch_clock) as emulator:
        yield emulator


def get_token(base_url: str, path: str = "/oauth/token") -> requests.Response:
    body = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    return requests.post(f"{base_url}{path}", json=body, timeout=5)


class Api:
    """A keep-alive session holding a bearer token, with the emulator's base URL."""

    def __init__(self, emulator: DispatchV3Emulator) -> None:
        self.base = emulator.base_url
        self.session = requests.Session()
        token = get_token(self.base).json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base}{path}", params=params, timeout=5)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(f"{self.base}{path}", json=body, timeout=5)

    def patch(self, path: str, body: Any) -> requests.Response:
        return self.session.patch(f"{self.base}{path}", json=body, timeout=5)

    def create(self, **changes: Any) -> dict[str, Any]:
        response = self.post("/v3/workorder", work_order(**changes))
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def api(v3: DispatchV3Emulator) -> Iterator[Api]:
    client = Api(v3)
    yield client
    client.session.close()


def control(v3: DispatchV3Emulator, action: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{v3.base_url}/control/{action}", json=kwargs, timeout=5)


# -- token and auth ------------------------------------------------------------------------------


def test_token_is_issued_for_the_client_credentials(v3: DispatchV3Emulator) -> None:
    response = get_token(v3.base_url)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 10800
    assert body["access_token"]


def test_wrong_client_secret_is_invalid_client(v3: DispatchV3Emulator) -> None:
    body = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong"}
    response = requests.post(f"{v3.base_url}/oauth/token", json=body, timeout=5)
    assert (response.status_code, response.json()) == (401, {"error": "invalid_client"})


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic dXNlcjpwdw=="])
def test_missing_or_unknown_token_is_invalid_token(v3: DispatchV3Emulator, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{v3.base_url}/v3/jobs", headers=headers, timeout=5)
    assert (response.status_code, response.json()) == (401, {"error": "invalid_token"})


def test_token_expires_after_its_ttl_on_the_injected_clock(
    v3: DispatchV3Emulator, api: Api, dispatch_clock: DispatchFakeClock
) -> None:
    dispatch_clock.advance(10799)
    assert api.get("/v3/jobs").status_code == 200
    dispatch_clock.advance(1)
    response = api.get("/v3/jobs")
    assert (response.status_code, response.json()) == (401, {"error": "invalid_token"})


def test_token_ttl_control_applies_to_new_tokens(
    v3: DispatchV3Emulator, api: Api, dispatch_clock: DispatchFakeClock
) -> None:
    assert control(v3, "token_ttl", seconds=5).json()["token_ttl_s"] == 5
    short = get_token(v3.base_url).json()
    assert short["expires_in"] == 5
    dispatch_clock.advance(5)
    headers = {"Authorization": f"Bearer {short['access_token']}"}
    assert requests.get(f"{v3.base_url}/v3/jobs", headers=headers, timeout=5).status_code == 401
    assert api.get("/v3/jobs").status_code == 200  # issued before: keeps its three hours


def test_expire_tokens_control_expires_every_issued_token(v3: DispatchV3Emulator, api: Api) -> None:
    assert control(v3, "expire_tokens").json() == {"expired": 1}
    assert api.get("/v3/jobs").status_code == 401
    assert get_token(v3.base_url).status_code == 200


def test_token_and_work_order_paths_are_settings(dispatch_clock: DispatchFakeClock) -> None:
    with DispatchV3Emulator(
        CLIENT_ID, CLIENT_SECRET, clock=dispatch_clock, token_path="/v3/oauth/token", workorder_path="/v3/wo"
    ) as v3:
        assert get_token(v3.base_url).status_code == 404
        token = get_token(v3.base_url, "/v3/oauth/token").json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        response = requests.post(f"{v3.base_url}/v3/wo", json=work_order(), headers=headers, timeout=5)
        assert response.status_code == 201


# -- work orders ---------------------------------------------------------------------------------


def test_work_order_creates_job_customer_and_provider(v3: DispatchV3Emulator, api: Api) -> None:
    ids = api.create()
    assert ids["appointment_id"] is None
    job = api.get(f"/v3/jobs/{ids['job_id']}").json()
    assert job == {
        "id": ids["job_id"],
        "external_ids": ["AAA123"],
        "status": "offered",
        "status_message": None,
        "title": "PLB 123: Fix the Toilet",
        "description": "## Job Info\n* Dog attacked the last guy",
        "service_type": "PLB",
        "workflow": "service",
        "orchestration": "direct",
        "service_provider_id": ids["service_provider_id"],
        "primary_contact_id": ids["primary_contact_id"],
        "created_at": "2023-11-14T22:13:20Z",
        "updated_at": "2023-11-14T22:13:20Z",
    }
    [customer] = v3.customers()
    assert (customer["id"], customer["first_name"]) == (ids["primary_contact_id"], "Testy")
    [provider] = v3.service_providers()
    assert (provider["id"], provider["external_ids"]) == (ids["service_provider_id"], ["CCC789"])


def test_accepted_documents_are_kept_as_normalized(v3: DispatchV3Emulator, api: Api) -> None:
    doc = work_order()
    doc["service_providers"][0]["phone_number"] = "tel:+1-555-888-9999"
    api.post("/v3/workorder", doc)
    api.post("/v3/workorder", work_order(title=""))  # refused: not kept
    [kept] = v3.work_orders
    assert kept["service_providers"][0]["phone_number"] == "+15558889999"
    assert kept["contacts"] == WORK_ORDER["contacts"]


def test_work_order_status_defaults_to_offered(api: Api) -> None:
    doc = work_order()
    del doc["status"]
    job_id = api.post("/v3/workorder", doc).json()["job_id"]
    assert api.get(f"/v3/jobs/{job_id}").json()["status"] == "offered"


def test_work_order_with_windows_creates_a_draft_appointment_for_the_first(api: Api) -> None:
    ids = api.create(appointment_windows=WINDOWS)
    appointment = api.get(f"/v3/appointments/{ids['appointment_id']}").json()
    assert appointment == {
        "id": ids["appointment_id"],
        "job_id": ids["job_id"],
        "status": "draft",
        "status_message": None,
        "time": "2017-01-01T05:00:00Z",
        "duration": 7200,
        "start_time": "2017-01-01T05:00:00Z",
        "end_time": "2017-01-01T07:00:00Z",
        "updated_at": "2023-11-14T22:13:20Z",
    }


def test_provider_is_matched_by_dispatch_id(api: Api) -> None:
    first = api.create()
    provider = {"id": first["service_provider_id"]}
    second = api.create(service_providers=[provider])
    assert second["service_provider_id"] == first["service_provider_id"]


def test_provider_is_matched_by_any_external_id(v3: DispatchV3Emulator, api: Api) -> None:
    first = api.create()
    provider = {"name": "Other name", "external_ids": ["ZZZ000", "CCC789"]}
    second = api.create(service_providers=[provider])
    assert second["service_provider_id"] == first["service_provider_id"]
    assert len(v3.service_providers()) == 1


def test_provider_is_matched_by_name_address_email_and_phone(v3: DispatchV3Emulator, api: Api) -> None:
    first = api.create()
    same = {k: v for k, v in WORK_ORDER["service_providers"][0].items() if k != "external_ids"}
    assert api.create(service_providers=[same])["service_provider_id"] == first["service_provider_id"]
    other_email = {**same, "email": "office@joesplumbing.com"}
    created = api.create(service_providers=[other_email])["service_provider_id"]
    assert created != first["service_provider_id"]
    assert len(v3.service_providers()) == 2


def test_invalid_work_order_is_422_with_paths(v3: DispatchV3Emulator, api: Api) -> None:
    doc = work_order()
    doc["location"]["postal_code"] = "2115"
    doc["contacts"][0]["primary"] = False
    response = api.post("/v3/workorder", doc)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation failed"
    paths = {e["path"] for e in body["errors"]}
    assert {"location.postal_code", "contacts"} <= paths
    assert all(e["message"] for e in body["errors"])
    assert v3.jobs() == []


def test_work_order_without_title_is_422(api: Api) -> None:
    doc = work_order()
    del doc["title"]
    response = api.post("/v3/workorder", doc)
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == ["title"]


def test_work_order_may_not_start_complete(api: Api) -> None:
    response = api.post("/v3/workorder", work_order(status="complete"))
    assert response.status_code == 422
    [problem] = response.json()["errors"]
    assert problem["path"] == "status"


def test_work_order_body_must_be_a_json_object(api: Api) -> None:
    response = api.session.post(f"{api.base}/v3/workorder", data=b"[1, 2]", timeout=5)
    assert (response.status_code, response.json()) == (400, {"error": "body must be a JSON object"})


# -- jobs and appointments -----------------------------------------------------------------------


def test_patch_accepts_on_behalf_of_the_provider(api: Api, dispatch_clock: DispatchFakeClock) -> None:
    job_id = api.create()["job_id"]
    dispatch_clock.advance(60)
    response = api.patch(f"/v3/jobs/{job_id}", {"status": "unscheduled", "title": "New title"})
    assert response.status_code == 200
    job = response.json()
    assert (job["status"], job["title"], job["updated_at"]) == (
        "unscheduled",
        "New title",
        "2023-11-14T22:14:20Z",
    )


def test_patch_refused_by_the_job_machine_is_422(v3: DispatchV3Emulator, api: Api) -> None:
    job_id = api.create(status="unscheduled")["job_id"]
    assert api.patch(f"/v3/jobs/{job_id}", {"status": "complete"}).status_code == 200
    response = api.patch(f"/v3/jobs/{job_id}", {"status": "canceled"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("job cannot go from complete to canceled")
    assert v3.job(job_id)["status"] == "complete"


def test_patch_unknown_field_is_422(api: Api) -> None:
    job_id = api.create()["job_id"]
    response = api.patch(f"/v3/jobs/{job_id}", {"colour": "red"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "colour"


def test_unknown_job_and_appointment_are_404(api: Api) -> None:
    for path in ("/v3/jobs/999999", "/v3/appointments/999999"):
        response = api.get(path)
        assert (response.status_code, response.json()) == (404, {"error": "not found"})
    assert api.patch("/v3/jobs/999999", {"status": "canceled"}).status_code == 404


def test_post_appointment_schedules_an_offered_job(v3: DispatchV3Emulator, api: Api) -> None:
    job_id = api.create()["job_id"]
    body = {"job_id": job_id, "time": "2017-01-02T09:00:00Z", "duration": 3600, "status": "scheduled"}
    response = api.post("/v3/appointments", body)
    assert response.status_code == 201
    appointment = response.json()
    assert (appointment["status"], appointment["end_time"]) == ("scheduled", "2017-01-02T10:00:00Z")
    assert v3.job(job_id)["status"] == "scheduled"


def test_post_appointment_for_a_canceled_job_is_422(api: Api) -> None:
    job_id = api.create()["job_id"]
    api.patch(f"/v3/jobs/{job_id}", {"status": "canceled"})
    response = api.post("/v3/appointments", {"job_id": job_id, "time": "2017-01-02T09:00:00Z"})
    assert response.status_code == 422
    assert "job cannot go from canceled to" in response.json()["error"]


def test_post_appointment_for_an_unknown_job_is_422(api: Api) -> None:
    response = api.post("/v3/appointments", {"job_id": 999999, "time": "2017-01-02T09:00:00Z"})
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == ["job_id"]


def test_patch_draft_appointment_to_scheduled_schedules_the_job(v3: DispatchV3Emulator, api: Api) -> None:
    ids = api.create(appointment_windows=WINDOWS)
    path = f"/v3/appointments/{ids['appointment_id']}"
    response = api.patch(path, {"status": "scheduled", "time": "2017-01-01T06:00:00Z"})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["time"]) == ("scheduled", "2017-01-01T06:00:00Z")
    assert v3.job(ids["job_id"])["status"] == "scheduled"


def test_patch_appointment_refused_transition_is_422(api: Api) -> None:
    ids = api.create(appointment_windows=WINDOWS)
    path = f"/v3/appointments/{ids['appointment_id']}"
    response = api.patch(path, {"status": "started"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("appointment cannot go from draft to started")


# -- field control -------------------------------------------------------------------------------


def test_control_accept_schedule_complete_by_external_id(v3: DispatchV3Emulator, api: Api) -> None:
    job_id = api.create()["job_id"]
    assert control(v3, "accept", job="AAA123").json()["result"]["status"] == "unscheduled"
    scheduled = control(v3, "schedule", job="AAA123", start_time="2017-01-02T09:00:00Z", duration_s=1800)
    appointment = scheduled.json()["result"]
    assert (appointment["status"], appointment["duration"]) == ("scheduled", 1800)
    assert api.get(f"/v3/jobs/{job_id}").json()["status"] == "scheduled"
    assert control(v3, "complete", job=job_id).json()["result"]["status"] == "complete"
    assert api.get(f"/v3/appointments/{appointment['id']}").json()["status"] == "complete"


def test_schedule_books_the_draft_appointment(v3: DispatchV3Emulator, api: Api) -> None:
    ids = api.create(appointment_windows=WINDOWS)
    appointment = v3.schedule(ids["job_id"])
    assert (appointment["id"], appointment["status"]) == (ids["appointment_id"], "scheduled")
    assert appointment["time"] == "2017-01-01T05:00:00Z"
    assert v3.job(ids["job_id"])["status"] == "scheduled"


def test_enroute_and_start_show_on_job_and_appointment(v3: DispatchV3Emulator, api: Api) -> None:
    job_id = api.create()["job_id"]
    v3.schedule(job_id, start_time="2017-01-02T09:00:00Z")
    assert v3.enroute(job_id)["status"] == "enroute"
    assert v3.job(job_id)["status"] == "enroute"
    assert v3.start(job_id)["status"] == "started"
    assert v3.job(job_id)["status"] == "started"
    assert api.patch(f"/v3/jobs/{job_id}", {"status": "complete"}).status_code == 200


def test_cancel_cancels_open_appointments_with_a_reason(v3: DispatchV3Emulator, api: Api) -> None:
    ids = api.create(appointment_windows=WINDOWS)
    job = control(v3, "cancel", job=ids["job_id"], reason="customer moved").json()["result"]
    assert (job["status"], job["status_message"]) == ("canceled", "customer moved")
    assert api.get(f"/v3/appointments/{ids['appointment_id']}").json()["status"] == "canceled"


def test_reject_is_refused_once_accepted(v3: DispatchV3Emulator, api: Api) -> None:
    job_id = api.create()["job_id"]
    v3.accept(job_id)
    response = control(v3, "reject", job=job_id, reason="too far")
    assert response.status_code == 409
    assert "job cannot go from unscheduled to rejected" in response.json()["error"]


def test_start_without_a_booked_appointment_is_409(v3: DispatchV3Emulator, api: Api) -> None:
    job_id = api.create()["job_id"]
    assert control(v3, "start", job=job_id).status_code == 409


def test_control_unknown_job_is_404_and_bad_arguments_400(v3: DispatchV3Emulator) -> None:
    assert control(v3, "accept", job="nope").status_code == 404
    assert control(v3, "accept", jobb="nope").status_code == 400
    assert control(v3, "explode").status_code == 404


# -- lists ---------------------------------------------------------------------------------------


def test_list_filters_by_status_external_id_and_updated_since(
    v3: DispatchV3Emulator, api: Api, dispatch_clock: DispatchFakeClock
) -> None:
    first = api.create(external_ids=["A-1"])["job_id"]
    dispatch_clock.advance(10)
    second = api.create(external_ids=["A-2"])["job_id"]
    dispatch_clock.advance(10)
    v3.accept(first)  # first is now updated after second

    def ids(**params: Any) -> list[int]:
        return [job["id"] for job in api.get("/v3/jobs", **params).json()["data"]]

    assert ids() == [second, first]
    assert ids(status="unscheduled") == [first]
    assert ids(status="offered,unscheduled") == [second, first]
    assert ids(external_id="A-2,A-9") == [second]
    assert ids(updated_since="2023-11-14T22:13:30Z") == [second, first]  # inclusive
    assert ids(updated_since="2023-11-14T22:13:31Z") == [first]


def test_appointment_list_filters_by_job_id(api: Api) -> None:
    one = api.create(appointment_windows=WINDOWS)
    api.create(appointment_windows=WINDOWS)
    body = api.get("/v3/appointments", job_id=str(one["job_id"])).json()
    assert [a["id"] for a in body["data"]] == [one["appointment_id"]]
    assert body["total"] == 1


def test_150_jobs_come_in_two_pages(v3: DispatchV3Emulator, api: Api) -> None:
    for n in range(150):
        api.create(external_ids=[f"J-{n}"])
    first = api.get("/v3/jobs").json()
    assert (len(first["data"]), first["offset"], first["limit"], first["total"]) == (100, 0, 100, 150)
    assert first["next_offset"] == 100
    second = api.get("/v3/jobs", offset=first["next_offset"]).json()
    assert (len(second["data"]), second["next_offset"]) == (50, None)
    seen = [job["external_ids"][0] for job in first["data"] + second["data"]]
    assert seen == [f"J-{n}" for n in range(150)]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1}])
def test_bad_paging_is_400(api: Api, params: dict[str, Any]) -> None:
    assert api.get("/v3/jobs", **params).status_code == 400


def test_filter_of_the_other_list_is_400(api: Api) -> None:
    assert api.get("/v3/appointments", external_id="A").status_code == 400


# -- faults and accounting -----------------------------------------------------------------------


def test_latency_fault_delays_the_answer(v3: DispatchV3Emulator, api: Api) -> None:
    v3.set_faults("jobs.list", latency_s=0.2)
    started = time.monotonic()
    assert api.get("/v3/jobs").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_error_fault_answers_5xx(v3: DispatchV3Emulator, api: Api) -> None:
    control(v3, "faults", endpoint="workorder", error_rate=1.0, error_status=502)
    assert api.post("/v3/workorder", work_order()).status_code == 502
    assert v3.jobs() == []
    v3.set_faults(clear=True)
    assert api.post("/v3/workorder", work_order()).status_code == 201


def test_faults_on_an_unknown_endpoint_are_400(v3: DispatchV3Emulator) -> None:
    assert control(v3, "faults", endpoint="jobs", error_rate=1.0).status_code == 400
    assert v3.faults.plans == {}


def test_throttle_fault_answers_429_with_retry_after(v3: DispatchV3Emulator, api: Api) -> None:
    v3.set_faults("*", throttle_rate=1.0)
    response = api.get("/v3/jobs")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


def test_drop_fault_closes_the_connection(v3: DispatchV3Emulator, api: Api) -> None:
    v3.set_faults("jobs.get", drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.get("/v3/jobs/1")


def test_counts_by_endpoint(v3: DispatchV3Emulator, api: Api) -> None:
    ids = api.create(appointment_windows=WINDOWS)
    api.get(f"/v3/jobs/{ids['job_id']}")
    api.patch(f"/v3/jobs/{ids['job_id']}", {"title": "t"})
    api.get("/v3/jobs")
    api.get(f"/v3/appointments/{ids['appointment_id']}")
    api.patch(f"/v3/appointments/{ids['appointment_id']}", {"duration": 60})
    api.get("/v3/appointments")
    api.post("/v3/appointments", {"job_id": ids["job_id"], "time": "2017-01-02T09:00:00Z"})
    requests.get(f"{v3.base_url}/v3/jobs", timeout=5)  # no token
    expected = dict.fromkeys(
        ["token", "workorder", "jobs.get", "jobs.patch", "appointments.get", "appointments.patch"], 1
    )
    assert v3.counts == {
        **expected,
        "jobs.list": 2,
        "appointments.list": 1,
        "appointments.post": 1,
        "unauthorized": 1,
    }
    assert requests.get(f"{v3.base_url}/control/state", timeout=5).json()["counts"]["jobs.list"] == 2


def test_a_zero_throttle_rate_draws_nothing_from_the_seeded_source() -> None:
    """Seeded fault runs of the other emulators replay as they did before throttling existed."""
    faults = Faults(seed=7)
    faults.set("agent/in", error_rate=0.5)
    rng = random.Random(7)
    expected = [503 if rng.random() < 0.5 else None for _ in range(20)]
    assert [apply_faults(faults, "agent/in", {}) for _ in range(20)] == expected
    assert set(expected) == {503, None}

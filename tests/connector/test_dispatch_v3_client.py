"""Dispatch v3 client: request shapes, the token's life, and the one retry policy (pure unit tests with
`responses`; the end-to-end tests against the emulator are in tests/e2e/test_dispatch_v3.py)."""

from __future__ import annotations

import json

import pytest
import responses

from connector.dispatch_v3.client import (
    DispatchV3AuthError,
    DispatchV3Client,
    DispatchV3Rejected,
    DispatchV3Unavailable,
)

BASE = "https://v3.example"
TOKEN = {"access_token": "tok-1", "token_type": "bearer", "expires_in": 10800}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(clock: Clock | None = None) -> DispatchV3Client:
    return DispatchV3Client(BASE, "cid", "s3cret", backoff_s=0.0, clock=clock or Clock())


@responses.activate
def test_token_is_fetched_once_and_sent_as_bearer() -> None:
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    responses.post(f"{BASE}/v3/workorder", json={"job_id": 7}, status=201)
    responses.get(f"{BASE}/v3/jobs/7", json={"id": 7})
    c = client()
    assert c.create_work_order({"title": "t"})["job_id"] == 7
    assert c.get_job(7) == {"id": 7}
    assert c.token_requests == 1
    token_call = json.loads(responses.calls[0].request.body)
    assert token_call == {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "s3cret"}
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok-1"


@responses.activate
def test_a_token_near_expiry_is_renewed_before_use() -> None:
    responses.post(f"{BASE}/oauth/token", json={**TOKEN, "expires_in": 100})
    responses.get(f"{BASE}/v3/jobs/1", json={"id": 1})
    clock = Clock()
    c = client(clock)
    c.get_job(1)
    clock.now += 85
    c.get_job(1)
    assert c.token_requests == 1  # a 100 s token is renewed a tenth early, not a minute early
    clock.now += 10
    c.get_job(1)
    assert c.token_requests == 2


@responses.activate
def test_a_401_fetches_a_new_token_and_retries_once() -> None:
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    responses.post(f"{BASE}/oauth/token", json={**TOKEN, "access_token": "tok-2"})
    responses.get(f"{BASE}/v3/jobs/1", json={"error": "invalid_token"}, status=401)
    responses.get(f"{BASE}/v3/jobs/1", json={"id": 1})
    c = client()
    assert c.get_job(1) == {"id": 1}
    assert c.token_requests == 2
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer tok-2"


@responses.activate
def test_a_second_401_names_the_client_id_setting() -> None:
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    responses.get(f"{BASE}/v3/jobs/1", json={"error": "invalid_token"}, status=401)
    with pytest.raises(DispatchV3AuthError, match="DISPATCH_V3_CLIENT_ID 'cid'") as info:
        client().get_job(1)
    assert "s3cret" not in str(info.value)


@responses.activate
def test_refused_credentials_are_a_configuration_error() -> None:
    responses.post(f"{BASE}/oauth/token", json={"error": "invalid_client"}, status=401)
    with pytest.raises(DispatchV3AuthError, match="DISPATCH_V3_CLIENT_ID and DISPATCH_V3_CLIENT_SECRET"):
        client().get_job(1)


@responses.activate
def test_429_waits_as_long_as_retry_after_says(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    responses.get(f"{BASE}/v3/jobs/1", status=429, headers={"Retry-After": "3"})
    responses.get(f"{BASE}/v3/jobs/1", status=503)
    responses.get(f"{BASE}/v3/jobs/1", json={"id": 1})
    assert client().get_job(1) == {"id": 1}
    assert slept[0] == 3.0 and len(slept) == 2


@responses.activate
def test_5xx_past_every_attempt_is_unavailable() -> None:
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    responses.get(f"{BASE}/v3/jobs/1", status=502)
    with pytest.raises(
        DispatchV3Unavailable, match="still failing after 5 attempts: GET /v3/jobs/1 answered HTTP 502"
    ):
        client().get_job(1)


@responses.activate
def test_a_422_carries_each_path_and_message() -> None:
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    errors = [{"path": "location.state", "message": "must be a two-letter code"}]
    responses.post(f"{BASE}/v3/workorder", json={"error": "validation failed", "errors": errors}, status=422)
    with pytest.raises(DispatchV3Rejected, match=r"location\.state: must be a two-letter code") as info:
        client().create_work_order({"title": "t"})
    assert info.value.status == 422 and info.value.errors == errors


@responses.activate
def test_lists_are_read_page_by_page() -> None:
    responses.post(f"{BASE}/oauth/token", json=TOKEN)
    responses.get(f"{BASE}/v3/jobs", json={"data": [{"id": 1}, {"id": 2}], "next_offset": 2})
    responses.get(f"{BASE}/v3/jobs", json={"data": [{"id": 3}], "next_offset": None})
    assert [job["id"] for job in client().iter_list("jobs", status="scheduled")] == [1, 2, 3]
    assert "offset=2" in responses.calls[-1].request.url and "limit=100" in responses.calls[-1].request.url

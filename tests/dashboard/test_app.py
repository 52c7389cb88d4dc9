"""The dashboard app over a store the real engine filled (FastAPI TestClient: no sockets needed for ASGI)."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from sync.dashboard.app import create_dashboard_app, parse_since
from sync.service.health import JobHealth
from tests.dashboard.conftest import HOSTILE, Scenario

TOKEN = "s3cret-dashboard-token"


@pytest.fixture
def client(scenario: Scenario) -> TestClient:
    return TestClient(create_dashboard_app(scenario.engine))


def log_rows(html: str) -> list[str]:
    rows = re.findall(r'<tr class="row-.*?</tr>', html, re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", r)).split()) for r in rows]


def test_level_filter_keeps_only_the_address_error(client: TestClient, scenario: Scenario) -> None:
    everything = log_rows(client.get("/log").text)
    errors = log_rows(client.get("/log", params={"level": "error"}).text)
    assert len(everything) > len(errors) == 1
    assert "address" in errors[0] and scenario.bad in errors[0]


def test_record_filter_matches_crm_or_external_id(client: TestClient, scenario: Scenario) -> None:
    rows = log_rows(client.get("/log", params={"record": scenario.good}).text)
    assert rows and all(scenario.good in r for r in rows)
    assert not any(scenario.bad in r for r in rows)


def test_direction_filter_narrows(client: TestClient) -> None:
    everything = log_rows(client.get("/log").text)
    outbound = log_rows(client.get("/log", params={"direction": "out"}).text)
    assert outbound and len(outbound) < len(everything)
    assert {row.split()[2] for row in outbound} == {"out"}  # columns: time, level, direction, ...


def test_entity_since_and_limit_filters(client: TestClient) -> None:
    notes = log_rows(client.get("/log", params={"entity": "note"}).text)
    assert notes and {row.split()[3] for row in notes} == {"note"}
    assert len(log_rows(client.get("/log", params={"since": "1h"}).text)) == len(
        log_rows(client.get("/log").text)
    )
    assert len(log_rows(client.get("/log", params={"limit": "1"}).text)) == 1


def test_bad_filter_is_reported_not_crashed(client: TestClient) -> None:
    response = client.get("/log", params={"since": "yesterday", "level": "loud"})
    assert response.status_code == 400
    assert "15m, 2h, 3d" in response.text and "&#39;level&#39; must be one of" in response.text


def test_log_links_each_id_to_its_timeline(client: TestClient, scenario: Scenario) -> None:
    assert f'href="/records/{scenario.bad}"' in client.get("/log").text


def test_record_page_shows_timeline_state_and_hostile_text_escaped(
    client: TestClient, scenario: Scenario
) -> None:
    html = client.get(f"/records/{scenario.good}").text
    assert "received job" in html and "write-back queued" in html and "published" in html
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_hostile_log_message_is_escaped_on_the_log_page(client: TestClient) -> None:
    html = client.get("/log", params={"entity": "note"}).text
    assert "Gate code &lt;script&gt;" in html and "<script>" not in html


def test_unknown_record_is_404_with_a_message(client: TestClient) -> None:
    response = client.get("/records/0WOdoesnotexist")
    assert response.status_code == 404 and "knows nothing about" in response.text


def test_search_box_redirects_to_the_timeline(client: TestClient, scenario: Scenario) -> None:
    response = client.get("/records", params={"id": scenario.good}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/records/{scenario.good}"


def test_health_page_shows_jobs_queues_and_error_count(scenario: Scenario) -> None:
    health = JobHealth()
    health.register("poll", 15)
    health.finished("poll", "error", error="agent/out timed out")
    html = TestClient(create_dashboard_app(scenario.engine, health=health)).get("/").text
    assert "agent/out timed out" in html and "poll" in html
    assert re.search(r"Errors, last 24 h</div>\s*<div class=\"big\">1<", html)
    assert "processed" in html and "confirmed 1" in html


def test_machines_page_has_svg_table_and_mermaid(client: TestClient) -> None:
    html = client.get("/machines").text
    assert html.count("<svg") == 5 and "stateDiagram-v2" in html and "unscheduled" in html


def test_probes(scenario: Scenario) -> None:
    down = TestClient(create_dashboard_app(scenario.engine, ready=lambda: False, token=TOKEN))
    assert (down.get("/healthz").status_code, down.get("/healthz").text) == (200, "ok")
    assert down.get("/readyz").status_code == 503
    up = TestClient(create_dashboard_app(scenario.engine, ready=lambda: True))
    assert up.get("/readyz").status_code == 200


def test_metrics_served_when_given_else_404(scenario: Scenario) -> None:
    app = create_dashboard_app(scenario.engine, metrics=lambda: b"dc_up 1\n")
    response = TestClient(app).get("/metrics")
    assert response.content == b"dc_up 1\n"
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert TestClient(create_dashboard_app(scenario.engine)).get("/metrics").status_code == 404


def guarded(engine: Engine) -> TestClient:
    return TestClient(create_dashboard_app(engine, token=TOKEN, metrics=lambda: b"x 1\n"))


def test_token_required_with_a_clear_message(scenario: Scenario) -> None:
    client = guarded(scenario.engine)
    for path in ("/", "/log", f"/records/{scenario.good}", "/machines", "/metrics"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert "?token=" in response.text and TOKEN not in response.text
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_bearer_header_is_accepted(scenario: Scenario) -> None:
    response = guarded(scenario.engine).get("/log", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_query_token_sets_a_cookie_and_drops_the_token_from_the_url(scenario: Scenario) -> None:
    client = guarded(scenario.engine)
    response = client.get("/log", params={"token": TOKEN, "level": "error"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/log?level=error"
    cookie = response.cookies.get("dc_dashboard")
    assert cookie and TOKEN not in cookie
    assert client.get("/log").status_code == 200  # the cookie now signs every page in


def test_pages_carry_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_parse_since_units() -> None:
    assert parse_since("15m").total_seconds() == 900 and parse_since("3d").days == 3
    with pytest.raises(ValueError):
        parse_since("2 fortnights")

"""A real browser (Debian's Chromium via Playwright) on the dashboard served by uvicorn on a real socket."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Dialog, Page, sync_playwright

from sync.dashboard.app import create_dashboard_app
from sync.service.health import JobHealth
from tests.dashboard.conftest import Scenario

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(scenario: Scenario) -> Iterator[str]:
    health = JobHealth()
    for name, interval in (("publish", 60), ("poll", 15), ("process", 5), ("writeback", 10)):
        health.register(name, interval)
        health.started(name)
        health.finished(name, "ok", summary="1 cycle")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_dashboard_app(scenario.engine, health=health), "127.0.0.1", port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # readiness of a real server, not a time assumption
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(base_url: str) -> Iterator[Page]:
    if not CHROMIUM.exists():
        message = (
            f"Chromium not installed: {CHROMIUM} is missing; "
            "run `make test`, which installs Debian's chromium"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_health_page_loads(page: Page, base_url: str, tmp_path: Path) -> None:
    page.goto(base_url + "/")
    assert page.title().startswith("Sync health")
    assert page.locator("table tr", has_text="writeback").count() == 1
    # The committed screenshot is refreshed on request only, so a test run leaves the work tree clean.
    shot = (
        SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") or not SCREENSHOT.exists() else tmp_path / "d.png"
    )
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000  # a blank page is a few kB


def test_filter_form_narrows_the_log_to_the_address_error(
    page: Page, base_url: str, scenario: Scenario
) -> None:
    page.goto(base_url + "/log")
    all_rows = page.locator("table.log tr.row-info, table.log tr.row-warning, table.log tr.row-error").count()
    page.select_option("select[name=level]", "error")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/log?*level=error*")
    rows = page.locator("table.log tr.row-error")
    assert rows.count() == 1 < all_rows
    assert "address" in rows.first.inner_text() and scenario.bad in rows.first.inner_text()


def test_record_link_opens_its_timeline(page: Page, base_url: str, scenario: Scenario) -> None:
    page.goto(base_url + "/log?entity=note")
    page.locator("a.record-link", has_text=scenario.good).first.click()
    page.wait_for_url(f"**/records/{scenario.good}")
    events = page.locator("table.timeline tr.event")
    assert events.count() > 10
    text = page.locator("table.timeline").inner_text()
    for what in ("published", "received ack", "received job", "write-back queued", "write-back flushed"):
        assert what in text, what


def test_hostile_subject_never_runs(page: Page, base_url: str, scenario: Scenario) -> None:
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    page.goto(f"{base_url}/records/{scenario.good}")
    page.locator("table.timeline details").first.locator("summary").click()
    assert "<script>alert(1)</script>" in page.locator("table.timeline").inner_text()  # shown as text...
    assert page.locator("td.msg", has_text="Gate code <script>alert(1)</script>").count() >= 1
    page.remove_listener("dialog", record)
    assert dialogs == []  # ... and never run

"""The dashboard of a running daemon (`dispatch-connector run` subprocess, both emulators) in Chromium."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, sync_playwright

from tests.dashboard.test_browser import ARGS, CHROMIUM
from tests.e2e.conftest import Harness
from tests.e2e.test_daemon import _start_daemon, _wait


@pytest.fixture
def chromium_page() -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not installed: {CHROMIUM} is missing; run `make test`, which installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_running_daemon_dashboard_shows_health_log_and_timeline(
    harness: Harness, tmp_path: Path, chromium_page: Page
) -> None:
    good = harness.work_order(Subject="Replace breaker")
    bad = harness.work_order(State=None, PostalCode=None)
    proc, url = _start_daemon(harness, tmp_path)
    try:
        _wait(lambda: harness.wo(good)["Dispatch_Last_Synced__c"] and harness.wo(bad)["Dispatch_Error__c"])
        harness.dispatch.accept_job(good)
        _wait(lambda: harness.wo(good)["Dispatch_Status__c"] == "unscheduled")
        page = chromium_page
        page.goto(url + "/")
        health = page.locator("body").inner_text()
        for job in ("publish", "poll", "process", "writeback"):
            assert job in health
        page.goto(url + "/log")
        page.select_option("select[name=level]", "error")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**/log?*level=error*")
        rows = page.locator("table.log tr.row-error")
        assert rows.count() >= 1 and all(bad in rows.nth(i).inner_text() for i in range(rows.count()))
        page.goto(url + f"/records/{good}")
        timeline = page.locator("table.timeline").inner_text()
        for what in ("published", "received ack", "received job", "write-back flushed"):
            assert what in timeline, what
        assert "unscheduled" in timeline
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

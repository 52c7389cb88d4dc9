"""The daemon: jobs run in pipeline order, a failing job never kills it, SIGTERM mid-cycle loses nothing."""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest
import requests
from sqlmodel import Session, select

from sync.service.daemon import Daemon, freeze_startup_heap
from sync.store.models import OutboxBatch, SyncLog
from tests.e2e.conftest import PASSWORD, PUBLIC_KEY, SECRET, TOKEN, USERNAME, Harness


def test_run_once_moves_records_both_ways(harness: Harness) -> None:
    wo = harness.work_order()
    daemon = Daemon(harness.ctx)
    daemon.run_once()  # publish (sent), poll (acks arrive later), process, write back
    harness.dispatch.wait_idle(10)
    harness.dispatch.accept_job(wo)
    daemon.run_once()
    record = harness.wo(wo)
    assert record["Dispatch_Last_Synced__c"] is not None and record["Dispatch_Status__c"] == "unscheduled"
    assert {s.last_result for s in daemon.health.snapshot().values()} == {"ok"}
    metrics = daemon.metrics.render().decode() if daemon.metrics else ""
    assert 'dc_job_runs_total{job="publish",result="ok"} 2.0' in metrics
    assert 'dc_queue_depth{queue="inbox",status="processed"}' in metrics
    assert 'dc_api_calls_total{system="dispatch_connect"}' in metrics


def test_a_failing_job_is_logged_and_retried_next_interval(harness: Harness) -> None:
    harness.work_order()
    harness.dispatch.set_faults("agent/in", error_rate=1.0)
    daemon = Daemon(harness.ctx, role="publisher")
    daemon.run_once()
    daemon.run_once()  # still down: logged again, daemon alive
    status = daemon.health.snapshot()["publish"]
    assert status.runs == 2
    with Session(harness.ctx.engine) as session:
        errors = session.exec(select(SyncLog).where(SyncLog.level == "error")).all()
    assert any("same MessageId" in e.message for e in errors)
    harness.dispatch.set_faults(clear=True)
    daemon.run_once()
    with Session(harness.ctx.engine) as session:
        assert {b.status for b in session.exec(select(OutboxBatch)).all()} == {"sent"}


def test_jobs_never_overlap_themselves(harness: Harness) -> None:
    daemon = Daemon(harness.ctx)
    daemon.start()
    try:
        jobs = daemon.scheduler.get_jobs()
        assert {j.id for j in jobs} == {"publish", "poll", "process", "writeback", "retention"}
        assert all(j.max_instances == 1 and j.coalesce for j in jobs)
    finally:
        daemon.stop()
    assert not daemon.ready()


def _start_daemon(harness: Harness, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_"))}
    env.update(
        DATABASE_URL=str(harness.ctx.settings.database_url),
        DISPATCH_BASE_URL=harness.dispatch.base_url,
        DISPATCH_PUBLIC_KEY=PUBLIC_KEY,
        DISPATCH_SECRET=SECRET,
        SALESFORCE_INSTANCE_URL=harness.sf.base_url,
        SALESFORCE_USERNAME=USERNAME,
        SALESFORCE_PASSWORD=PASSWORD,
        SALESFORCE_SECURITY_TOKEN=TOKEN,
        SALESFORCE_CA_BUNDLE=str(harness.sf.ca_path),
        PUBLISH_INTERVAL_S="0.3",
        POLL_INTERVAL_S="0.3",
        PROCESS_INTERVAL_S="0.3",
        WRITEBACK_INTERVAL_S="0.3",
        DASHBOARD_PORT="0",
        BATCH_SIZE="7",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync.service.cli", "run"],
        env=env,
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = lines.get(timeout=30)
        if "dashboard and health on" in line:
            return proc, line.split(" on ")[1].split()[0]
    raise AssertionError("daemon did not start")


def _wait(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the daemon"
        time.sleep(0.1)


def test_sigterm_mid_cycle_then_restart_loses_nothing(harness: Harness, tmp_path: Path) -> None:
    orders = [harness.work_order(Subject=f"Job {n}") for n in range(40)]
    proc, url = _start_daemon(harness, tmp_path)
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    _wait(lambda: len(harness.dispatch.records("job")) > 0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    harness.dispatch.accept_job(orders[0])  # a field event while the daemon is down
    proc, url = _start_daemon(harness, tmp_path)
    try:
        _wait(lambda: all(harness.wo(o)["Dispatch_Last_Synced__c"] for o in orders))
        _wait(lambda: harness.wo(orders[0])["Dispatch_Status__c"] == "unscheduled")
        assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
        assert "dc_queue_depth" in requests.get(f"{url}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with Session(harness.ctx.engine) as session:
        sent = [
            r["record"]["external_id"]
            for b in session.exec(select(OutboxBatch)).all()
            for r in b.payload
            if r["record_type"] == "job"
        ]
    assert sorted(sent) == sorted(orders)  # every job sent, none in two batches
    assert sorted(harness.dispatch.records("job")) == sorted(orders)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC can free it


def test_start_up_heap_is_frozen_and_later_garbage_still_collected() -> None:
    """The daemon takes its start-up objects out of full collections; a cycle made later is still freed."""
    try:
        freeze_startup_heap()
        # modules, engine, clients: no longer walked by every collection
        assert gc.get_freeze_count() > 10_000
        node = _Node()
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_runs_that_did_nothing_log_at_debug_and_runs_with_work_at_info(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(harness.ctx)
    with caplog.at_level(logging.DEBUG, logger="dispatch_connector.daemon"):
        daemon.run_job("poll")  # nothing waiting in agent/out
        harness.work_order()
        daemon.run_job("publish")
    levels = {r.getMessage().split(":")[0]: r.levelno for r in caplog.records if r.name.endswith("daemon")}
    assert levels == {"poll": logging.DEBUG, "publish": logging.INFO}
    assert daemon.health.snapshot()["poll"].last_summary == "received 0, stored 0, redelivered 0, acked 0"

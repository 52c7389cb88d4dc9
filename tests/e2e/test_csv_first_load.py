"""`publish --all --csv`: a first load sent to `agent/in` as the playbook's CSV, over real sockets to both
emulators; Dispatch ends up holding the same records the JSON first load gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from sync.outbound.publisher import backfill_all
from sync.store.models import OutboxBatch
from tests.e2e.conftest import PASSWORD, PUBLIC_KEY, SECRET, TOKEN, USERNAME, Harness, make_context

TYPES = ("organization", "customer", "job")
V3_MAPPING = Path(__file__).parents[2] / "connector" / "mappings" / "salesforce_dispatch_v3.yaml"


def _held(dispatch: DispatchEmulator) -> dict[str, dict[str, Any]]:
    return {record_type: dispatch.records(record_type) for record_type in TYPES}


def _orders(harness: Harness) -> list[str]:
    return [
        harness.work_order(Subject="Replace breaker"),
        harness.work_order(Subject="Fix boiler", PostalCode="02446", State="MA", City="Brookline"),
        harness.work_order(Subject="No provider", Dispatch_Service_Provider__c=None),
    ]


def test_csv_first_load_stores_what_json_stores(harness: Harness, tmp_path: Path) -> None:
    orders = _orders(harness)
    report = backfill_all(harness.ctx, encoding="csv")
    assert harness.dispatch.wait_idle(10)
    assert report.send_errors == []
    with DispatchEmulator(PUBLIC_KEY, SECRET) as json_dispatch:
        json_tmp = tmp_path / "json"
        json_tmp.mkdir()
        json_ctx = make_context(json_tmp, harness.sf, json_dispatch)
        json_report = backfill_all(json_ctx)
        assert json_dispatch.wait_idle(10)
        assert json_report.canonical_records == report.canonical_records
        assert json_dispatch.counts["agent/in"] == 1  # one canonical array
        assert _held(harness.dispatch) == _held(json_dispatch)
        json_ctx.engine.dispose()
    assert sorted(harness.dispatch.records("job")) == sorted(orders)
    assert harness.dispatch.counts["agent/in"] == 3  # one text/csv request per record type, in order
    assert harness.dispatch.records("job")[orders[2]]["organization_id"] == 42  # the key's own organization
    with Session(harness.ctx.engine) as session:
        assert {b.encoding for b in session.exec(select(OutboxBatch)).all()} == {"csv"}


def test_csv_batches_are_confirmed_by_their_acks(harness: Harness) -> None:
    orders = _orders(harness)
    backfill_all(harness.ctx, encoding="csv")
    assert harness.dispatch.wait_idle(10)
    harness.round_trip()
    assert all(harness.wo(order)["Dispatch_Last_Synced__c"] for order in orders)
    assert not any(harness.wo(order)["Dispatch_Error__c"] for order in orders)
    with Session(harness.ctx.engine) as session:
        assert {b.status for b in session.exec(select(OutboxBatch)).all()} == {"confirmed"}


def _cli(args: list[str], cwd: Path, harness: Harness, **extra: str) -> subprocess.CompletedProcess[str]:
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
        **extra,
    )
    command = [sys.executable, "-m", "sync.service.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_publish_all_csv_from_the_command_line(harness: Harness, tmp_path: Path) -> None:
    orders = _orders(harness)
    done = _cli(["publish", "--all", "--csv"], tmp_path, harness)
    assert done.returncode == 0, done.stderr
    assert "batches 1, requests sent 1" in done.stdout  # one batch, sent as one CSV request per type
    assert harness.dispatch.wait_idle(10)
    assert sorted(harness.dispatch.records("job")) == sorted(orders)
    assert harness.dispatch.counts["agent/in"] == 3


def test_csv_without_all_is_a_usage_error(harness: Harness, tmp_path: Path) -> None:
    done = _cli(["publish", "--csv"], tmp_path, harness)
    assert done.returncode == 2
    assert "--csv is for a first load: use it with --all" in done.stderr
    assert harness.dispatch.counts.get("agent/in", 0) == 0


def test_csv_to_a_back_end_without_csv_is_a_usage_error_naming_it(harness: Harness, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mapping_file: {V3_MAPPING}\nbackends:\n  dispatch_connect: {{}}\n  dispatch_v3: {{}}\n"
    )
    done = _cli(
        ["--config", str(config), "publish", "--all", "--csv"],
        tmp_path,
        harness,
        DISPATCH_V3_BASE_URL="http://127.0.0.1:9",
        DISPATCH_V3_CLIENT_ID="connector-app",
        DISPATCH_V3_CLIENT_SECRET="v3-s3cret-value",
    )
    assert done.returncode == 2, done.stderr
    assert "--csv: back end dispatch_v3 (" in done.stderr and "takes no CSV" in done.stderr
    assert "v3-s3cret-value" not in done.stdout + done.stderr
    assert harness.dispatch.counts.get("agent/in", 0) == 0

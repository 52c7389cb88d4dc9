"""The CLI as a user runs it: real subprocesses, real SQLite file, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "c0ffee" * 10 + "abcd"


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "sync.service.cli", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    result = run(
        ["config", "show", "--json"], tmp_path, DISPATCH_SECRET=SECRET, SALESFORCE_PASSWORD="s3cr3t!"
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["dispatch_secret"] == "********"
    assert SECRET not in result.stdout + result.stderr and "s3cr3t!" not in result.stdout + result.stderr


def test_invalid_setting_exits_2_with_one_message(tmp_path: Path) -> None:
    result = run(["config", "show"], tmp_path, DISPATCH_SECRET="xyz-not-hex")
    assert result.returncode == 2
    assert "DISPATCH_SECRET: must be a hex string" in result.stderr
    assert "Traceback" not in result.stderr and "xyz-not-hex" not in result.stderr


def test_unmigrated_database_is_refused_then_upgrade_fixes_it(tmp_path: Path) -> None:
    refused = run(["log"], tmp_path)
    assert refused.returncode == 2
    assert "dispatch-connector db upgrade" in refused.stderr
    upgraded = run(["db", "upgrade"], tmp_path)
    assert upgraded.returncode == 0 and "database at schema" in upgraded.stdout
    assert (tmp_path / "dispatch_connector.db").exists()
    current = run(["db", "current"], tmp_path)
    assert "up to date" in current.stdout
    assert run(["log", "--json"], tmp_path).returncode == 0
    down = run(["db", "downgrade", "base"], tmp_path)
    assert down.returncode == 0 and "base (empty)" in down.stdout


def test_log_filters_by_level_and_record(tmp_path: Path) -> None:
    from sync.store.db import make_engine, session_scope, upgrade
    from sync.store.synclog import write_log

    url = f"sqlite:///{tmp_path}/dispatch_connector.db"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        write_log(
            session,
            "address incomplete",
            level="error",
            direction="out",
            entity="job",
            crm_record_id="0WO1",
            external_id="WO-1",
            msg_id="m-1",
        )
        write_log(session, "job scheduled", level="info", direction="in", entity="job", crm_record_id="0WO2")
    engine.dispose()
    errors = run(["log", "--level", "error", "--json"], tmp_path)
    lines = [json.loads(line) for line in errors.stdout.splitlines()]
    assert [row["message"] for row in lines] == ["address incomplete"]
    by_record = run(["log", "--record", "0WO2", "--json", "--since", "1h"], tmp_path)
    assert [json.loads(line)["message"] for line in by_record.stdout.splitlines()] == ["job scheduled"]
    bad = run(["log", "--since", "yesterday"], tmp_path)
    assert bad.returncode == 2 and "use a number and a unit" in bad.stderr


@pytest.mark.parametrize("kind", ["job", "appointment", "offer", "estimate", "invoice"])
def test_machines_prints_tables_and_writes_diagrams(tmp_path: Path, kind: str) -> None:
    result = run(["machines", "--out", str(tmp_path / "d")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{kind} machine" in result.stdout
    assert "stateDiagram" in (tmp_path / "d" / f"{kind}.mmd").read_text()


def test_version_is_the_package_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = run(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout == f"dispatch-connector {version('dispatch-connector')}\n"


def _store_with(tmp_path: Path, *rows: object) -> str:
    from sync.store.db import make_engine, session_scope, upgrade

    url = f"sqlite:///{tmp_path}/dispatch_connector.db"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        session.add_all(rows)
    engine.dispose()
    return url


def test_retry_dead_requeues_dead_messages(tmp_path: Path) -> None:
    from sync.store.dbtypes import utcnow
    from sync.store.models import InboxMessage

    dead = InboxMessage(message_id="m-1", system="dispatch_connect", status="dead", received_at=utcnow())
    _store_with(tmp_path, dead)
    result = run(["retry", "--dead"], tmp_path)
    assert result.returncode == 0 and result.stdout == "requeued 1 dead message(s)\n"
    assert "new        1" in run(["inbox"], tmp_path).stdout


def _failed_writeback(crm_object: str, crm_id: str) -> object:
    from sync.store.dbtypes import utcnow
    from sync.store.models import WriteBack

    return WriteBack(
        crm_object=crm_object,
        crm_id=crm_id,
        fields={"Dispatch_Error__c": "x"},
        status="failed",
        attempts=8,
        created_at=utcnow(),
        last_error="INVALID_FIELD",
    )


def _writeback_states(url: str) -> dict[str, tuple[str, int]]:
    from sqlmodel import Session, select

    from sync.store.db import make_engine
    from sync.store.models import WriteBack

    engine = make_engine(url)
    with Session(engine) as session:
        states = {str(row.crm_id): (row.status, row.attempts) for row in session.exec(select(WriteBack))}
    engine.dispose()
    return states


def test_retry_writebacks_queues_failed_write_backs_again(tmp_path: Path) -> None:
    url = _store_with(tmp_path, _failed_writeback("WorkOrder", "0WO1"), _failed_writeback("Account", "001A"))
    result = run(["retry", "--writebacks"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "queued 2 failed write-back(s) again\n"
    assert _writeback_states(url) == {"0WO1": ("pending", 0), "001A": ("pending", 0)}


def test_retry_writebacks_of_one_object(tmp_path: Path) -> None:
    url = _store_with(tmp_path, _failed_writeback("WorkOrder", "0WO1"), _failed_writeback("Account", "001A"))
    result = run(["retry", "--writebacks", "--object", "Account"], tmp_path)
    assert result.returncode == 0 and result.stdout == "queued 1 failed write-back(s) again\n"
    assert _writeback_states(url) == {"0WO1": ("failed", 8), "001A": ("pending", 0)}
    alone = run(["retry", "--dead", "--object", "Account"], tmp_path)
    assert alone.returncode == 2 and alone.stderr == (
        "error: --object chooses which failed write-backs to retry: give it with --writebacks\n"
    )


def test_publish_dry_run_prints_the_payloads_as_json(tmp_path: Path) -> None:
    from connector.sandbox.salesforce.emulator import SalesforceEmulator

    fixture = Path(__file__).resolve().parents[2] / "connector/sandbox/fixtures/field_service_org.yaml"
    _store_with(tmp_path)
    with SalesforceEmulator(fixture) as sf:
        wo = sf.insert(
            "WorkOrder",
            {
                "Subject": "Fix",
                "Status": "New",
                "Street": "1 Main St",
                "City": "Salem",
                "State": "OR",
                "PostalCode": "97301",
                "Dispatch_Send__c": "2026-11-25T09:00:00Z",
            },
        )
        result = run(
            ["publish", "--dry-run"],
            tmp_path,
            SALESFORCE_INSTANCE_URL=sf.base_url,
            SALESFORCE_USERNAME="integration@fieldservice.example",
            SALESFORCE_PASSWORD="demo-password",
            SALESFORCE_SECURITY_TOKEN="demo-token",
            SALESFORCE_CA_BUNDLE=str(sf.ca_path),
            DISPATCH_PUBLIC_KEY="organization|1|x",
            DISPATCH_SECRET="ab" * 32,
        )
    assert result.returncode == 0, result.stderr
    payloads = json.loads(result.stdout)  # stdout is the payloads only; the summary is on stderr
    assert wo in json.dumps(payloads) and result.stderr.startswith("read 1, changed 1")

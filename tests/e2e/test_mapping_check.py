"""The mapping checked against the Salesforce emulator over real sockets: the gateway's describe, the clean
default mapping, the write-back typo named before anything runs, `mapping check` and the daemon's refusal."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.crm import CrmNotFound
from connector.mapping import DEFAULT_MAPPING, load_mapping
from sync.context import SyncContext
from sync.errors import EXIT_USAGE, MappingMismatch
from sync.service.daemon import Daemon
from sync.service.mapping_check import check_mapping, require_mapping_ok
from tests.e2e.conftest import PASSWORD, PUBLIC_KEY, SECRET, TOKEN, USERNAME, Harness

TYPO = "Dispatch_Status_Reasn__c"
DESCRIBE_KEYS = {
    "name",
    "type",
    "updateable",
    "createable",
    "nillable",
    "length",
    "referenceTo",
    "relationshipName",
}


@pytest.fixture
def typo_file(tmp_path: Path) -> Path:
    text = DEFAULT_MAPPING.read_text(encoding="utf-8")
    assert text.count("status_reason: Dispatch_Status_Reason__c") == 1  # the WorkOrder's
    path = tmp_path / "typo.yaml"
    path.write_text(text.replace("status_reason: Dispatch_Status_Reason__c", f"status_reason: {TYPO}"))
    return path


def with_mapping(ctx: SyncContext, path: Path) -> SyncContext:
    return dataclasses.replace(ctx, mapping=load_mapping(path))


def test_describe_lists_each_field_the_way_salesforce_does(harness: Harness) -> None:
    answer = harness.ctx.crm.describe("WorkOrder")
    fields = {f["name"]: f for f in answer["fields"]}
    assert answer["name"] == "WorkOrder" and all(set(f) >= DESCRIBE_KEYS for f in fields.values())
    contact = fields["ContactId"]
    assert (contact["type"], contact["referenceTo"], contact["relationshipName"]) == (
        "reference",
        ["Contact"],
        "Contact",
    )
    assert fields["Dispatch_Service_Provider__c"]["relationshipName"] == "Dispatch_Service_Provider__r"
    assert (fields["Id"]["createable"], fields["Id"]["updateable"], fields["Id"]["nillable"]) == (
        False,
        False,
        False,
    )
    reason = fields["Dispatch_Status_Reason__c"]
    assert (reason["type"], reason["length"], reason["updateable"], reason["createable"]) == (
        "string",
        255,
        True,
        True,
    )
    assert fields["Dispatch_Pending__c"]["nillable"] is False  # a checkbox is never null
    assert fields["Dispatch_Survey_Rating__c"]["length"] == 0


def test_describe_is_asked_once_per_gateway(harness: Harness) -> None:
    before = harness.sf.counts.get("describe", 0)
    first = harness.ctx.crm.describe("WorkOrder")
    assert harness.ctx.crm.describe("workorder") is first
    assert harness.sf.counts["describe"] == before + 1


def test_describe_of_an_object_the_org_lacks_is_not_found(harness: Harness) -> None:
    with pytest.raises(CrmNotFound):
        harness.ctx.crm.describe("Work_Order__c")


def test_the_default_mapping_matches_the_fixture_org(harness: Harness) -> None:
    assert check_mapping(harness.ctx) == []
    require_mapping_ok(harness.ctx)


def test_the_check_is_asked_once_per_context(harness: Harness) -> None:
    check_mapping(harness.ctx)
    asked = harness.sf.counts["describe"]
    # WorkOrder, Contact, Account, Dispatch_Note__c, Dispatch_Log__c, Task (inbox messages); the field
    # records' objects: Dispatch_Billing_Document__c, Dispatch_Payment__c, Dispatch_Form__c, Event
    assert asked == 10
    check_mapping(harness.ctx)
    require_mapping_ok(harness.ctx)
    assert harness.sf.counts["describe"] == asked


def test_the_write_back_typo_is_one_problem_naming_object_field_and_key(
    harness: Harness, typo_file: Path
) -> None:
    ctx = with_mapping(harness.ctx, typo_file)
    [problem] = check_mapping(ctx)
    assert (problem.object, problem.field, problem.key) == (
        "WorkOrder",
        TYPO,
        "objects.WorkOrder.write_back.status_reason",
    )
    with pytest.raises(MappingMismatch) as raised:
        require_mapping_ok(ctx)
    assert raised.value.exit_code == EXIT_USAGE
    lines = str(raised.value).splitlines()
    assert lines[0] == f"mapping file {typo_file} does not match the Salesforce org (1 problem):"
    assert lines[1] == f"  {problem}"
    assert "fix the mapping file or the org" in lines[2]


def test_the_daemon_refuses_to_run_on_a_bad_mapping_before_anything_runs(
    harness: Harness, typo_file: Path
) -> None:
    harness.work_order()
    ctx = with_mapping(harness.ctx, typo_file)
    daemon = Daemon(ctx)
    with pytest.raises(MappingMismatch, match=TYPO):
        daemon.run_once()
    with pytest.raises(MappingMismatch, match=TYPO):
        daemon.start()
    assert not daemon.scheduler.running
    assert set(harness.sf.counts) == {"login", "describe"} and not harness.dispatch.records("job")


def test_a_poller_does_not_need_the_mapping_to_match(harness: Harness, typo_file: Path) -> None:
    daemon = Daemon(with_mapping(harness.ctx, typo_file), role="poller")
    daemon.run_once()
    assert harness.sf.counts.get("describe", 0) == 0
    assert daemon.health.snapshot()["poll"].last_result == "ok"


def _cli(
    harness: Harness, tmp_path: Path, *args: str, mapping: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_"))}
    env.pop("MAPPING_FILE", None)
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
        DASHBOARD_PORT="0",
    )
    if mapping is not None:
        env["MAPPING_FILE"] = str(mapping)
    return subprocess.run(
        [sys.executable, "-m", "sync.service.cli", *args],
        env=env,
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=60,
    )


def test_mapping_check_cli_exits_0_on_the_default_mapping(harness: Harness, tmp_path: Path) -> None:
    result = _cli(harness, tmp_path, "mapping", "check")
    assert result.returncode == 0, result.stderr
    assert "matches the Salesforce org" in result.stdout and "Dispatch_Log__c" in result.stdout


def test_mapping_check_cli_exits_2_naming_the_problem(
    harness: Harness, tmp_path: Path, typo_file: Path
) -> None:
    result = _cli(harness, tmp_path, "mapping", "check", mapping=typo_file)
    assert result.returncode == 2
    assert result.stderr.startswith("error: mapping file ")
    assert f"objects.WorkOrder.write_back.status_reason: WorkOrder.{TYPO}: no field" in result.stderr
    assert "Traceback" not in result.stderr


def test_mapping_check_cli_json(harness: Harness, tmp_path: Path, typo_file: Path) -> None:
    result = _cli(harness, tmp_path, "mapping", "check", "--json", mapping=typo_file)
    assert result.returncode == 2
    body = json.loads(result.stdout)
    assert body["ok"] is False and body["mapping_file"] == str(typo_file)
    assert body["problems"] == [
        {
            "object": "WorkOrder",
            "field": TYPO,
            "key": "objects.WorkOrder.write_back.status_reason",
            "message": f"no field {TYPO!r} on WorkOrder; did you mean 'Dispatch_Status_Reason__c'?",
        }
    ]
    clean = json.loads(_cli(harness, tmp_path, "mapping", "check", "--json").stdout)
    assert clean["ok"] is True and clean["problems"] == []


def test_run_once_refuses_a_bad_mapping_with_exit_2(
    harness: Harness, tmp_path: Path, typo_file: Path
) -> None:
    wo = harness.work_order()
    result = _cli(harness, tmp_path, "run", "--once", mapping=typo_file)
    assert result.returncode == 2, result.stderr
    assert f"objects.WorkOrder.write_back.status_reason: WorkOrder.{TYPO}" in result.stderr
    assert not harness.dispatch.records("job") and harness.wo(wo)["Dispatch_Last_Synced__c"] is None

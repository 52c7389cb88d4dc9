"""`match orgs|technicians` and `availability slots|schedule` as a person runs them: real subprocesses of the
CLI against the Salesforce and Dispatch v3 emulators over sockets, settings from the environment and a config
file, as in tests/sync/test_cli_errors.py.

The org is the bundled fixture plus the three WorkOrder fields a look-up can use and the bundled org lacks
(a trade, an estimated duration, a time zone); the mapping is the bundled two-back-end one with its
`lookups:` block naming them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from connector.sandbox.dispatch_v3 import DispatchV3Emulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.store.db import make_engine, upgrade
from sync.store.models import SyncLog
from tests.connector.dispatch_v3_lookup_seed import END, START, TECH_A, TECH_B, seed_playbook_schedule
from tests.e2e.conftest import FIXTURE, PASSWORD, TOKEN, USERNAME

MAPPING = Path(__file__).parents[2] / "connector" / "mappings" / "salesforce_dispatch_v3.yaml"
CLIENT_ID, CLIENT_SECRET = "lookup-cli", "lookup-cli-secret"  # throwaway test values
EXTRA_FIELDS = {"Trade__c": "string", "Estimated_Duration__c": "double", "Time_Zone__c": "string"}


@dataclass
class Rig:
    sf: SalesforceEmulator
    v3: DispatchV3Emulator
    tmp: Path
    env: dict[str, str]
    database_url: str

    def run(self, *args: str, config: str = "backends: {dispatch_v3: {}}\n") -> Result:
        config_file = self.tmp / "config.yaml"
        config_file.write_text(config)
        done = subprocess.run(
            [sys.executable, "-m", "sync.service.cli", "--config", str(config_file), *args],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def account(self, name: str) -> str:
        return self.sf.insert("Account", {"Name": name, "Phone": "+15555550111"})

    def work_order(self, **values: Any) -> str:
        row = {
            "Subject": "Replace breaker",
            "Status": "New",
            "Street": "1 Main St",
            "City": "Springfield",
            "State": "IL",
            "PostalCode": "62701",
            **values,
        }
        return self.sf.insert("WorkOrder", row)

    def log_rows(self) -> list[SyncLog]:
        engine = make_engine(self.database_url)
        with Session(engine) as session:
            rows = list(session.exec(select(SyncLog)).all())
        engine.dispose()
        return rows


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def line(self) -> str:
        """The one line an expected error prints (asserts there is exactly one and no traceback)."""
        lines = self.stderr.splitlines()
        assert "Traceback" not in self.stderr and len(lines) == 1, self.stderr
        return lines[0]

    def json(self) -> dict[str, Any]:
        assert self.code == 0, self.stderr
        loaded: dict[str, Any] = json.loads(self.stdout)
        return loaded


def org_with_lookup_fields() -> dict[str, Any]:
    org: dict[str, Any] = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))
    org["objects"]["WorkOrder"]["fields"].update(EXTRA_FIELDS)
    return org


def mapping_with_lookup_fields(tmp: Path) -> Path:
    mapping = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    lookups = mapping["objects"]["WorkOrder"]["lookups"]
    lookups.update(trades="Trade__c", duration_minutes="Estimated_Duration__c", timezone="Time_Zone__c")
    path = tmp / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    database_url = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    with (
        SalesforceEmulator(org_with_lookup_fields()) as sf,
        DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET) as v3,
    ):
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_URL", "MAPPING_FILE"))
        }
        env = {
            **clean,
            "COLUMNS": "200",
            "DATABASE_URL": database_url,
            "MAPPING_FILE": str(mapping_with_lookup_fields(tmp_path)),
            "SALESFORCE_INSTANCE_URL": sf.base_url,
            "SALESFORCE_USERNAME": USERNAME,
            "SALESFORCE_PASSWORD": PASSWORD,
            "SALESFORCE_SECURITY_TOKEN": TOKEN,
            "SALESFORCE_CA_BUNDLE": str(sf.ca_path),
            "DISPATCH_V3_BASE_URL": v3.base_url,
            "DISPATCH_V3_CLIENT_ID": CLIENT_ID,
            "DISPATCH_V3_CLIENT_SECRET": CLIENT_SECRET,
        }
        yield Rig(sf, v3, tmp_path, env, database_url)


# -- match orgs -----------------------------------------------------------------------------------


def test_match_orgs_by_postal_code_prints_a_table_with_whole_ids(rig: Rig) -> None:
    provider = rig.v3.add_provider(
        ["org_external_id_that_is_quite_long_0001"], "Mile High", postal_codes=["80207"]
    )
    result = rig.run("match", "orgs", "--postal-code", "80207")
    assert result.code == 0, result.stderr
    assert "Organizations for postal code 80207" in result.stdout
    assert "org_external_id_that_is_quite_long_0001" in result.stdout and str(provider["id"]) in result.stdout


def test_match_orgs_json_is_one_document(rig: Rig) -> None:
    provider = rig.v3.add_provider(["acct-1"], "Mile High", postal_codes=["80207"], trades=["hvac"])
    rig.v3.add_provider(["acct-2"], "Pipes", postal_codes=["80207"], trades=["plumbing"])
    document = rig.run("match", "orgs", "--postal-code", "80207", "--trade", "hvac", "--json").json()
    assert document["query"] == {"postal_code": "80207", "trades": ["hvac"]}
    assert document["results"] == [
        {"organization_id": provider["id"], "external_ids": ["acct-1"], "ranking_score": None}
    ]
    assert document["assigned"] is None and document["problems"] == []


def test_assign_writes_the_best_matchs_account_and_a_log_row(rig: Rig) -> None:
    account = rig.account("Spark Electric")
    rig.v3.add_provider([account], "Spark Electric", postal_codes=["62701"], trades=["electrical"])
    rig.v3.add_provider([rig.account("Drain Co")], "Drain Co", postal_codes=["62701"], trades=["plumbing"])
    wo = rig.work_order(Trade__c="Electrical")
    document = rig.run("match", "orgs", "--work-order", wo, "--assign", "--json").json()
    assert document["query"]["trades"] == ["Electrical"]  # read from the work order
    assert document["assigned"]["account_id"] == account and document["assigned"]["changed"] is True
    assert rig.sf.get("WorkOrder", wo)["Dispatch_Service_Provider__c"] == account
    rows = [r for r in rig.log_rows() if r.crm_record_id == wo]
    assert len(rows) == 1 and rows[0].level == "info" and rows[0].external_id == account
    assert rows[0].message.startswith(
        f"Dispatch_Service_Provider__c of WorkOrder {wo} set to Account {account}"
    )
    again = rig.run("match", "orgs", "--work-order", wo, "--assign")
    assert again.code == 0 and f"already: WorkOrder {wo}" in again.stdout
    assert len([r for r in rig.log_rows() if r.crm_record_id == wo]) == 1


def test_assign_refuses_a_tie_with_exit_3(rig: Rig) -> None:
    first = rig.v3.add_provider([rig.account("One")], postal_codes=["62701"])
    second = rig.v3.add_provider([rig.account("Two")], postal_codes=["62701"])
    wo = rig.work_order()
    result = rig.run("match", "orgs", "--work-order", wo, "--assign")
    assert result.code == 3
    assert result.line == (
        f"attention: 2 organizations tie for the best match of postal code 62701 (organization ids "
        f"{first['id']}, {second['id']}): nothing assigned to WorkOrder {wo}; set "
        "Dispatch_Service_Provider__c by hand or narrow the search (--trade)"
    )
    assert rig.sf.get("WorkOrder", wo)["Dispatch_Service_Provider__c"] is None and rig.log_rows() == []


def test_assign_refuses_when_nothing_matches_or_the_match_is_no_account(rig: Rig) -> None:
    wo = rig.work_order()
    nothing = rig.run("match", "orgs", "--work-order", wo, "--assign")
    assert nothing.code == 3
    assert (
        nothing.line
        == f"attention: no organization matches postal code 62701: nothing assigned to WorkOrder {wo}"
    )
    rig.v3.add_provider(["not-a-salesforce-id"], postal_codes=["62701"], id=200383)
    stranger = rig.run("match", "orgs", "--work-order", wo, "--assign")
    assert (
        stranger.code == 3
        and "organization 200383 (external ids not-a-salesforce-id), is no Account in" in stranger.line
    )


def test_a_work_order_with_a_malformed_postal_code_needs_attention(rig: Rig) -> None:
    wo = rig.work_order(PostalCode="6270")
    result = rig.run("match", "orgs", "--work-order", wo)
    assert result.code == 3 and result.line.startswith(
        f"attention: WorkOrder {wo}: postal code '6270': must be"
    )
    assert rig.v3.counts.get("search.oms") is None


def test_a_malformed_postal_code_option_is_a_usage_error(rig: Rig) -> None:
    result = rig.run("match", "orgs", "--postal-code", "ABCDE")
    assert result.code == 2 and "Invalid value for '--postal-code': postal code 'ABCDE'" in result.stderr
    assert rig.v3.counts == {}


def test_no_dispatch_v3_back_end_exits_2_saying_how_to_configure_it(rig: Rig) -> None:
    result = rig.run("match", "orgs", "--postal-code", "80207", config="backends: {dispatch_connect: {}}\n")
    assert result.code == 2
    assert result.line.startswith("error: no Dispatch v3 back end is configured")
    assert "`dispatch_v3: {}` under `backends:`" in result.line and "Configuring back ends" in result.line


# -- match technicians and availability -----------------------------------------------------------


def test_match_technicians_reads_place_trade_duration_and_zone_from_the_work_order(rig: Rig) -> None:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    tech = rig.v3.add_technician(
        "tech-1", "Ada Volt", postal_codes=["62701"], trades=["electrical"], timezone="America/Chicago",
        work_days=every_day, hours=["08:00", "12:00"], miles_from_start=3.5,
    )  # fmt: skip
    wo = rig.work_order(
        Trade__c="Electrical;Wiring", Estimated_Duration__c=90, Time_Zone__c="America/Chicago"
    )
    args = ("--work-order", wo, "--start", "2026-12-01", "--end", "2026-12-01", "--json")
    rig.v3.book_technician("tech-1", "2026-12-01T09:00:00-06:00", "2026-12-01T10:00:00-06:00")
    assert rig.run("match", "technicians", *args).json()["results"] == []  # no wiring trade
    rig.sf.update("WorkOrder", wo, {"Trade__c": "Electrical"})
    document = rig.run("match", "technicians", *args).json()
    assert document["query"] == {
        "postal_code": "62701",
        "address": "1 Main St, Springfield, IL 62701",
        "appointment_duration_minutes": 90,
        "availability_start_time": "2026-12-01T00:00:00-06:00",
        "availability_end_time": "2026-12-02T00:00:00-06:00",
        "trades": ["Electrical"],
    }
    assert document["timezone"] == {"name": "America/Chicago", "source": f"WorkOrder {wo} Time_Zone__c"}
    (match,) = document["results"]
    assert (match["user_id"], match["full_name"]) == (tech["id"], "Ada Volt")
    assert match["slots"] == [  # 08:00-09:00 is too short for 90 minutes
        {
            "start": {"utc": "2026-12-01T16:00:00Z", "local": "2026-12-01T10:00:00-06:00"},
            "end": {"utc": "2026-12-01T18:00:00Z", "local": "2026-12-01T12:00:00-06:00"},
            "ranking_score": 0.0,
            "miles_added": 7.0,
        }
    ]


def test_availability_slots_shows_the_playbook_sample_in_both_zones(rig: Rig) -> None:
    seed_playbook_schedule(rig.v3)
    args = ("--user", TECH_A, "--user", TECH_B, "--start", START, "--end", END, "--duration", "60")
    table = rig.run("availability", "slots", *args, "--tz", "America/New_York")
    assert table.code == 0, table.stderr
    assert "2022-10-24 13:30 - 17:00" in table.stdout  # 17:30Z-21:00Z in New York
    assert "2022-10-24 17:30Z - 21:00Z" in table.stdout and TECH_A in table.stdout
    document = rig.run("availability", "slots", *args, "--json").json()
    assert document["timezone"] == {"name": "UTC", "source": "UTC (no time zone known)"}
    assert [(r["user_id"], r["start"]["utc"], r["end"]["utc"]) for r in document["results"]] == [
        (3231, "2022-10-24T12:00:00Z", "2022-10-24T13:00:00Z"),
        (3231, "2022-10-24T17:30:00Z", "2022-10-24T21:00:00Z"),
        (5298, "2022-10-24T12:00:00Z", "2022-10-24T16:00:00Z"),
        (5298, "2022-10-24T20:00:00Z", "2022-10-24T21:00:00Z"),
    ]


def test_availability_schedule_for_a_work_order_asks_the_matching_technicians(rig: Rig) -> None:
    seed_playbook_schedule(rig.v3, postal_code="62701")
    wo = rig.work_order()
    result = rig.run("availability", "schedule", "--work-order", wo, "--start", START, "--end", END)
    assert result.code == 0, result.stderr
    assert "day (America/Chicago)" in result.stdout  # Illinois' zone: the work order names none
    assert "2022-10-24 11:00 - 15:00 (job 700040, Ron Sher)" in result.stdout
    assert rig.v3.counts["search.contractors"] == 1 and rig.v3.counts["availability.schedule"] == 1


def test_an_end_before_the_start_is_a_usage_error(rig: Rig) -> None:
    result = rig.run("availability", "schedule", "--user", TECH_A, "--start", END, "--end", START)
    assert result.code == 2
    assert result.line == "error: --end 2022-10-24T04:00:00Z is not after --start 2022-10-25T03:59:59Z"


def test_an_unknown_work_order_needs_attention(rig: Rig) -> None:
    result = rig.run("match", "orgs", "--work-order", "0WO000000000000AAA")
    assert result.code == 3 and result.line == "attention: no WorkOrder 0WO000000000000AAA in Salesforce"


def test_assign_without_a_work_order_is_a_usage_error(rig: Rig) -> None:
    result = rig.run("match", "orgs", "--postal-code", "80207", "--assign")
    assert result.code == 2
    assert result.line == "error: --assign needs --work-order ID: it sets that record's provider field"

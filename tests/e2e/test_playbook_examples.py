"""The shipped playbook examples mapping: it loads, it matches the playbook org, and every "To Dispatch"
use case named in issue 19 has its block (the table below: use case -> CRM object, record type, values)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connector.mapping import load_mapping
from sync.service.mapping_check import check_mapping
from tests.e2e.conftest import PASSWORD, SECRET, TOKEN, USERNAME
from tests.e2e.test_playbook_harness import ENTERPRISE_KEY, PLAYBOOK_MAPPING, Playbook, playbook

__all__ = ["playbook"]  # the fixture, imported for pytest

# Use case (the playbook's section name, as the `# Use case:` comment heads its record) -> where it is.
USE_CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "Appointments > Appointment Type": ("Dispatch_Appointment_Type__c", "appointment_type", {}),
    "Auto Assign > Auto Assign Technician": ("ServiceAppointment", "auto_assign_technician", {}),
    "Auto Assign > Auto Assign Org": ("WorkOrder", "auto_assign_org", {}),
    "Billing > Billing Items (Product Catalog)": ("Product2", "billing_item", {}),
    "Billing > Billing Documents": ("WorkOrder", "billing_document", {}),
    "Calendar Events": ("Event", "calendar_event", {}),
    "Jobs > Job Notes": ("Job_Note__c", "attachment", {}),
    "Jobs > Job Photos": ("ContentVersion", "attachment", {}),
    "Jobs > Custom Form": ("Dispatch_Custom_Form__c", "custom_form", {}),
    "Jobs > Job Trades": ("WorkOrder", "job_trade", {}),
    "Jobs > Suggested Times": ("WorkOrder", "suggested_times", {}),
    "Jobs > Job Attribution/Sources": ("Dispatch_Job_Source__c", "job_attribution", {}),
    "Organizations > Configuration Settings": ("Account", "config", {}),
    "Organizations > Service Areas > Service Area (Tracts)": (
        "Account",
        "service_area",
        {"service_area_type": "tract"},
    ),
    "Organizations > Service Areas > Service Area (Postal Codes)": (
        "Account",
        "service_area",
        {"service_area_type": "zcta5"},
    ),
    "Organizations > Service Areas > Service Area (Canadian Postal Codes)": (
        "Account",
        "service_area",
        {"service_area_type": "fsaldu"},
    ),
    "Organizations > Org Trades": ("Account", "trade_account_org", {}),
    "Users > Service Areas > Service Area (Tracts)": (
        "ServiceResource",
        "service_area",
        {"service_area_type": "tract"},
    ),
    "Users > Service Areas > Service Area (Postal Codes)": (
        "ServiceResource",
        "service_area",
        {"service_area_type": "zcta5"},
    ),
    "Users > Service Areas > Service Area (Canadian Postal Codes)": (
        "ServiceResource",
        "service_area",
        {"service_area_type": "fsaldu"},
    ),
    "Users > User Photos": ("ServiceResource", "profile_picture", {}),
    "Users > User Tags": ("ServiceResource", "user_tag", {}),
    "Users > User Trades": ("ServiceResource", "trade_account_user", {}),
    "Quick Starts > DNM / FSM > To Dispatch > Organizations": ("Account", "organization", {}),
    "Quick Starts > DNM > To Dispatch > Jobs (organization)": ("WorkOrder", "organization", {}),
    "Quick Starts > DNM > To Dispatch > Jobs (customer)": ("WorkOrder", "customer", {}),
    "Quick Starts > DNM / FSM > To Dispatch > Jobs (job)": ("WorkOrder", "job", {}),
    "Quick Starts > FSM > To Dispatch > Users": ("ServiceResource", "user", {}),
    "Quick Starts > FSM > To Dispatch > Users (from User)": ("User", "user", {}),
    "Quick Starts > FSM > To Dispatch > Users (from Contact)": ("Contact", "user", {}),
    "Quick Starts > DNM > Match > To Dispatch > Jobs (offer)": ("Case", "offer", {}),
    "Quick Starts > DNM > Match > To Dispatch > Jobs (auto_assign_org)": ("Case", "auto_assign_org", {}),
    "Quick Starts > FSM > To Dispatch > Jobs (appointment)": ("ServiceAppointment", "appointment", {}),
    "Quick Starts > Gateway > To Dispatch > Job": ("Gateway_Job__c", "job", {}),
    "Quick Starts > Gateway > To Dispatch > Appointment": ("Gateway_Job__c", "appointment", {}),
    "Quick Starts > Gateway > To Dispatch > Notes": ("Gateway_Note__c", "attachment", {"description": None}),
    "Quick Starts > Gateway > To Dispatch > Attachments": ("Gateway_Note__c", "attachment", {"file": None}),
}


def _constants(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: spec.const for key, spec in fields.items()}


def test_the_shipped_file_loads() -> None:
    mapping = load_mapping(PLAYBOOK_MAPPING)
    assert {name for name, _, _ in USE_CASES.values()} == set(mapping.objects)


@pytest.mark.parametrize("use_case", sorted(USE_CASES))
def test_every_use_case_has_its_block(use_case: str) -> None:
    object_name, record_type, values = USE_CASES[use_case]
    records = load_mapping(PLAYBOOK_MAPPING).object(object_name).records
    candidates = [r for r in records if r.type == record_type]
    matching = [
        r
        for r in candidates
        if all(
            key in r.fields and (want is None or _constants(r.fields)[key] == want)
            for key, want in values.items()
        )
    ]
    assert len(matching) == 1, f"{use_case}: {len(matching)} {record_type} records in {object_name}"
    headings = re.findall(r"# Use case: (.+?)\.(?:\s|$)", PLAYBOOK_MAPPING.read_text(encoding="utf-8"))
    assert any(use_case in heading for heading in headings), f"no '# Use case: {use_case}' comment"


def test_the_match_offer_sends_the_samples_ui_options_beside_the_record() -> None:
    case = load_mapping(PLAYBOOK_MAPPING).object("Case")
    offer = next(r for r in case.records if r.type == "offer")
    assert offer.version == "v2" and case.primary_record() is offer  # its ack confirms the Case
    assert {path.split(".")[0] for path in offer.envelope} == {"ui_options"}


def test_the_file_matches_the_playbook_org(playbook: Playbook) -> None:
    assert check_mapping(playbook.ctx) == []


def test_mapping_check_command_accepts_it(playbook: Playbook, tmp_path: Path) -> None:
    """`MAPPING_FILE=... dispatch-connector mapping check`, the way an admin checks a copied block."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_"))}
    env.update(
        MAPPING_FILE=str(PLAYBOOK_MAPPING),
        DATABASE_URL=f"sqlite:///{tmp_path}/cli.db",
        DISPATCH_BASE_URL=playbook.dispatch.base_url,
        DISPATCH_PUBLIC_KEY=ENTERPRISE_KEY,
        DISPATCH_SECRET=SECRET,
        SALESFORCE_INSTANCE_URL=playbook.sf.base_url,
        SALESFORCE_USERNAME=USERNAME,
        SALESFORCE_PASSWORD=PASSWORD,
        SALESFORCE_SECURITY_TOKEN=TOKEN,
        SALESFORCE_CA_BUNDLE=str(playbook.sf.ca_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "sync.service.cli", "mapping", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matches the Salesforce org" in done.stdout and "Gateway_Note__c" in done.stdout

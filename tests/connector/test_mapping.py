"""The mapping file: the bundled example builds the playbook's records; a broken file is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connector.mapping import (
    DEFAULT_MAPPING,
    MappingFileError,
    RecordBuildError,
    build_records,
    load_mapping,
    relevant_hash,
)

ROW = {
    "Id": "0WO1",
    "WorkOrderNumber": "00001",
    "Subject": "Fix",
    "Status": "New",
    "Street": "1 Main",
    "City": "Boston",
    "State": "MA",
    "PostalCode": "02101",
    "Dispatch_Send__c": "2026-11-25T10:00:00Z",
    "Dispatch_Service_Provider__c": "001P",
    "Dispatch_Service_Provider__r": {"Name": "Acme", "Phone": "555"},
    "ContactId": "003C",
    "Contact": {"FirstName": "Jane", "LastName": "Doe", "Email": "j@x.io", "Phone": None},
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def default_data() -> dict:
    return yaml.safe_load(DEFAULT_MAPPING.read_text())


def test_default_mapping_builds_organization_customer_job_in_order() -> None:
    records = build_records(load_mapping().object("WorkOrder"), ROW)
    assert [r["record_type"] for r in records] == ["organization", "customer", "job"]
    customer, job = records[1]["record"], records[2]["record"]
    assert (
        customer["external_id"] == "001P-003C"
    )  # prefixed with the organization's id, as the playbook advises
    assert job["external_organization_id"] == "001P" and job["external_customer_id"] == "001P-003C"
    assert job["status"] == "offered" and job["address"]["city"] == "Boston"
    assert "phone_number" not in customer  # empty values are left out


def test_records_whose_condition_is_empty_are_skipped() -> None:
    row = {**ROW, "ContactId": None, "Contact": None}
    assert [r["record_type"] for r in build_records(load_mapping().object("WorkOrder"), row)] == [
        "organization",
        "job",
    ]


def test_hash_changes_only_with_relevant_fields() -> None:
    spec = load_mapping().object("WorkOrder")
    assert relevant_hash(spec, ROW) == relevant_hash(spec, {**ROW, "Priority": "High"})
    assert relevant_hash(spec, ROW) != relevant_hash(spec, {**ROW, "Subject": "Other"})


def test_unknown_status_without_default_is_a_record_error(tmp_path: Path) -> None:
    data = default_data()
    del data["objects"]["WorkOrder"]["records"][2]["fields"]["status"]["default"]
    spec = load_mapping(write(tmp_path, data)).object("WorkOrder")
    with pytest.raises(RecordBuildError, match="'Weird' of Status is not in the value map"):
        build_records(spec, {**ROW, "Status": "Weird"})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["objects"]["WorkOrder"]["select"].remove("Subject"),
            "'Subject' is used but not in select",
        ),
        (
            lambda d: d["objects"]["WorkOrder"].update(relevant=["Subject", "Dispatch_Error__c"]),
            "also written back",
        ),
        (lambda d: d["objects"]["WorkOrder"]["flag"].update(when="sometimes"), "objects.WorkOrder.flag.when"),
        (lambda d: d["objects"]["WorkOrder"]["records"][0].update(type="spaceship"), "records.0.type"),
        (lambda d: d["objects"]["WorkOrder"]["records"].reverse(), "not an earlier record"),
        (lambda d: d["objects"]["Account"].update(colour="blue"), "objects.Account.colour"),
    ],
)
def test_broken_mapping_names_file_key_and_problem(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = default_data()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(MappingFileError) as info:
        load_mapping(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_unreadable_or_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="cannot be read"):
        load_mapping(tmp_path / "missing.yaml")
    with pytest.raises(MappingFileError, match="not valid YAML"):
        load_mapping(write(tmp_path, "objects: [unclosed"))


def test_unknown_object_is_named() -> None:
    with pytest.raises(MappingFileError, match="no mapping for CRM object 'Case'"):
        load_mapping().object("Case")


def test_numbered_paths_build_lists_and_drop_elements_no_value_fills() -> None:
    """`contacts.0.first_name` builds a list; an element only constants would fill is left out."""
    from connector.mapping import DEFAULT_MAPPING

    mapping = load_mapping(DEFAULT_MAPPING.parent / "salesforce_dispatch_v3.yaml")
    spec = mapping.object("WorkOrder")
    row = {
        **ROW,
        "Dispatch_Backend__c": "Dispatch v3",
        "AccountId": None,
        "Account": None,
        "Contact": {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com", "Phone": None},
    }
    (record,) = build_records(spec, row, "dispatch_v3")
    assert record["record_type"] == "work_order"
    (contact,) = record["record"]["contacts"]  # no account: the office contact is left out
    assert contact["contact_methods"] == [
        {"method": "email", "type": "work", "preferred": True, "value": "jane@example.com"}
    ]  # no phone number: the phone method is left out
    assert contact["external_ids"] == [ROW["ContactId"]]
    assert [r["record_type"] for r in build_records(spec, row)] == ["organization", "customer", "job"]


def test_backend_records_are_checked_against_their_back_end() -> None:
    from connector.mapping import DEFAULT_MAPPING

    mapping = load_mapping(DEFAULT_MAPPING.parent / "salesforce_dispatch_v3.yaml")
    with pytest.raises(MappingFileError, match=r"objects\.WorkOrder\.backend_records\.dispatch_v3\.0\.type"):
        mapping.check_backends(
            {"dispatch_connect": ("organization", "customer", "job"), "dispatch_v3": ("job",)},
            "dispatch_connect",
        )

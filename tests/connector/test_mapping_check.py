"""connector.mapping_check, pure: the bundled mappings against the emulator fixture's schema (describe answers
built by the emulator's own code, no sockets), one case per rule."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.mapping import DEFAULT_MAPPING, Mapping_, MappingConfig
from connector.mapping_check import Problem, check_mapping
from connector.sandbox.salesforce.rest import SalesforceRestApp
from connector.sandbox.salesforce.store import SalesforceStore, load_fixture

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
V3_MAPPING = ROOT / "connector" / "mappings" / "salesforce_dispatch_v3.yaml"
TASK_FIELDS = {
    "Subject": "string",
    "Description": "textarea",
    "Status": "picklist",
    "WhatId": {"type": "reference", "to": "WorkOrder", "relationship_name": "What"},
    "WhoId": {"type": "reference", "to": "Contact", "relationship_name": "Who"},
}
INBOX = {
    "object": "Task",
    "fields": {"Subject": "subject", "Description": "message_content"},
    "constants": {"Status": "Completed"},
    "record_field": "WhatId",
    "contact_field": "WhoId",
    "record_contact_field": "ContactId",
}


def org(
    patches: Mapping[str, Mapping[str, Any]] | None = None, *, task: bool | None = None
) -> Callable[[str], dict[str, Any] | None]:
    """A describe over the fixture org, as the emulator answers it; `patches` override one field's
    describe keys, by "Object.Field"; `task` gives it this test's Task object (WhatId, WhoId)."""
    store = SalesforceStore()
    load_fixture(store, FIXTURE)
    # the fixture org has a Task object; `task=False` is an org without one, `task=True` this test's Task
    if task is not None:
        store.objects.pop("task", None)
    if task:
        store.define_object("Task", TASK_FIELDS)
    patches = patches or {}

    def describe(name: str) -> dict[str, Any] | None:
        odef = store.object(name, required=False)
        if odef is None:
            return None
        fields = []
        for fdef in odef.fields.values():
            wire = fdef.describe()
            wire.update(patches.get(f"{odef.name}.{fdef.name}", {}))
            fields.append(wire)
        return {**SalesforceRestApp._describe_summary(odef), "fields": fields}

    return describe


def mapping(
    edit: Callable[[dict[str, Any]], None] | None = None, source: Path = DEFAULT_MAPPING
) -> MappingConfig:
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw)
    if edit is not None:
        edit(raw)
    return MappingConfig(Mapping_.model_validate(raw), source)


def work_order(raw: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = raw["objects"]["WorkOrder"]
    return obj


def keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


@pytest.mark.parametrize("source", [DEFAULT_MAPPING, V3_MAPPING], ids=["default", "dispatch_v3"])
def test_the_bundled_mappings_match_the_fixture_org(source: Path) -> None:
    assert check_mapping(mapping(source=source), org()) == []


def test_the_status_reason_typo_is_one_problem_naming_object_field_and_key() -> None:
    def typo(raw: dict[str, Any]) -> None:
        work_order(raw)["write_back"]["status_reason"] = "Dispatch_Status_Reasn__c"

    problems = check_mapping(mapping(typo), org())
    assert problems == [
        Problem(
            "WorkOrder",
            "Dispatch_Status_Reasn__c",
            "objects.WorkOrder.write_back.status_reason",
            "no field 'Dispatch_Status_Reasn__c' on WorkOrder; did you mean 'Dispatch_Status_Reason__c'?",
        )
    ]
    assert str(problems[0]).startswith(
        "objects.WorkOrder.write_back.status_reason: WorkOrder.Dispatch_Status_Reasn__c: no field"
    )


def test_an_object_the_org_lacks_is_one_problem() -> None:
    def rename(raw: dict[str, Any]) -> None:
        raw["objects"]["Work_Order__c"] = raw["objects"].pop("WorkOrder")

    problems = check_mapping(mapping(rename), org())
    assert problems == [
        Problem("Work_Order__c", None, "objects.Work_Order__c", "the org has no object 'Work_Order__c'")
    ]


def test_a_selected_field_the_object_lacks() -> None:
    def extra(raw: dict[str, Any]) -> None:
        work_order(raw)["select"].append("Priorty")

    [problem] = check_mapping(mapping(extra), org())
    assert (problem.object, problem.field, problem.key) == (
        "WorkOrder",
        "Priorty",
        "objects.WorkOrder.select",
    )
    assert "did you mean 'Priority'?" in problem.message


def test_a_parent_field_is_looked_up_on_the_related_object() -> None:
    def extra(raw: dict[str, Any]) -> None:
        work_order(raw)["select"].append("Contact.Emial")

    [problem] = check_mapping(mapping(extra), org())
    assert problem.field == "Contact.Emial"
    assert problem.message == "no field 'Emial' on Contact; did you mean 'Email'?"


def test_an_unknown_relationship() -> None:
    def extra(raw: dict[str, Any]) -> None:
        work_order(raw)["select"].append("Contac.Email")

    [problem] = check_mapping(mapping(extra), org())
    assert problem.message == "no relationship 'Contac' on WorkOrder; did you mean 'Contact'?"


def test_a_path_through_a_lookup_field_name_is_told_the_relationship_name() -> None:
    def extra(raw: dict[str, Any]) -> None:
        work_order(raw)["select"].append("Dispatch_Service_Provider__c.Name")

    [problem] = check_mapping(mapping(extra), org())
    assert "relationship name 'Dispatch_Service_Provider__r'" in problem.message


def test_a_relevant_field_the_object_lacks() -> None:
    def relevant(raw: dict[str, Any]) -> None:
        work_order(raw)["relevant"] = ["Subject", "Sbject"]

    assert keys(check_mapping(mapping(relevant), org())) == ["objects.WorkOrder.relevant"]


def test_a_flag_field_the_object_lacks() -> None:
    def flag(raw: dict[str, Any]) -> None:
        work_order(raw)["flag"]["field"] = "Dispatch_Sent__c"
        work_order(raw)["select"].append("Dispatch_Sent__c")

    problems = check_mapping(mapping(flag), org())
    assert keys(problems) == ["objects.WorkOrder.select", "objects.WorkOrder.flag.field"]


def test_a_true_flag_must_be_a_checkbox() -> None:
    def flag(raw: dict[str, Any]) -> None:
        work_order(raw)["flag"]["when"] = "true"

    [problem] = check_mapping(mapping(flag), org())
    assert (problem.field, problem.key) == ("Dispatch_Send__c", "objects.WorkOrder.flag.when")
    assert "field is of type datetime; use when: not_null" in problem.message


def test_a_not_null_flag_may_be_any_type() -> None:
    def flag(raw: dict[str, Any]) -> None:
        raw["objects"]["Account"]["flag"]["when"] = "not_null"

    assert check_mapping(mapping(flag), org()) == []


def test_a_route_field_the_object_lacks() -> None:
    def route(raw: dict[str, Any]) -> None:
        work_order(raw)["route"] = {"field": "Region__c", "map": {"EU": "dispatch_connect"}}
        work_order(raw)["select"].append("Region__c")

    problems = check_mapping(mapping(route), org())
    assert keys(problems) == ["objects.WorkOrder.select", "objects.WorkOrder.route.field"]


def test_a_write_back_field_that_is_not_updateable() -> None:
    describe = org({"WorkOrder.Dispatch_Last_Synced__c": {"updateable": False}})
    [problem] = check_mapping(mapping(), describe)
    assert (problem.field, problem.key) == (
        "Dispatch_Last_Synced__c",
        "objects.WorkOrder.write_back.last_synced",
    )
    assert "not updateable" in problem.message


@pytest.mark.parametrize(
    ("field", "wrong", "key"),
    [
        ("Dispatch_Last_Synced__c", "date", "write_back.last_synced"),
        ("Last_Updated_from_Dispatch__c", "string", "write_back.last_updated_from_dispatch"),
        ("Dispatch_Accepted_At__c", "date", "write_back.milestones.accepted"),
        ("Dispatch_Appointment_Start__c", "string", "write_back.appointment_start"),
        ("Dispatch_Appointment_End__c", "double", "write_back.appointment_end"),
        ("Dispatch_Status__c", "boolean", "write_back.status"),
        ("Dispatch_Status_Reason__c", "int", "write_back.status_reason"),
        ("Dispatch_Error__c", "datetime", "write_back.error"),
        ("Dispatch_Survey_Rating__c", "string", "write_back.survey_rating"),
        ("Dispatch_Survey_Comments__c", "picklist", "write_back.survey_comments"),
    ],
)
def test_a_write_back_field_of_a_type_the_value_does_not_fit(field: str, wrong: str, key: str) -> None:
    [problem] = check_mapping(mapping(), org({f"WorkOrder.{field}": {"type": wrong}}))
    assert (problem.object, problem.field, problem.key) == ("WorkOrder", field, f"objects.WorkOrder.{key}")
    assert problem.message.startswith(f"is of type {wrong}, but the connector writes")


@pytest.mark.parametrize("kind", ["double", "int", "percent"])
def test_a_survey_rating_may_be_any_number(kind: str) -> None:
    assert check_mapping(mapping(), org({"WorkOrder.Dispatch_Survey_Rating__c": {"type": kind}})) == []


def test_an_error_max_length_longer_than_the_error_field() -> None:
    describe = org({"WorkOrder.Dispatch_Error__c": {"length": 200}})
    [problem] = check_mapping(mapping(), describe)
    assert (problem.field, problem.key) == (
        "Dispatch_Error__c",
        "objects.WorkOrder.write_back.error_max_length",
    )
    assert "error_max_length 255 is longer than the field (200 characters)" in problem.message


def test_an_error_max_length_within_the_error_field() -> None:
    def shorter(raw: dict[str, Any]) -> None:
        work_order(raw)["write_back"]["error_max_length"] = 200

    assert check_mapping(mapping(shorter), org({"WorkOrder.Dispatch_Error__c": {"length": 200}})) == []


def test_a_notes_object_the_org_lacks() -> None:
    def notes(raw: dict[str, Any]) -> None:
        work_order(raw)["write_back"]["notes"]["object"] = "Dispatch_Notes__c"

    [problem] = check_mapping(mapping(notes), org())
    assert (problem.object, problem.field, problem.key) == (
        "Dispatch_Notes__c",
        None,
        "objects.WorkOrder.write_back.notes.object",
    )


def test_a_notes_parent_field_must_be_a_lookup_to_the_mapped_object() -> None:
    describe = org({"Dispatch_Note__c.Work_Order__c": {"referenceTo": ["Account"]}})
    [problem] = check_mapping(mapping(), describe)
    assert problem.key == "objects.WorkOrder.write_back.notes.parent_field"
    assert problem.message == "must be a lookup to WorkOrder, but it points to Account"


def test_a_notes_parent_field_that_is_not_a_lookup() -> None:
    def notes(raw: dict[str, Any]) -> None:
        work_order(raw)["write_back"]["notes"]["parent_field"] = "File_Token__c"
        del work_order(raw)["write_back"]["notes"]["fields"]["File_Token__c"]

    [problem] = check_mapping(mapping(notes), org())
    assert problem.message == "must be a lookup to WorkOrder, but it is of type string"


def test_a_notes_field_that_cannot_be_created() -> None:
    describe = org({"Dispatch_Note__c.Body__c": {"createable": False}})
    [problem] = check_mapping(mapping(), describe)
    assert (problem.object, problem.field, problem.key) == (
        "Dispatch_Note__c",
        "Body__c",
        "objects.WorkOrder.write_back.notes.fields.Body__c",
    )
    assert "not createable" in problem.message


def test_a_notes_deleted_flag_must_be_a_checkbox() -> None:
    [problem] = check_mapping(mapping(), org({"Dispatch_Note__c.Deleted__c": {"type": "string"}}))
    assert problem.key == "objects.WorkOrder.write_back.notes.fields.Deleted__c"


def test_a_field_the_org_requires_on_create_and_the_notes_leave_empty() -> None:
    def fewer(raw: dict[str, Any]) -> None:
        del work_order(raw)["write_back"]["notes"]["fields"]["File_Token__c"]

    required = {"nillable": False, "defaultedOnCreate": False}
    [problem] = check_mapping(mapping(fewer), org({"Dispatch_Note__c.File_Token__c": required}))
    assert (problem.object, problem.field, problem.key) == (
        "Dispatch_Note__c",
        "File_Token__c",
        "objects.WorkOrder.write_back.notes.fields",
    )
    assert problem.message == "is required when a record is created, and the mapping sets none"


def test_a_field_the_org_requires_on_create_and_the_log_mirror_leaves_empty() -> None:
    describe = org({"Dispatch_Log__c.Name": {"nillable": False, "defaultedOnCreate": False}})
    [problem] = check_mapping(mapping(), describe)
    assert (problem.object, problem.field, problem.key) == ("Dispatch_Log__c", "Name", "log_object.fields")


def test_a_log_object_field_that_cannot_be_created() -> None:
    describe = org({"Dispatch_Log__c.Error__c": {"createable": False}})
    [problem] = check_mapping(mapping(), describe)
    assert (problem.object, problem.key) == ("Dispatch_Log__c", "log_object.fields.Error__c")


def test_a_log_object_field_the_org_lacks() -> None:
    def log(raw: dict[str, Any]) -> None:
        raw["log_object"]["fields"]["Message__c"] = "message"

    assert keys(check_mapping(mapping(log), org())) == ["log_object.fields.Message__c"]


def test_a_log_object_the_org_lacks() -> None:
    def log(raw: dict[str, Any]) -> None:
        raw["log_object"]["object"] = "Sync_Log__c"

    assert check_mapping(mapping(log), org()) == [
        Problem("Sync_Log__c", None, "log_object.object", "the org has no object 'Sync_Log__c'")
    ]


def test_an_inbound_job_field_that_cannot_be_created() -> None:
    describe = org({"WorkOrder.Subject": {"createable": False}})
    [problem] = check_mapping(mapping(), describe)
    assert (problem.field, problem.key) == ("Subject", "objects.WorkOrder.inbound_jobs.fields.Subject")


def test_an_inbound_job_constant_of_a_type_the_field_does_not_take() -> None:
    def constant(raw: dict[str, Any]) -> None:
        work_order(raw)["inbound_jobs"]["constants"]["Dispatch_Pending__c"] = "yes"

    [problem] = check_mapping(mapping(constant), org())
    assert problem.key == "objects.WorkOrder.inbound_jobs.constants.Dispatch_Pending__c"
    assert problem.message == "the constant 'yes' does not fit a field of type boolean"


def test_inbound_jobs_set_the_status_field_on_create() -> None:
    [problem] = check_mapping(mapping(), org({"WorkOrder.Dispatch_Status__c": {"createable": False}}))
    assert (problem.field, problem.key) == ("Dispatch_Status__c", "objects.WorkOrder.write_back.status")
    assert "inbound_jobs sets it" in problem.message


def test_disabled_inbound_jobs_are_not_checked() -> None:
    def disabled(raw: dict[str, Any]) -> None:
        work_order(raw)["inbound_jobs"]["enabled"] = False

    assert check_mapping(mapping(disabled), org({"WorkOrder.Subject": {"createable": False}})) == []


def _pending(raw: dict[str, Any]) -> None:
    work_order(raw)["pending"] = {"field": "Dispatch_Pending__c", "clear_value": False}
    work_order(raw)["select"].append("Dispatch_Pending__c")


def test_a_pending_field_is_clean_when_it_is_an_updateable_checkbox() -> None:
    assert check_mapping(mapping(_pending), org()) == []


def test_a_pending_field_that_is_not_updateable() -> None:
    [problem] = check_mapping(
        mapping(_pending), org({"WorkOrder.Dispatch_Pending__c": {"updateable": False}})
    )
    assert (problem.field, problem.key) == ("Dispatch_Pending__c", "objects.WorkOrder.pending.field")
    assert "not updateable" in problem.message


def test_every_problem_is_reported_not_only_the_first() -> None:
    describe = org(
        {
            "WorkOrder.Dispatch_Last_Synced__c": {"updateable": False},
            "Account.Dispatch_Error__c": {"type": "boolean"},
            "Dispatch_Log__c.Direction__c": {"createable": False},
        }
    )
    assert keys(check_mapping(mapping(), describe)) == [
        "objects.WorkOrder.write_back.last_synced",
        "objects.Account.write_back.error",
        "log_object.fields.Direction__c",
    ]


def test_each_object_is_described_once() -> None:
    describe = org()
    asked: list[str] = []

    def counting(name: str) -> dict[str, Any] | None:
        asked.append(name)
        return describe(name)

    check_mapping(mapping(), counting)
    field_records = {"Dispatch_Billing_Document__c", "Dispatch_Payment__c", "Dispatch_Form__c", "Event"}
    assert sorted(asked) == sorted(
        {"WorkOrder", "Contact", "Account", "Dispatch_Note__c", "Dispatch_Log__c", "Task", *field_records}
    )


def _inbox(raw: dict[str, Any]) -> None:
    raw["inbox_messages"] = copy.deepcopy(INBOX)


def test_inbox_messages_as_tasks_match_an_org_with_tasks() -> None:
    assert check_mapping(mapping(_inbox), org(task=True)) == []


def test_inbox_messages_into_an_object_the_org_lacks() -> None:
    assert check_mapping(mapping(_inbox), org(task=False)) == [
        Problem("Task", None, "inbox_messages.object", "the org has no object 'Task'")
    ]


def test_an_inbox_message_record_field_must_be_a_lookup() -> None:
    [problem] = check_mapping(mapping(_inbox), org({"Task.WhatId": {"type": "string"}}, task=True))
    assert (problem.object, problem.field, problem.key) == ("Task", "WhatId", "inbox_messages.record_field")


def test_an_inbox_message_field_that_cannot_be_created() -> None:
    [problem] = check_mapping(mapping(_inbox), org({"Task.Description": {"createable": False}}, task=True))
    assert problem.key == "inbox_messages.fields.Description"

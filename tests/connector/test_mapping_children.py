"""Issue 19's mapping constructs: child relationships, each records, child lists, split/wrap, conditional
values, JSON text, envelope keys (version, header, attachment, envelope, id_field) and file-body markers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.mapping import (
    BLOB_MARKER,
    MappingFileError,
    RecordBuildError,
    build_records,
    load_mapping,
    record_identity,
    relevant_hash,
    soql_select,
)

LINES = {
    "object": "WorkOrderLineItem",
    "parent_field": "WorkOrderId",
    "select": ["Id", "Product2Id", "Product2.Name", "Quantity", "UnitPrice"],
    "where": "Status != 'Canceled'",
    "order_by": "LineItemNumber",
}
BASE: dict[str, Any] = {
    "objects": {
        "WorkOrder": {
            "flag": {"field": "Dispatch_Send__c"},
            "select": [
                "Id",
                "Dispatch_Send__c",
                "Dispatch_Service_Provider__c",
                "Estimate_Status__c",
                "Trades__c",
                "Postal_Codes__c",
                "Canceled__c",
                "Settings__c",
                "Photo_Version_Id__c",
            ],
            "children": {"WorkOrderLineItems": LINES},
            "records": [
                {"type": "organization", "external_id": "Dispatch_Service_Provider__c"},
                {
                    "type": "billing_item",
                    "each": "WorkOrderLineItems",
                    "external_id": "Product2Id",
                    "fields": {
                        "title": "Product2.Name",
                        "external_organization_id": {"ref": "organization"},
                        "work_order": "$parent.Id",
                    },
                },
                {
                    "type": "billing_document",
                    "version": "v2",
                    "external_id": {"template": "{Id}-estimate"},
                    "fields": {
                        "lines": {
                            "children": "WorkOrderLineItems",
                            "fields": {
                                "external_billing_item_id": "Product2Id",
                                "title": "Product2.Name",
                                "qty": {"field": "Quantity", "format": "int"},
                                "price": {"field": "UnitPrice", "format": "float"},
                            },
                        },
                        "skip_customer_signature": {
                            "const": True,
                            "when": {"field": "Estimate_Status__c", "in": ["won", "balance_outstanding"]},
                            "default": False,
                        },
                    },
                },
                {
                    "type": "job_trade",
                    "id_field": "external_job_id",
                    "external_id": "Id",
                    "fields": {"trades": {"field": "Trades__c", "split": ";"}},
                },
                {
                    "type": "service_area",
                    "id_field": "none",
                    "external_id": {"template": "{Id}-area"},
                    "fields": {
                        "postal_codes": {"field": "Postal_Codes__c", "split": ",", "wrap": "postal_code"}
                    },
                },
                {
                    "type": "profile_picture",
                    "version": "v3",
                    "header": {"action": {"field": "Canceled__c", "map": {"True": "delete"}}},
                    "external_id": "Id",
                    "attachment": {"blob": "Photo_Version_Id__c", "max_bytes": 1000},
                    "fields": {"settings": {"field": "Settings__c", "format": "json"}},
                },
                {"type": "job", "external_id": "Id"},
            ],
        }
    }
}
ROW: dict[str, Any] = {
    "Id": "0WO1",
    "Dispatch_Send__c": "2026-11-25T10:00:00Z",
    "Dispatch_Service_Provider__c": "001P",
    "Estimate_Status__c": "won",
    "Trades__c": "Plumbing;HVAC",
    "Postal_Codes__c": "02446, 02447",
    "Canceled__c": True,
    "Settings__c": '{"tips": true}',
    "Photo_Version_Id__c": "068V",
    "WorkOrderLineItems": [
        {
            "Id": "1WL1",
            "Product2Id": "01tA",
            "Product2": {"Name": "Valve"},
            "Quantity": 2.0,
            "UnitPrice": 9.5,
        },
        {"Id": "1WL2", "Product2Id": "01tB", "Product2": {"Name": "Pipe"}, "Quantity": 1.0, "UnitPrice": 3},
    ],
}


def load(tmp_path: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_mapping(path).object("WorkOrder")


def by_type(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record["record_type"], []).append(record)
    return out


@pytest.fixture
def spec(tmp_path: Path) -> Any:
    return load(tmp_path, BASE)


def test_soql_appends_one_subquery_per_child_relationship(spec: Any) -> None:
    assert soql_select(spec, "WorkOrder").endswith(
        ", (SELECT Id, Product2Id, Product2.Name, Quantity, UnitPrice FROM WorkOrderLineItems "
        "WHERE Status != 'Canceled' ORDER BY LineItemNumber) FROM WorkOrder"
    )


def test_each_builds_one_record_per_child_row_reading_the_parent_and_earlier_records(spec: Any) -> None:
    items = by_type(build_records(spec, ROW))["billing_item"]
    assert [item["record"] for item in items] == [
        {"external_id": "01tA", "title": "Valve", "external_organization_id": "001P", "work_order": "0WO1"},
        {"external_id": "01tB", "title": "Pipe", "external_organization_id": "001P", "work_order": "0WO1"},
    ]


def test_children_value_is_a_list_with_one_object_per_child_row(spec: Any) -> None:
    (document,) = by_type(build_records(spec, ROW))["billing_document"]
    assert document["version"] == "v2"
    assert document["record"]["lines"] == [
        {"external_billing_item_id": "01tA", "title": "Valve", "qty": 2, "price": 9.5},
        {"external_billing_item_id": "01tB", "title": "Pipe", "qty": 1, "price": 3.0},
    ]


def test_no_child_rows_leave_the_list_out_and_build_no_each_record(spec: Any) -> None:
    records = by_type(build_records(spec, {**ROW, "WorkOrderLineItems": []}))
    assert "billing_item" not in records and "lines" not in records["billing_document"][0]["record"]


def test_conditional_value_holds_or_falls_back_to_its_default(spec: Any) -> None:
    def signature(row: dict[str, Any]) -> Any:
        return by_type(build_records(spec, row))["billing_document"][0]["record"]["skip_customer_signature"]

    assert signature(ROW) is True
    assert signature({**ROW, "Estimate_Status__c": "lost"}) is False


def test_condition_without_default_leaves_the_value_out(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    value = data["objects"]["WorkOrder"]["records"][2]["fields"]["skip_customer_signature"]
    del value["default"]
    value["when"] = {"field": "Estimate_Status__c", "equals": "won"}
    spec = load(tmp_path, data)
    assert (
        "skip_customer_signature"
        not in by_type(build_records(spec, {**ROW, "Estimate_Status__c": "x"}))["billing_document"][0][
            "record"
        ]
    )
    assert by_type(build_records(spec, ROW))["billing_document"][0]["record"]["skip_customer_signature"]


def test_split_and_wrap_build_lists(spec: Any) -> None:
    records = by_type(build_records(spec, ROW))
    assert records["job_trade"][0]["record"]["trades"] == ["Plumbing", "HVAC"]
    assert records["service_area"][0]["record"]["postal_codes"] == [
        {"postal_code": "02446"},
        {"postal_code": "02447"},
    ]


def test_id_field_sends_the_identity_under_its_key_or_not_at_all(spec: Any) -> None:
    records = by_type(build_records(spec, ROW))
    trade, area = records["job_trade"][0], records["service_area"][0]
    assert trade["record"]["external_job_id"] == "0WO1" and "external_id" not in trade["record"]
    assert trade["identity"] == record_identity(trade) == "0WO1"
    assert "external_id" not in area["record"] and area["identity"] == "0WO1-area"
    assert "identity" not in records["job"][0] and record_identity(records["job"][0]) == "0WO1"


def test_header_version_json_and_attachment_marker(spec: Any) -> None:
    (picture,) = by_type(build_records(spec, ROW))["profile_picture"]
    assert picture["version"] == "v3" and picture["header"] == {"action": "delete"}
    assert picture["record"]["settings"] == {"tips": True}
    assert picture["attachment"][BLOB_MARKER] == "068V" and picture["attachment"]["max_bytes"] == 1000
    assert "header" not in by_type(build_records(spec, {**ROW, "Canceled__c": False}))["profile_picture"][0]


def _with_offer(envelope: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    offer = {"type": "offer", "external_id": "Id", "envelope": envelope}
    _records(data).insert(len(_records(data)) - 1, offer)
    return data


def test_envelope_builds_top_level_keys_with_nested_paths_and_numbered_lists(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        _with_offer(
            {
                "ui_options.show_decline": {"const": True},
                "ui_options.reject_reasons.0": {"const": "wrong_area|Wrong area|true|false"},
                "ui_options.reject_reasons.1": {"const": "other|Other|true|true"},
                "ui_options.trades": {"field": "Trades__c", "split": ";"},
            }
        ),
    )
    (offer,) = by_type(build_records(spec, ROW))["offer"]
    assert offer["envelope"] == {
        "ui_options": {
            "show_decline": True,
            "reject_reasons": ["wrong_area|Wrong area|true|false", "other|Other|true|true"],
            "trades": ["Plumbing", "HVAC"],
        }
    }
    assert "envelope" not in by_type(build_records(spec, ROW))["job"][0]


def test_an_envelope_whose_values_are_all_empty_adds_no_key(tmp_path: Path) -> None:
    spec = load(tmp_path, _with_offer({"ui_options.trades": {"field": "Trades__c", "split": ";"}}))
    (offer,) = by_type(build_records(spec, {**ROW, "Trades__c": None}))["offer"]
    assert offer == {"record_type": "offer", "record": {"external_id": "0WO1"}}


def test_envelope_fields_must_be_selected(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError) as info:
        load(tmp_path, _with_offer({"ui_options.title": "Subject"}))
    assert "records.6.envelope.ui_options.title: field 'Subject' is used but not in select" in str(info.value)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("header.action", "envelope key 'header.action': 'header' is the envelope's own key (use `header`"),
        ("record", "envelope key 'record': 'record' is the envelope's own key (use `fields`)"),
        ("attachment", "'attachment' is the envelope's own key (use `attachment: {blob: ...}`)"),
        ("0.x", "envelope key '0.x': a top-level key must be a name, not '0'"),
    ],
)
def test_envelope_keys_of_the_envelope_itself_are_refused(tmp_path: Path, key: str, problem: str) -> None:
    with pytest.raises(MappingFileError) as info:
        load(tmp_path, _with_offer({key: {"const": 1}}))
    assert problem in str(info.value) and "objects.WorkOrder.records.6.envelope" in str(info.value)


def test_invalid_json_text_is_a_record_error_naming_the_field(spec: Any) -> None:
    with pytest.raises(RecordBuildError, match=r"value of Settings__c is not valid JSON \(Expecting"):
        build_records(spec, {**ROW, "Settings__c": "{tips"})


def test_raw_salesforce_child_answer_and_null_are_read(spec: Any) -> None:
    raw = {**ROW, "WorkOrderLineItems": {"totalSize": 2, "done": True, "records": ROW["WorkOrderLineItems"]}}
    assert build_records(spec, raw) == build_records(spec, ROW)
    assert "billing_item" not in by_type(build_records(spec, {**ROW, "WorkOrderLineItems": None}))


def test_hash_covers_the_child_rows_the_records_use(spec: Any) -> None:
    changed = copy.deepcopy(ROW)
    changed["WorkOrderLineItems"][1]["Quantity"] = 5.0
    assert relevant_hash(spec, changed) != relevant_hash(spec, ROW)
    assert relevant_hash(spec, {**ROW, "WorkOrderLineItems": ROW["WorkOrderLineItems"][:1]}) != relevant_hash(
        spec, ROW
    )
    unused = copy.deepcopy(ROW)
    unused["WorkOrderLineItems"][0]["Description"] = "not mapped"
    assert relevant_hash(spec, unused) == relevant_hash(spec, ROW)
    assert "WorkOrderLineItems" in spec.relevant_fields() and "WorkOrderLineItems" in spec.referenced_fields()


def test_hash_of_an_object_without_children_is_unchanged() -> None:
    """Stored hashes stay valid: without children the hash input is the relevant fields alone, as before."""
    import hashlib
    import json

    from tests.connector.test_mapping import ROW as WORK_ORDER

    spec = load_mapping().object("WorkOrder")
    values = {}
    for name in sorted(spec.relevant_fields()):
        value: Any = WORK_ORDER
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[name] = value
    before = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    assert relevant_hash(spec, WORK_ORDER) == hashlib.sha256(before.encode()).hexdigest()


def test_primary_record_is_the_last_record_that_is_not_each(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    records = data["objects"]["WorkOrder"]["records"]
    records.append(records.pop(1))  # billing_item (each) last
    spec = load(tmp_path, data)
    assert spec.primary_record().type == "job"


def _records(data: dict[str, Any]) -> list[dict[str, Any]]:
    return data["objects"]["WorkOrder"]["records"]  # type: ignore[no-any-return]


BROKEN = [
    (
        lambda d: _records(d)[1].update(each="Lines"),
        "records.1.each: 'Lines' is not a declared child relationship (declared under children: "
        "WorkOrderLineItems)",
    ),
    (
        lambda d: _records(d)[2]["fields"]["lines"].update(children="Nope"),
        "records.2.fields.lines.children: 'Nope' is not a declared child relationship",
    ),
    (
        lambda d: _records(d)[1]["fields"].update(desc="Description"),
        "records.1.fields.desc: field 'Description' is used but not in children.WorkOrderLineItems.select",
    ),
    (
        lambda d: _records(d)[2]["fields"]["lines"]["fields"].update(unit="Unit__c"),
        "records.2.fields.lines.fields.unit: field 'Unit__c' is used but not in "
        "children.WorkOrderLineItems.select",
    ),
    (
        lambda d: _records(d)[1]["fields"].update(sub="$parent.Subject"),
        "records.1.fields.sub: field 'Subject' is used but not in select",
    ),
    (
        lambda d: _records(d)[0].update(fields={"name": "$parent.Name"}),
        "records.0.fields.name: '$parent.Name': `$parent.` paths are only valid inside `each` records",
    ),
    (
        lambda d: _records(d)[1]["fields"].update(
            lines={"children": "WorkOrderLineItems", "fields": {"x": "Id"}}
        ),
        "records.1.fields.lines: a children list reads 'WorkOrderLineItems' rows, but this value already",
    ),
    (
        lambda d: _records(d)[2]["fields"].update(first_item={"ref": "billing_item"}),
        "records.2.fields.first_item: 'billing_item' is an `each` record (one per child row)",
    ),
    (
        lambda d: _records(d)[2]["fields"].update(codes={"field": "Trades__c", "wrap": "code"}),
        "`wrap` names the key of each item of a `split`: add `split`",
    ),
    (
        lambda d: _records(d)[2]["fields"].update(lines={"children": "WorkOrderLineItems"}),
        "`children` (a child relationship) and `fields` (its list items) go together",
    ),
    (
        lambda d: _records(d)[5].update(attachment="Photo_Version_Id__c"),
        "attachment must be a file body: {blob: <ContentVersion id field>}",
    ),
    (
        lambda d: _records(d)[2]["fields"].update(
            flag={"const": 1, "when": {"field": "Id", "in": [1], "equals": 1}}
        ),
        "a condition takes `in` or `equals`, not both",
    ),
    (
        lambda d: _records(d)[2]["fields"].update(flag={"const": 1, "when": {"field": "Status"}}),
        "records.2.fields.flag: field 'Status' is used but not in select",
    ),
    (
        lambda d: d["objects"]["WorkOrder"]["children"]["WorkOrderLineItems"].update(select=[]),
        "children.WorkOrderLineItems.select: Value error, select must name at least one field",
    ),
    (
        lambda d: d["objects"]["WorkOrder"]["children"]["WorkOrderLineItems"].pop("parent_field"),
        "children.WorkOrderLineItems.parent_field: Field required",
    ),
    (
        lambda d: _records(d)[5]["attachment"].update(max_bytes=0),
        "records.5.attachment.max_bytes: Input should be greater than 0",
    ),
    (
        lambda d: _records(d)[3]["fields"]["trades"].update(format="json"),
        "`split` reads a text field: not with children, blob or format: json",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), BROKEN)
def test_broken_child_constructs_name_file_key_and_problem(
    tmp_path: Path, mutate: Any, expected: str
) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(MappingFileError) as info:
        load(tmp_path, data)
    message = str(info.value)
    assert str(tmp_path / "mapping.yaml") in message and "objects.WorkOrder" in message
    assert expected in message


def test_ref_to_a_later_record_keeps_its_rule(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    _records(data)[0]["fields"] = {"doc": {"ref": "billing_document"}}
    with pytest.raises(
        MappingFileError, match="organization refers to 'billing_document', which is not an earlier"
    ):
        load(tmp_path, data)


def test_conditions_compare_as_given_or_as_text(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    fields = _records(data)[2]["fields"]
    fields["has_trades"] = {"const": "yes", "when": {"field": "Trades__c"}}
    fields["two"] = {"const": "two", "when": {"field": "Estimate_Status__c", "equals": 2}}
    spec = load(tmp_path, data)

    def document(**values: Any) -> dict[str, Any]:
        return by_type(build_records(spec, {**ROW, **values}))["billing_document"][0]["record"]  # type: ignore[no-any-return]

    assert document()["has_trades"] == "yes" and "has_trades" not in document(Trades__c="")
    assert (
        document(Estimate_Status__c="2")["two"] == "two" and document(Estimate_Status__c=2.0)["two"] == "two"
    )
    assert "two" not in document(Estimate_Status__c=None) and "two" not in document(Estimate_Status__c="2.5")


def test_split_items_go_through_the_value_map(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    _records(data)[3]["fields"]["trades"].update(map={"Plumbing": "plumbing", "HVAC": "hvac"})
    spec = load(tmp_path, data)
    assert by_type(build_records(spec, ROW))["job_trade"][0]["record"]["trades"] == ["plumbing", "hvac"]
    with pytest.raises(RecordBuildError, match="value 'Solar' of Trades__c is not in the value map"):
        build_records(spec, {**ROW, "Trades__c": "Solar"})


def test_each_record_condition_may_read_the_parent_and_files_in_lists_are_found(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    _records(data)[1]["when"] = "$parent.Estimate_Status__c"
    lines = _records(data)[2]["fields"]["lines"]
    data["objects"]["WorkOrder"]["children"]["WorkOrderLineItems"]["select"].append("Photo__c")
    lines["fields"]["photo"] = {"blob": "Photo__c"}
    del _records(data)[5]["attachment"]
    spec = load(tmp_path, data)
    assert spec.has_blobs
    assert "billing_item" not in by_type(build_records(spec, {**ROW, "Estimate_Status__c": None}))
    row = copy.deepcopy(ROW)
    row["WorkOrderLineItems"][0]["Photo__c"] = "068L"
    lines_built = by_type(build_records(spec, row))["billing_document"][0]["record"]["lines"]
    assert lines_built[0]["photo"][BLOB_MARKER] == "068L" and "photo" not in lines_built[1]


def test_datetime_z_writes_the_calendar_events_form() -> None:
    from connector.mapping_values import _FORMATTERS

    assert _FORMATTERS["datetime_z"]("2019-10-21T10:30:00+02:00") == "2019-10-21T08:30:00Z"
    assert _FORMATTERS["datetime"]("2019-10-21T10:30:00+02:00") == "2019-10-21T08:30:00+00:00"

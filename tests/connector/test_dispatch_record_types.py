"""The playbook's To-Dispatch record types as the client sends them: envelopes, versions, CSV with lists."""

from __future__ import annotations

import pytest

from connector.dispatch_connect.backend import RECORD_TYPES, AgentInDestination, DispatchConnectSettings
from connector.dispatch_connect.canonical import (
    DEFAULT_VERSIONS,
    CsvRowError,
    InboundRecord,
    csv_parts,
    envelope,
    parse_csv_body,
    parse_json_body,
    to_csv,
)
from connector.dispatch_connect.client import DispatchConnectClient
from connector.errors import ConfigurationError
from connector.ports import destination_encodings, send_encoded

# (type, header version of its playbook sample); None: the sample's header has no version
SAMPLE_VERSIONS = [
    ("organization", "v3"), ("config", "v1"), ("trade_account_org", None), ("job_attribution", "v1"),
    ("appointment_type", "v1"), ("billing_item", "v2"), ("user", "v3"), ("trade_account_user", None),
    ("user_tag", "v1"), ("profile_picture", "v3"), ("service_area", "v1"), ("customer", "v3"), ("job", "v3"),
    ("offer", "v2"), ("job_trade", None), ("suggested_times", None), ("appointment", "v3"),
    ("auto_assign_technician", "v3"), ("auto_assign_org", "v3"), ("attachment", "v3"), ("custom_form", None),
    ("billing_document", "v2"), ("calendar_event", "v1"),
]  # fmt: skip


@pytest.mark.parametrize(("record_type", "version"), SAMPLE_VERSIONS)
def test_each_type_gets_its_samples_header_version(record_type: str, version: str | None) -> None:
    sent = envelope({"record_type": record_type, "record": {"external_id": "x"}})
    expected = {"record_type": record_type, **({"version": version} if version else {})}
    assert sent == {"header": expected, "record": {"external_id": "x"}}


def test_every_type_is_known_and_in_dependency_order() -> None:
    assert set(RECORD_TYPES) == set(DEFAULT_VERSIONS) == {t for t, _ in SAMPLE_VERSIONS}
    order = RECORD_TYPES.index
    for before, after in [
        ("organization", "user"), ("organization", "job"), ("customer", "job"), ("user", "service_area"),
        ("user", "profile_picture"), ("user", "user_tag"), ("user", "calendar_event"), ("job", "job_trade"),
        ("job", "appointment"), ("job", "billing_document"), ("billing_item", "billing_document"),
        ("appointment", "auto_assign_technician"), ("offer", "auto_assign_org"), ("job", "custom_form"),
    ]:  # fmt: skip
        assert order(before) < order(after), (before, after)


def test_a_mapped_version_wins_over_the_default() -> None:
    assert (
        envelope({"record_type": "billing_document", "version": "v3", "record": {}})["header"]["version"]
        == "v3"
    )


def test_extra_header_keys_and_the_attachment_are_sent_the_identity_is_not() -> None:
    built = {
        "record_type": "profile_picture",
        "record": {"external_id": "u-1", "file_name": "me.jpg"},
        "header": {"admin": True},
        "attachment": "aGVsbG8=",
        "identity": "u-1-photo",
    }
    assert envelope(built) == {
        "header": {"record_type": "profile_picture", "version": "v3", "admin": True},
        "record": {"external_id": "u-1", "file_name": "me.jpg"},
        "attachment": "aGVsbG8=",
    }


@pytest.mark.parametrize(
    ("built", "problem"),
    [
        ({"record_type": "job", "record": {}, "header": {"version": "v9"}}, "header key 'version'"),
        ({"record_type": "job", "record": {}, "header": ["action"]}, "'header' must be an object"),
        ({"record_type": "profile_picture", "record": {}, "attachment": b"x"}, "'attachment' must be base64"),
        ({"record_type": "offer", "record": {}, "envelope": ["ui_options"]}, "'envelope' must be an object"),
        (
            {"record_type": "offer", "record": {}, "envelope": {"record": {"x": 1}}},
            "envelope key 'record' is the item's own key",
        ),
    ],
)
def test_a_malformed_built_record_is_refused_with_its_reason(built: dict, problem: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=problem):
        envelope(built)


UI_OPTIONS = {
    "show_decline": True,
    "accept_title": "Accept",
    "reject_reasons": ["wrong_area|I don't service this address|true|false", "other|Other|true|true"],
}


def test_envelope_keys_go_beside_header_and_record() -> None:
    built = {"record_type": "offer", "record": {"external_id": "o-1"}, "envelope": {"ui_options": UI_OPTIONS}}
    assert envelope(built) == {
        "header": {"record_type": "offer", "version": "v2"},
        "record": {"external_id": "o-1"},
        "ui_options": UI_OPTIONS,
    }


def test_json_body_reads_top_level_siblings() -> None:
    body = [{"header": {"record_type": "offer"}, "record": {"external_id": "o"}, "ui_options": UI_OPTIONS}]
    (item,) = parse_json_body(body, None)
    assert (item.version, item.siblings, item.attachment) == ("v2", {"ui_options": UI_OPTIONS}, None)


def test_csv_parts_send_a_record_with_envelope_keys_as_json() -> None:
    batch = [
        {"record_type": "offer", "record": {"external_id": "o"}, "envelope": {"ui_options": UI_OPTIONS}},
        {"record_type": "auto_assign_org", "record": {"external_id": "o", "postal_code": "02151"}},
    ]
    first, second = csv_parts(batch)
    assert first.json == [envelope(batch[0])] and first.csv is None
    (assign,) = parse_csv_body(second.csv or "")
    assert isinstance(assign, InboundRecord) and assign.record == batch[1]["record"]


def test_json_body_reads_header_extras_and_attachment() -> None:
    (item,) = parse_json_body(
        [{"header": {"record_type": "calendar_event", "action": "delete"}, "record": {"external_id": "e"}}],
        None,
    )
    assert (item.version, item.header, item.attachment) == ("v1", {"action": "delete"}, None)


DOCUMENT = {
    "external_id": "doc-1",
    "external_job_id": "job-1",
    "doc_type": "Estimate",
    "discount_amount": 10,
    "skip_customer_signature": True,
    "customer": {"full_name": "John Doe", "address": {"postal_code": "02446", "state": "OR"}},
    "lines": [
        {"external_billing_item_id": "item-1", "title": "Line 1", "qty": 10, "price": 1.5, "taxable": False},
        {"external_billing_item_id": "item-2", "title": "Line 2", "qty": 3, "price": 2, "taxable": True},
    ],
}


def test_csv_lists_are_numbered_segments() -> None:
    text = to_csv("billing_document", [DOCUMENT], "v2")
    header = text.splitlines()[0].split(",")
    assert "v2.billing_document.lines.0.title" in header and "v2.billing_document.lines.1.qty" in header
    assert "v2.billing_document.customer.address.postal_code" in header


def test_csv_round_trip_gives_the_json_record_back_typed_as_dispatch_reads_it() -> None:
    (item,) = parse_csv_body(to_csv("billing_document", [DOCUMENT], "v2"))
    assert isinstance(item, InboundRecord)
    assert (item.record_type, item.version, item.record) == ("billing_document", "v2", DOCUMENT)


def test_csv_lists_of_names_and_of_objects_round_trip() -> None:
    trades = {"external_job_id": "job-1", "trades": ["Trade 1", "Trade 2"]}
    area = {"external_id": "a", "postal_codes": [{"postal_code": "02446"}, {"postal_code": "02447"}]}
    ((trade_item,), (area_item,)) = (
        parse_csv_body(to_csv("job_trade", [trades], None)),
        parse_csv_body(to_csv("service_area", [area], "v1")),
    )
    assert isinstance(trade_item, InboundRecord) and isinstance(area_item, InboundRecord)
    assert (trade_item.version, trade_item.record) == ("", trades)
    assert area_item.record == area


def test_csv_keeps_a_cell_that_is_not_a_number_as_text_for_validation_to_name() -> None:
    (item,) = parse_csv_body("v2.billing_document.external_id,v2.billing_document.lines.0.qty\nd,ten\n")
    assert isinstance(item, InboundRecord) and item.record["lines"] == [{"qty": "ten"}]


def test_csv_scalar_after_nested_column_is_a_row_error() -> None:
    (item,) = parse_csv_body("v3.job.address.city,v3.job.address\nBoston,1 Main St\n")
    assert isinstance(item, CsvRowError) and "clashes" in item.message


def test_csv_parts_follow_the_batch_order_one_request_per_type_run() -> None:
    batch = [
        {"record_type": "organization", "record": {"external_id": "o"}},
        {"record_type": "user", "record": {"external_id": "u", "email": "a@b.co"}},
        {"record_type": "user", "record": {"external_id": "v", "email": "c@d.co"}},
        {
            "record_type": "profile_picture",
            "record": {"external_id": "u", "file_name": "u.jpg"},
            "attachment": "QQ==",
        },
        {"record_type": "calendar_event", "record": {"external_id": "e"}, "header": {"action": "delete"}},
        {"record_type": "billing_document", "record": DOCUMENT},
    ]
    parts = csv_parts(batch)
    assert [(p.record_type, p.csv is not None) for p in parts] == [
        ("organization", True),
        ("user", True),
        ("profile_picture", True),
        ("calendar_event", False),
        ("billing_document", True),
    ]
    assert parts[1].csv is not None and len(parts[1].csv.splitlines()) == 3  # header and two users
    (picture,) = parse_csv_body(parts[2].csv or "")
    assert isinstance(picture, InboundRecord) and picture.attachment == "QQ=="
    assert parts[3].json == [
        {
            "header": {"record_type": "calendar_event", "version": "v1", "action": "delete"},
            "record": {"external_id": "e"},
        }
    ]


def test_the_agent_in_destination_sends_json_and_csv_dispatch_v3_json_only() -> None:
    from connector.dispatch_v3.backend import DispatchV3Settings
    from connector.dispatch_v3.backend import build as build_v3

    client = DispatchConnectClient("http://127.0.0.1:9", "organization|1|x", "ab" * 32)
    agent_in = AgentInDestination("dispatch_connect", client, DispatchConnectSettings())
    assert destination_encodings(agent_in) == ("json", "csv")
    v3 = build_v3("dispatch_v3", DispatchV3Settings(), ()).destination
    assert destination_encodings(v3) == ("json",)
    with pytest.raises(ConfigurationError, match="the dispatch_v3 back end cannot send 'csv' batches"):
        send_encoded(v3, [], message_id="m", encoding="csv")

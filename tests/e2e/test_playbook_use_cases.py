"""Every "To Dispatch" use case of the playbook for organizations, jobs and billing, by mapping alone.

The playbook org is published through agent/in (real sockets, connector/mappings/playbook_examples.yaml);
each test compares what the Dispatch emulator holds with the playbook sample of its use case: the sample's
keys, the fixture's values (Dispatch's own ids and resolved references aside), and the sample's header.
Technicians, calendar events, the Gateway and the refusals are in test_playbook_people.py.
"""

from __future__ import annotations

import json

from tests.e2e.test_playbook_harness import Playbook, header, ids, playbook, published

__all__ = ["playbook", "published"]  # the fixtures, imported for pytest


def test_the_whole_org_is_applied_without_an_error(published: Playbook) -> None:
    assert published.dispatch.counts.get("records_failed", 0) == 0
    assert published.dispatch.counts["records_applied"] >= 30


def test_every_flagged_row_is_confirmed_by_its_acks(published: Playbook) -> None:
    """Acks reach every row, including records sent without an external id (notes, photos, forms)."""
    for name, spec in published.ctx.mapping.objects.items():
        for crm_id in published.sf.record_ids(name):
            row = published.sf.get(name, crm_id)
            if row.get(spec.flag.field):
                assert row["Dispatch_Last_Synced__c"] is not None, f"{name} {crm_id} not confirmed"
                assert row["Dispatch_Error__c"] is None, row["Dispatch_Error__c"]


# -- Organizations ---------------------------------------------------------------------------------------


def test_organization_quick_start(published: Playbook) -> None:
    spark = ids(published)["spark"]
    assert published.held("organization", spark) == {
        "external_id": spark,
        "name": "Spark Electric",
        "email": "dispatch@spark.example",
        "phone_number": "(555)010-0352",
        "always_create": True,
        "address": {
            "street_1": "3310 Maple Avenue",
            "city": "San Pedro",
            "state": "CA",
            "postal_code": "90731",
        },
    }
    header(published, "organization", version="v3")


def test_configuration_settings(published: Playbook) -> None:
    spark = ids(published)["spark"]
    account = published.sf.get("Account", spark)
    assert published.held("config", spark) == {
        "external_organization_id": spark,
        "organization_customer": json.loads(account["Dispatch_Customer_Settings__c"]),
        "organization_dispatcher": json.loads(account["Dispatch_Dispatcher_Settings__c"]),
        "organization_reminders": json.loads(account["Dispatch_Reminder_Settings__c"]),
    }
    reminder = published.held("config", spark)["organization_reminders"][0]
    assert reminder["schedule"] == "0 12 * * SUN,MON,TUE,WED,THU,FRI,SAT" and reminder["min_hours_out"] == 15
    header(published, "config", version="v1")


def test_organization_service_area_by_postal_codes(published: Playbook) -> None:
    spark = ids(published)["spark"]
    assert published.held("service_area", spark) == {
        "external_id": spark,  # one area per organization: the organization's id, as the playbook advises
        "external_organization_id": spark,
        "service_area_type": "zcta5",
        "name": "Spark Electric",
        "postal_codes": [{"postal_code": "02446"}, {"postal_code": "02447"}, {"postal_code": "02488"}],
    }
    header(published, "service_area", version="v1")


def test_organization_service_area_by_tracts(published: Playbook) -> None:
    spark = ids(published)["spark"]
    assert published.held("service_area", f"{spark}-tracts") == {
        "external_id": f"{spark}-tracts",
        "external_organization_id": spark,
        "service_area_type": "tract",
        "name": "Spark Electric",
        "census_tracts": ["41017000800", "41017000900", "41017001001"],
    }


def test_organization_service_area_by_canadian_postal_codes(published: Playbook) -> None:
    spark = ids(published)["spark"]
    assert published.held("service_area", f"{spark}-fsaldu") == {
        "external_id": f"{spark}-fsaldu",
        "external_organization_id": spark,
        "service_area_type": "fsaldu",
        "name": "Spark Electric",
        "canadian_postal_codes": ["H7M 6J3", "P9A 8M7"],
    }


def test_org_trades_from_a_multi_select_picklist(published: Playbook) -> None:
    spark = ids(published)["spark"]
    assert published.held("trade_account_org", f"{spark}-trades") == {
        "external_id": f"{spark}-trades",
        "external_organization_id": spark,
        "trades": ["Electrical", "HVAC"],
    }
    header(published, "trade_account_org")  # the sample's header has no version


# -- Appointment types, job sources, the product catalog -------------------------------------------------


def test_appointment_type(published: Playbook) -> None:
    assert published.held("appointment_type", "Installation") == {
        "name": "Installation",
        "is_default": False,
        "default_duration_seconds": 7200,
    }
    header(published, "appointment_type", version="v1")


def test_job_attribution_source(published: Playbook) -> None:
    source = published.find("Dispatch_Job_Source__c", Name="Cold Call")
    assert published.held("job_attribution", source) == {
        "external_id": source,
        "external_organization_id": ids(published)["spark"],
        "name": "Cold Call",
    }
    header(published, "job_attribution", admin=True, version="v1")


def test_billing_item_of_the_product_catalog(published: Playbook) -> None:
    widget = published.find("Product2", Name="Widget")
    assert published.held("billing_item", widget) == {
        "title": "Widget",
        "item_type": "service",
        "description": "Widget Description",
        "external_id": widget,
        "external_organization_id": ids(published)["spark"],
        "price": 200,
        "sku": "widget",
        "active": True,
        "trades": ["Electrical", "HVAC"],
        "price_locked": False,
    }
    header(published, "billing_item", version="v2")


# -- Jobs (DNM / FSM quick starts) and what rides on a job -------------------------------------------------


def test_dnm_customer_id_is_prefixed_with_the_organization(published: Playbook) -> None:
    known = ids(published)
    customer = f"{known['spark']}-{known['jane']}"
    assert published.held("customer", customer) == {
        "first_name": "Jane",
        "last_name": "Doe",
        "external_id": customer,
        "external_organization_id": known["spark"],
        "email": "jane.doe@example.com",
        "phone_numbers": [{"number": "+15550913813", "primary": True, "type": "Mobile"}],
        "home_address": {
            "street_1": "1213 Summer St",
            "city": "Boston",
            "state": "MA",
            "postal_code": "01234",
        },
    }
    header(published, "customer", version="v3")


def test_dnm_job(published: Playbook) -> None:
    known = ids(published)
    assert published.held("job", known["wo"]) == {
        "title": "Replace electrical panel",
        "status": "offered",
        "description": "Panel is 40 years old.\n\n# Accepts *markdown*",
        "external_id": known["wo"],
        "friendly_external_id": "00001001",
        "external_customer_id": f"{known['spark']}-{known['jane']}",
        "external_organization_id": known["spark"],
        "expected_duration": 3600,
        "symptom": "Breaker trips under load",
        "service_fee": 500,
        "service_fee_precollected": False,
        "service_instructions": "Call before arriving",
        "contacts": [
            {
                "first_name": "Jane",
                "last_name": "Doe",
                "primary": True,
                "contact_methods": [
                    {"value": "+15550913813", "method": "phone", "notify": True},
                    {"value": "jane.doe@example.com", "method": "email", "notify": True},
                ],
            }
        ],
        "address": {"street_1": "1213 Summer St", "postal_code": "01234", "city": "Boston", "state": "MA"},
        "service_type": "electrician",
        "custom_fields": {"do_not_survey": "yes", "arrival_type": "range"},
    }
    header(published, "job", version="v3")


def test_job_trades_keyed_by_the_job(published: Playbook) -> None:
    wo = ids(published)["wo"]
    assert published.held("job_trade", wo, sent=("external_job_id",)) == {
        "external_job_id": wo,
        "trades": ["Electrical", "HVAC"],
    }
    header(published, "job_trade")


def test_suggested_times(published: Playbook) -> None:
    wo = ids(published)["wo"]
    assert published.held("suggested_times", wo, sent=("external_job_id",)) == {
        "external_job_id": wo,
        "suggested_times": [
            {"start_time": "2026-12-01T12:00:00+00:00", "end_time": "2026-12-01T16:00:00+00:00"},
            {"start_time": "2026-12-02T12:00:00+00:00", "end_time": "2026-12-02T16:00:00+00:00"},
        ],
    }
    header(published, "suggested_times")


def test_auto_assign_org(published: Playbook) -> None:
    assert published.held_where("auto_assign_org", lambda r: r.get("postal_code") == "01234") == {
        "include_linked_orgs": True,
        "trades": ["Electrical", "HVAC"],
        "postal_code": "01234",
    }
    header(published, "auto_assign_org", version="v3")


def test_custom_form(published: Playbook) -> None:
    wo = ids(published)["wo"]
    assert published.held(
        "custom_form", f"{wo}/wfm_custom_form_panel_checklist", sent=("external_job_id",)
    ) == {
        "external_job_id": wo,
        "form_id": "wfm_custom_form_panel_checklist",
        "form_data": [{"custom_field_1": "permit on file", "custom_field_2": "200A"}],
    }
    header(published, "custom_form")  # the sample's header has no version


def test_job_note(published: Playbook) -> None:
    wo = ids(published)["wo"]
    note = published.held_where("attachment", lambda r: "description" in r, sent=("external_job_id",))
    assert note == {"external_job_id": wo, "description": "Customer asks to use the side door"}


def test_job_photo_is_the_file_body_base64_with_its_name(published: Playbook) -> None:
    wo = ids(published)["wo"]
    photo = published.held_where("attachment", lambda r: "file" in r, sent=("external_job_id",))
    assert photo == {"external_job_id": wo, "file": "iVBORw0KGgogcGFuZWwgcGhvdG8=", "name": "old_panel.png"}
    header(published, "attachment", version="v3")


# -- Billing -----------------------------------------------------------------------------------------------


def test_billing_items_are_created_on_the_fly_with_the_document(published: Playbook) -> None:
    spark = ids(published)["spark"]
    for name in ("Line 1", "Line 2"):
        product = published.find("Product2", Name=name)
        assert published.held("billing_item", product) == {
            "title": name,
            "item_type": "service",
            "external_id": product,
            "external_organization_id": spark,
        }


def test_billing_document_with_its_lines(published: Playbook) -> None:
    known = ids(published)
    line1, line2 = (published.find("Product2", Name=name) for name in ("Line 1", "Line 2"))
    assert published.held("billing_document", f"{known['wo']}-estimate", sent=("external_job_id",)) == {
        "external_id": f"{known['wo']}-estimate",
        "external_job_id": known["wo"],
        "external_organization_id": known["spark"],
        "external_customer_id": f"{known['spark']}-{known['jane']}",
        "customer": {
            "full_name": "Jane Doe",
            "address": {
                "street_1": "1213 Summer St",
                "city": "Boston",
                "state": "MA",
                "postal_code": "01234",
                "country": "United States",
            },
        },
        "doc_type": "Estimate",
        "status": "won",
        "title": "Panel replacement estimate",
        "description": "Parts and labour",
        "discount_amount": 10,
        "skip_customer_signature": True,  # won: the signature form is skipped
        "lines": [  # the canceled line is left out by the children's `where`
            {
                "external_billing_item_id": line1,
                "title": "Line 1",
                "description": "Line 1 Description",
                "qty": 10,
                "price": 1.0,
                "taxable": False,
            },
            {
                "external_billing_item_id": line2,
                "title": "Line 2",
                "description": "Line 2 Description",
                "qty": 10,
                "price": 2.0,
                "taxable": False,
            },
        ],
    }
    header(published, "billing_document", version="v2")


def test_a_draft_estimate_keeps_the_signature_form(playbook: Playbook) -> None:
    wo = ids(playbook)["wo"]
    playbook.publish()
    playbook.sf.update("WorkOrder", wo, {"Estimate_Status__c": "draft"})
    playbook.publish()
    document = playbook.held("billing_document", f"{wo}-estimate")
    assert (document["status"], document["skip_customer_signature"]) == ("draft", False)


def test_a_changed_line_republishes_the_document(playbook: Playbook) -> None:
    wo = ids(playbook)["wo"]
    playbook.publish()
    line = playbook.find("WorkOrderLineItem", LineItemNumber="00002")
    playbook.sf.update("WorkOrderLineItem", line, {"Quantity": 3})
    report = playbook.publish()
    assert report.changed >= 1
    lines = playbook.held("billing_document", f"{wo}-estimate")["lines"]
    assert [item["qty"] for item in lines] == [10, 3]


def test_the_flag_is_what_publishes(playbook: Playbook) -> None:
    """A product without Dispatch_Send__c (Line 1) is sent only as a line's billing item, never on its own."""
    playbook.sf.update("WorkOrder", ids(playbook)["wo"], {"Dispatch_Send__c": None})
    playbook.publish()
    line1 = playbook.find("Product2", Name="Line 1")
    assert line1 not in playbook.dispatch.records("billing_item")
    assert playbook.find("Product2", Name="Widget") in playbook.dispatch.records("billing_item")

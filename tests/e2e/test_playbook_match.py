"""The playbook's "Quick Starts > DNM > Match > To Dispatch > Jobs" use case: a Case sent as an `offer` v2
(nested customer, contacts, address, trades, equipment, custom fields) with its `ui_options` beside header
and record, then `auto_assign_org` to run the match.

Same set-up as test_playbook_use_cases.py: the playbook org published through agent/in over real sockets,
what the Dispatch emulator holds compared with the playbook sample, the envelope rebuilt from the outbox.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from sync.outbound.publisher import backfill_all
from sync.store.models import OutboxBatch
from tests.e2e.test_playbook_harness import Playbook, header, ids, playbook, published

__all__ = ["playbook", "published"]  # the fixtures, imported for pytest

UI_OPTIONS = {
    "show_decline": True,
    "accept_title": "Accept",
    "decline_title": "Decline",
    "reject_reasons": [
        "wrong_area|I don't service this address|true|false",
        "wrong_trade|I don't do this type of work|false|true",
        "no_availability|I can't do this job in time|false|false",
        "other|Other|true|true",
    ],
}


def _case(pb: Playbook) -> str:
    return pb.find("Case", CaseNumber="00002001")


def _offer(case: str, jane: str) -> dict[str, Any]:
    """The sample's offer record with the playbook org's values."""
    return {
        "customer": {
            "first_name": "Jane",
            "last_name": "Doe",
            "external_id": jane,
            "email": "jane.doe@example.com",
            "phone_numbers": [{"number": "+15550913813", "primary": True, "type": "Mobile"}],
            "home_address": {
                "street_1": "3913 Ford Street",
                "city": "Revere",
                "state": "MA",
                "postal_code": "02151",
                "country": "United States",
            },
        },
        "title": "No heat upstairs",
        "status": "unassigned",
        "description": "Furnace runs, no heat upstairs.\n\n# Accepts *markdown*",
        "external_id": case,
        "symptom": "No heat upstairs",
        "service_fee": 500,
        "service_fee_precollected": False,
        "service_instructions": "Ring twice",
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
        "address": {
            "street_1": "1213 Summer St",
            "street_2": "apt. 1",
            "postal_code": "02151",
            "city": "Boston",
            "state": "MA",
            "country": "United States",
        },
        "service_type": "hvac",
        "trades": ["HVAC"],
        "equipment_descriptions": [
            {
                "manufacturer": "Acme",
                "model_number": "500",
                "serial_number": "01024",
                "installation_date": "2017-10-21T00:00:00Z",
                "equipment_type": "hvac",
            }
        ],
        "custom_fields": {"do_not_survey": "yes", "arrival_type": "range"},
    }


def test_match_offer_is_held_in_the_samples_shape_with_its_ui_options(published: Playbook) -> None:
    case = _case(published)
    held = published.held("offer", case)
    assert {key: value for key, value in held.items() if key != "ui_options"} == _offer(
        case, ids(published)["jane"]
    )
    assert held["ui_options"] == UI_OPTIONS  # kept on the offer, where Dispatch's offered event reads it


def test_match_offer_envelope_carries_ui_options_beside_header_and_record(published: Playbook) -> None:
    case = _case(published)
    [sent] = published.wire("offer")
    assert sent == {
        "header": {"record_type": "offer", "version": "v2"},
        "record": _offer(case, ids(published)["jane"]),
        "ui_options": UI_OPTIONS,
    }


def test_match_auto_assign_org_names_the_offer_and_follows_it(published: Playbook) -> None:
    case = _case(published)
    assert published.held("auto_assign_org", case) == {
        "external_id": case,
        "include_linked_orgs": True,
        "trades": ["HVAC"],
        "postal_code": "02151",
    }
    header(published, "auto_assign_org", version="v3")
    with Session(published.ctx.engine) as session:
        sent = [
            (item["record_type"], item["record"].get("external_id"))
            for batch in session.exec(select(OutboxBatch).order_by(OutboxBatch.created_at)).all()
            for item in batch.payload
        ]
    assert sent.index(("offer", case)) < sent.index(("auto_assign_org", case))


def test_the_case_is_confirmed_by_the_offers_ack(published: Playbook) -> None:
    case = published.sf.get("Case", _case(published))
    assert case["Dispatch_Last_Synced__c"] is not None and case["Dispatch_Error__c"] is None


def test_a_closed_case_completes_its_offer(playbook: Playbook) -> None:
    case = _case(playbook)
    playbook.publish()
    playbook.sf.update("Case", case, {"Status": "Closed"})
    playbook.publish()
    assert playbook.dispatch.records("offer")[case]["status"] == "complete"


def test_a_csv_first_load_sends_the_offer_as_json_with_its_ui_options(playbook: Playbook) -> None:
    """CSV has no column for a key beside header and record: the offer goes as a JSON request."""
    case = _case(playbook)
    backfill_all(playbook.ctx, encoding="csv")
    assert playbook.dispatch.wait_idle(10)
    with Session(playbook.ctx.engine) as session:
        assert {batch.encoding for batch in session.exec(select(OutboxBatch)).all()} == {"csv"}
    held = playbook.dispatch.records("offer")[case]
    assert held["ui_options"] == UI_OPTIONS and held["trades"] == ["HVAC"]
    assert playbook.dispatch.records("auto_assign_org")[case]["postal_code"] == "02151"

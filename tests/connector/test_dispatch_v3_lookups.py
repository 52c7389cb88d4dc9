"""Dispatch look-ups (connector/dispatch_v3/lookups.py) against the v3 emulator over real sockets: the
playbook's samples reproduced, the searches' filters, inputs refused before anything is sent, the token's
renewal, faults and accounting; plus lenient reading of answers the playbook does not show."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from connector.dispatch_v3.client import DispatchV3Client, DispatchV3Unavailable
from connector.dispatch_v3.lookups import FreeSlot, Lookups, wire_time
from connector.errors import LookupRefused
from connector.mapping import DEFAULT_MAPPING, MappingFileError, load_mapping
from connector.sandbox.dispatch_v3 import DispatchV3Emulator
from tests.connector.conftest import DispatchFakeClock
from tests.connector.dispatch_v3_lookup_seed import (
    BLOCK_TIME_RESPONSE,
    DURATION,
    END,
    MATCH_ORGS_RESPONSE,
    START,
    TECH_A,
    TECH_B,
    WHITESPACE_RESPONSE,
    seed_playbook_schedule,
)

CLIENT_ID, CLIENT_SECRET = "lookup-client", "lookup-secret"  # throwaway test values
EDT = timezone(timedelta(hours=-4))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def v3(dispatch_clock: DispatchFakeClock) -> Iterator[DispatchV3Emulator]:
    with DispatchV3Emulator(CLIENT_ID, CLIENT_SECRET, clock=dispatch_clock) as emulator:
        yield emulator


@pytest.fixture
def client(v3: DispatchV3Emulator, dispatch_clock: DispatchFakeClock) -> DispatchV3Client:
    return DispatchV3Client(v3.base_url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.0, clock=dispatch_clock)


@pytest.fixture
def lookups(client: DispatchV3Client) -> Lookups:
    return Lookups(client)


# -- the playbook's samples -----------------------------------------------------------------------


def test_whitespace_answers_the_playbooks_two_technician_sample(
    v3: DispatchV3Emulator, client: DispatchV3Client
) -> None:
    seed_playbook_schedule(v3)
    params = {
        "user_external_id[]": [TECH_A, TECH_B],
        "start_time": START,
        "end_time": END,
        "duration": DURATION,
    }
    assert client.get("/v1/availability/slots", params) == WHITESPACE_RESPONSE


def test_whitespace_is_read_into_free_slots(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    seed_playbook_schedule(v3)
    found = lookups.availability_slots([TECH_A, TECH_B], at(START), at(END), DURATION)
    assert found.problems == ()
    assert found.items[0] == FreeSlot(
        3231, TECH_A, at("2022-10-24T12:00:00+00:00"), at("2022-10-24T13:00:00+00:00")
    )
    assert [(s.external_id, wire_time(s.start), wire_time(s.end)) for s in found] == [
        (s["external_id"], s["start_time"], s["end_time"]) for s in WHITESPACE_RESPONSE["slots"]
    ]


def test_a_longer_duration_leaves_out_the_short_gaps(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    seed_playbook_schedule(v3)
    found = lookups.availability_slots([TECH_A, TECH_B], at(START), at(END), 90)
    assert [(s.user_id, wire_time(s.start)) for s in found] == [
        (3231, "2022-10-24T17:30:00Z"),
        (5298, "2022-10-24T12:00:00Z"),
    ]


def test_block_times_answer_the_playbooks_sample(v3: DispatchV3Emulator, client: DispatchV3Client) -> None:
    seed_playbook_schedule(v3)
    params = {
        "user_external_id[]": [TECH_A, TECH_B],
        "start_time": START,
        "end_time": END,
        "duration": DURATION,
    }
    assert client.get("/v1/availability/schedule", params) == BLOCK_TIME_RESPONSE


def test_block_times_are_read_into_work_days(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    seed_playbook_schedule(v3)
    days = lookups.availability_schedule([TECH_A, TECH_B], at(START), at(END)).items
    assert [(d.user_id, wire_time(d.day_start), len(d.blocks)) for d in days] == [
        (3231, "2022-10-24T12:00:00Z", 1),
        (3231, "2022-10-25T12:00:00Z", 0),
        (5298, "2022-10-24T12:00:00Z", 1),
        (5298, "2022-10-25T12:00:00Z", 0),
    ]
    assert days[0].blocks[0].data == {} and days[2].blocks[0].data["customer_full_name"] == "Ron Sher"


def test_match_orgs_answers_the_playbooks_sample(v3: DispatchV3Emulator, client: DispatchV3Client) -> None:
    v3.add_provider(["org_external_id"], "Mile High HVAC", postal_codes=["80207"], id=200383)
    assert client.get("/v3/search/oms", {"postal_code": "80207"}) == MATCH_ORGS_RESPONSE


# -- searches -------------------------------------------------------------------------------------


def test_match_orgs_finds_the_providers_serving_a_postal_code(
    v3: DispatchV3Emulator, lookups: Lookups
) -> None:
    hvac = v3.add_provider(
        ["0015g00000AAAA1AAA"], "Denver Air", postal_codes=["80207", "80208"], trades=["HVAC"]
    )
    plumbing = v3.add_provider(
        ["0015g00000AAAA2AAA"], "Denver Pipes", postal_codes=["80207"], trades=["plumbing"]
    )
    v3.add_provider(["0015g00000AAAA3AAA"], "Boston Air", postal_codes=["02446"], trades=["hvac"])
    found = lookups.match_orgs("80207")
    assert [m.organization_id for m in found] == [hvac["id"], plumbing["id"]]
    assert found.items[0].external_ids == ("0015g00000AAAA1AAA",)
    assert [m.organization_id for m in lookups.match_orgs("80207", trades=["hvac"])] == [hvac["id"]]
    assert len(lookups.match_orgs("99501")) == 0
    assert v3.counts["search.oms"] == 3


def test_match_orgs_passes_other_parameters_through(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    v3.add_provider(["p1"], postal_codes=["80207"])
    assert len(lookups.match_orgs("80207", service_type="GEN", radius=25)) == 1  # unknown ones are ignored


def test_match_technicians_with_a_duration_and_a_window(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    """The playbook's Match Technicians request: technicians working 08:00-18:00 Pacific every day; the
    window ends 09:00 on the 19th, too short for 90 minutes, so the 15th to the 18th are found."""
    org = v3.add_provider(["275239"], "Sargent Co", id=784868)
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    common: dict[str, Any] = {
        "timezone": "America/Los_Angeles",
        "work_days": every_day,
        "hours": ["08:00", "18:00"],
    }
    v3.add_technician(
        "WinthropSargent98406", "Winthrop Sargent", postal_codes=["98004"], trades=["hvac", "cooling"],
        organization=org["id"], miles_from_start=39.370613, miles_to_end=41.077026, id=13136628, **common,
    )  # fmt: skip
    v3.add_technician("plumber-1", "Pat Plumber", postal_codes=["98004"], trades=["plumbing"], **common)
    v3.add_technician("far-away", "Fay Away", postal_codes=["10001"], trades=["hvac", "cooling"], **common)
    busy = v3.add_technician("busy", "Bo Busy", postal_codes=["98004"], trades=["hvac", "cooling"], **common)
    for day in range(15, 20):  # free only 08:00-09:00 each day
        v3.book_technician(busy["id"], f"2020-08-{day}T09:00:00-07:00", f"2020-08-{day}T18:00:00-07:00")
    found = lookups.match_technicians(
        "98004", "3000 Landerholm Cir SE, Bellevue, WA 98007", 90,
        at("2020-08-15T00:00:00-04:00"), at("2020-08-19T12:00:00-04:00"), trades=["hvac", "cooling"],
    )  # fmt: skip
    assert [m.full_name for m in found] == ["Winthrop Sargent"]
    match = found.items[0]
    assert (match.user_id, match.external_ids) == (13136628, ("WinthropSargent98406",))
    assert (match.organization_id, match.organization_external_ids) == (784868, ("275239",))
    assert [s.start.isoformat() for s in match.slots] == [
        f"2020-08-{d}T08:00:00-07:00" for d in (15, 16, 17, 18)
    ]
    assert match.slots[0].end.isoformat() == "2020-08-15T18:00:00-07:00"
    assert (match.slots[0].ranking_score, match.slots[0].miles_from_start) == (0.0, 39.370613)


def test_match_technicians_sends_the_playbooks_parameters(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    v3.add_technician("t1", postal_codes=["98004"])
    lookups.match_technicians(
        "98004", "3000 Landerholm Cir SE,  Bellevue, WA 98007", 90,
        at("2020-08-17T00:00:00-04:00"), at("2020-08-19T12:00:00-04:00"), trades=["hvac", "cooling"],
    )  # fmt: skip
    assert v3.counts["search.contractors"] == 1


# -- refused before sending -----------------------------------------------------------------------


@pytest.mark.parametrize("postal_code", ["1234", "ABCDE", "123456", "02446-12", "W1A 0AX", "", None, 2446])
def test_a_malformed_or_unknown_postal_code_is_refused(
    v3: DispatchV3Emulator, lookups: Lookups, postal_code: Any
) -> None:
    with pytest.raises(LookupRefused, match="postal code"):
        lookups.match_orgs(postal_code)
    assert v3.counts == {}  # not even a token was asked for


def test_zip_plus_4_is_searched_by_its_first_five(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    v3.add_provider(["p1"], postal_codes=["80207"])
    assert len(lookups.match_orgs(" 80207-1234 ")) == 1


def test_a_canadian_postal_code_is_searched_in_capitals(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    v3.add_provider(["p1"], postal_codes=["K1A 0B1"])
    assert len(lookups.match_orgs("k1a 0b1")) == 1


def test_an_end_before_the_start_is_refused(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    with pytest.raises(LookupRefused, match="end time 2022-10-24T04:00:00Z is not after start time"):
        lookups.availability_slots([TECH_A], at(END), at(START), 60)
    with pytest.raises(LookupRefused, match="not after"):
        lookups.availability_schedule([TECH_A], at(START), at(START))
    assert v3.counts == {}


@pytest.mark.parametrize("duration", [0, -30, True, 1.5])
def test_a_duration_that_is_not_a_positive_number_of_minutes_is_refused(
    lookups: Lookups, duration: Any
) -> None:
    with pytest.raises(LookupRefused, match="duration must be a whole number of minutes above 0"):
        lookups.match_technicians("98004", "1 Main St", duration, at(START), at(END))


def test_a_duration_longer_than_the_window_is_refused(lookups: Lookups) -> None:
    with pytest.raises(LookupRefused, match="does not fit in the window"):
        lookups.availability_slots([TECH_A], at("2022-10-24T12:00:00Z"), at("2022-10-24T12:30:00Z"), 60)


def test_a_time_without_a_zone_is_refused(lookups: Lookups) -> None:
    with pytest.raises(LookupRefused, match="has no time zone"):
        lookups.availability_slots([TECH_A], datetime(2022, 10, 24), datetime(2022, 10, 25), 60)


def test_no_technician_or_an_empty_address_is_refused(lookups: Lookups) -> None:
    with pytest.raises(LookupRefused, match="user external ids"):
        lookups.availability_slots([], at(START), at(END), 60)
    with pytest.raises(LookupRefused, match="user external ids"):
        lookups.availability_schedule([TECH_A, " "], at(START), at(END))
    with pytest.raises(LookupRefused, match="address is required"):
        lookups.match_technicians("98004", "  ", 60, at(START), at(END))


def test_the_emulator_answers_400_naming_a_missing_parameter(
    v3: DispatchV3Emulator, client: DispatchV3Client
) -> None:
    token = client.token()
    answer = requests.get(
        f"{v3.base_url}/v3/search/contractors",
        params={"postal_code": "98004", "availability_start_time": START, "availability_end_time": END},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "appointment_duration_minutes must be a positive whole number of minutes, got ''"
    }


# -- token, faults, accounting --------------------------------------------------------------------


def test_an_expired_token_is_renewed_and_the_look_up_retried(
    v3: DispatchV3Emulator, client: DispatchV3Client
) -> None:
    seed_playbook_schedule(v3)
    lookups = Lookups(client)
    assert len(lookups.availability_slots([TECH_A], at(START), at(END), 60)) == 2
    v3.expire_tokens()
    assert len(lookups.availability_slots([TECH_A], at(START), at(END), 60)) == 2
    assert client.token_requests == 2
    assert v3.counts == {"token": 2, "availability.slots": 3, "unauthorized": 1}


def test_a_failing_endpoint_is_retried_then_reported(
    v3: DispatchV3Emulator, client: DispatchV3Client
) -> None:
    client.max_attempts = 3
    v3.set_faults("search.oms", error_rate=1.0, error_status=503)
    with pytest.raises(DispatchV3Unavailable, match="GET /v3/search/oms still failing after 3 attempts"):
        Lookups(client).match_orgs("80207")
    assert v3.counts["search.oms"] == 3


def test_look_ups_are_counted_by_endpoint(v3: DispatchV3Emulator, lookups: Lookups) -> None:
    seed_playbook_schedule(v3)
    lookups.match_orgs("02446")
    lookups.match_technicians("02446", "1 Main St, Brookline, MA 02446", 60, at(START), at(END))
    lookups.availability_slots([TECH_A], at(START), at(END), 60)
    lookups.availability_schedule([TECH_A], at(START), at(END))
    names = ("search.oms", "search.contractors", "availability.slots", "availability.schedule")
    assert v3.counts == {"token": 1, **dict.fromkeys(names, 1)}


# -- control API ----------------------------------------------------------------------------------


def test_technicians_and_providers_are_seeded_through_the_control_api(v3: DispatchV3Emulator) -> None:
    def post(action: str, **body: Any) -> requests.Response:
        return requests.post(f"{v3.base_url}/control/{action}", json=body, timeout=5)

    provider = post("add_provider", external_ids=["acct-1"], name="Acme", postal_codes=["62701"]).json()[
        "result"
    ]
    tech = post("add_technician", external_id="u-1", organization="acct-1", hours=["07:00", "15:30"]).json()[
        "result"
    ]
    assert tech["organization_id"] == provider["id"] and tech["hours"] == ["07:00", "15:30"]
    booked = post(
        "book_technician", technician="u-1", start="2022-10-24T12:00:00Z", end="2022-10-24T13:00:00Z"
    )
    assert booked.json()["result"]["booked"] == [
        {"start": "2022-10-24T12:00:00Z", "end": "2022-10-24T13:00:00Z"}
    ]
    assert [
        t["external_id"] for t in requests.get(f"{v3.base_url}/control/technicians", timeout=5).json()
    ] == ["u-1"]
    providers = requests.get(f"{v3.base_url}/control/providers", timeout=5).json()
    assert providers[0]["postal_codes"] == ["62701"]
    assert post("add_technician", external_id="u-1").status_code == 400  # taken
    assert post("book_technician", technician="nobody", start=START, end=END).status_code == 404
    assert post("add_technician", external_id="u-2", timezone="Mars/Olympus").status_code == 400


def test_a_provider_made_by_a_work_order_gets_the_service_area(v3: DispatchV3Emulator) -> None:
    first = v3.add_provider(["acct-1"], "Acme")
    again = v3.add_provider(["acct-1", "acct-1b"], postal_codes=["62701"], trades=["Electrical"])
    assert again["id"] == first["id"] and again["external_ids"] == ["acct-1", "acct-1b"]
    assert (again["name"], again["trades"]) == ("Acme", ["electrical"])


# -- lenient reading ------------------------------------------------------------------------------


class Canned:
    """A client that answers every GET with one body."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer

    def get(self, path: str, params: Any = None) -> dict[str, Any]:
        return self.answer


def test_unreadable_entries_are_left_out_and_described() -> None:
    answer = {
        "slots": [
            "nonsense",
            {"entity_id": "7", "external_id": "u", "start_time": "2022-10-24T12:00:00Z", "end_time": "later"},
            {
                "entity_id": 7,
                "external_id": "u",
                "start_time": "2022-10-24T12:00:00",
                "end_time": "2022-10-24T13:00Z",
            },
        ]
    }
    found = Lookups(Canned(answer)).availability_slots(["u"], at(START), at(END), 60)
    assert found.items == (
        FreeSlot(7, "u", datetime(2022, 10, 24, 12, tzinfo=UTC), datetime(2022, 10, 24, 13, tzinfo=UTC)),
    )
    assert found.problems == (
        "slots[0]: not an object (str); left out",
        "slots[1]: end_time 'later' is not an ISO 8601 time; left out",
    )


def test_an_answer_without_its_list_is_read_as_none() -> None:
    found = Lookups(Canned({"error": "?"})).match_orgs("80207")
    assert found.items == () and found.problems == (
        "the answer has no 'account_organizations' list; read as none",
    )


def test_org_scores_and_odd_external_ids_are_read_leniently() -> None:
    answer = {"account_organizations": [{"organization_id": "12", "external_ids": "solo", "score": 0.5}, {}]}
    first, second = Lookups(Canned(answer)).match_orgs("80207").items
    assert (first.organization_id, first.external_ids, first.ranking_score) == (12, ("solo",), 0.5)
    assert (second.organization_id, second.external_ids, second.ranking_score) == (None, (), None)


def test_wire_times_keep_their_offset() -> None:
    assert wire_time(datetime(2020, 8, 15, tzinfo=EDT)) == "2020-08-15T00:00:00-04:00"
    assert wire_time(datetime(2022, 10, 24, 4, 0, 0, 123, tzinfo=UTC)) == "2022-10-24T04:00:00Z"


# -- the mapping's lookups block ------------------------------------------------------------------


def test_the_bundled_mappings_say_where_a_work_order_keeps_its_place() -> None:
    for name in ("salesforce_default.yaml", "salesforce_dispatch_v3.yaml"):
        spec = load_mapping(DEFAULT_MAPPING.parent / name).object("WorkOrder").lookups
        assert spec is not None
        assert (spec.postal_code, spec.street, spec.provider_field) == (
            "PostalCode",
            "Street",
            "Dispatch_Service_Provider__c",
        )
        assert spec.trades is None and spec.duration_minutes is None  # the bundled org has no such fields


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"street": "Street"}, "lookups.postal_code: Field required"),
        ({"postal_code": "Postal Code"}, "'Postal Code' is not a CRM field name"),
        (
            {"postal_code": "PostalCode", "provider_field": "Account.Provider__c"},
            "must be a field of the object",
        ),
        (
            {"postal_code": "PostalCode", "radius": "Radius__c"},
            "lookups.radius: Extra inputs are not permitted",
        ),
    ],
)
def test_a_wrong_lookups_block_is_refused_at_load(
    tmp_path: Path, block: dict[str, Any], problem: str
) -> None:
    mapping = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))
    mapping["objects"]["WorkOrder"]["lookups"] = block
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    with pytest.raises(MappingFileError, match=re.escape(problem)) as info:
        load_mapping(path)
    assert str(path) in str(info.value) and "objects.WorkOrder.lookups" in str(info.value)

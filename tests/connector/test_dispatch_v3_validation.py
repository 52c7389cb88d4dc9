"""The Work Order rules (connector/dispatch_v3/validation.py), one case per rule, on the guide's own example.

Every case starts from the example under "# The Work Order Document" in the migration guide, which must
validate clean, changes one thing, and names the path and a piece of the message it expects.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from connector.dispatch_v3 import validation
from connector.dispatch_v3.validation import (
    CA_PROVINCES,
    JOB_STATUSES,
    US_STATES,
    Violation,
    normalize_phone,
    normalize_work_order,
    validate_work_order,
)
from tests.connector.dispatch_v3_seed import work_order_document

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_DROP = object()


def _steps(path: str) -> list[str | int]:
    return [int(name or index) if (name or index).isdigit() else name for name, index in _STEP.findall(path)]


def change(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting each path (`contacts__0__primary`) to its value; one past the end appends."""

    def apply(doc: dict[str, Any]) -> None:
        for spelled, value in changes.items():
            *parents, last = _steps(spelled.replace("__", "."))
            holder: Any = doc
            for step in parents:
                holder = holder[step]
            if value is _DROP:
                del holder[last]
            elif isinstance(holder, list) and last == len(holder):
                holder.append(value)
            else:
                holder[last] = value

    return apply


def changed(mutation: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(work_order_document())
    mutation(doc)
    return doc


SECOND_PROVIDER = {"name": "Ann's Pipes", "external_ids": ["DDD000"]}
PHONE = "contacts[0].contact_methods[0].value"
EMAIL = "contacts[0].contact_methods[1].value"

VALID = [
    pytest.param(change(), id="seed example"),
    pytest.param(change(location__country="US"), id="country US"),
    pytest.param(
        change(location__country="CA", location__state="ON", location__postal_code="M5V 3L9"), id="country CA"
    ),
    pytest.param(change(location__state="ON", location__postal_code="M5V3L9"), id="canadian postal no space"),
    pytest.param(change(location__state="PR", location__postal_code="00901"), id="us territory"),
    pytest.param(change(location__state="DC", location__postal_code="20001"), id="district of columbia"),
    pytest.param(change(location__postal_code=_DROP, location__state=_DROP), id="no state or postal code"),
    pytest.param(change(location__timezone="America/Toronto"), id="timezone"),
    pytest.param(change(location__timezone=_DROP), id="timezone omitted"),
    pytest.param(change(workflow="sales"), id="workflow sales"),
    pytest.param(
        change(orchestration="round_robin", service_providers__1=SECOND_PROVIDER),
        id="round robin two providers",
    ),
    pytest.param(change(orchestration="jump_ball"), id="jump ball one provider"),
    pytest.param(change(orchestration=_DROP, status=_DROP), id="orchestration and status omitted"),
    pytest.param(change(**{PHONE: "tel:+1-555-123-4567"}), id="phone as tel uri"),
    pytest.param(change(**{PHONE: "+1-555-123-4567"}), id="phone as rfc 3966 global number"),
    pytest.param(change(contacts__0__contact_methods__0__preferred=False), id="no preferred phone"),
    pytest.param(
        change(contacts__1={"first_name": "Second", "primary": False}), id="second non-primary contact"
    ),
    pytest.param(
        change(contacts__0__billing_address={"street_1": "1 Main St", "city": "Halifax"}), id="billing"
    ),
    pytest.param(change(appointment_windows=[]), id="no appointment windows"),
    pytest.param(
        change(appointment_windows__0__end_time="2017-01-01T03:00:00-05:00"), id="window end with an offset"
    ),
    pytest.param(change(service_providers__0={"id": 123}), id="provider by id only"),
    pytest.param(change(brand_id=7), id="brand id"),
]

INVALID = [
    # locations
    pytest.param(change(location=_DROP), "location", "required", id="location missing"),
    pytest.param(change(location__street_1=_DROP), "location.street_1", "required", id="street_1 missing"),
    pytest.param(change(location__city="  "), "location.city", "non-empty", id="city blank"),
    pytest.param(
        change(service_providers__0__address__street_1=""),
        "service_providers[0].address.street_1",
        "required",
        id="provider address street_1",
    ),
    pytest.param(
        change(contacts__0__billing_address={"street_1": "1 Main St"}),
        "contacts[0].billing_address.city",
        "required",
        id="billing address city",
    ),
    pytest.param(change(location__country="MX"), "location.country", "US or CA", id="country outside US/CA"),
    pytest.param(change(location__state="XX"), "location.state", "two-letter code", id="state unknown"),
    pytest.param(change(location__state="ma"), "location.state", "got 'ma'", id="state lower case"),
    pytest.param(
        change(location__state="ON", location__country="US", location__postal_code="M5V 3L9"),
        "location.state",
        "'ON' is in Canada, but country is 'US'",
        id="state not in country",
    ),
    pytest.param(
        change(location__postal_code="1234"), "location.postal_code", "5-digit", id="postal too short"
    ),
    pytest.param(
        change(location__postal_code="02115-1234"),
        "location.postal_code",
        "ZIP+4 is not accepted",
        id="zip+4",
    ),
    pytest.param(
        change(location__state="ON", location__postal_code="m5v 3l9"),
        "location.postal_code",
        "A1A 1A1",
        id="canadian postal lower case",
    ),
    pytest.param(
        change(location__state="ON", location__postal_code="D5V 3L9"),
        "location.postal_code",
        "A1A 1A1",
        id="canadian postal letter D",
    ),
    pytest.param(
        change(location__postal_code=2115), "location.postal_code", "as a string", id="postal number"
    ),
    pytest.param(
        change(location__postal_code="M5V 3L9"),
        "location.postal_code",
        "a Canadian postal code, but state 'MA' is in the US",
        id="postal not in state's country",
    ),
    pytest.param(
        change(location__state=_DROP, location__country="CA"),
        "location.postal_code",
        "a US ZIP code, but country is 'CA'",
        id="postal not in country",
    ),
    pytest.param(change(location__timezone="EST5"), "location.timezone", "IANA", id="timezone unknown"),
    pytest.param(change(location__timezone="Eastern Time"), "location.timezone", "IANA", id="timezone words"),
    # the work order
    pytest.param(change(title=_DROP), "title", "required", id="title missing"),
    pytest.param(change(title=""), "title", "non-empty", id="title empty"),
    pytest.param(change(title=42), "title", "got 42", id="title not a string"),
    pytest.param(change(workflow="repair"), "workflow", "service, sales", id="workflow unknown"),
    pytest.param(
        change(orchestration="round robin"),
        "orchestration",
        "direct, round_robin, jump_ball",
        id="orchestration",
    ),
    pytest.param(change(status="accepted"), "status", "offered, unscheduled", id="status unknown"),
    pytest.param(change(brand_id="7"), "brand_id", "integer", id="brand id not an integer"),
    pytest.param(change(external_ids="AAA123"), "external_ids", "list", id="external_ids not a list"),
    pytest.param(
        change(external_ids=["AAA", ""]), "external_ids[1]", "non-empty", id="external_ids empty one"
    ),
    pytest.param(change(external_ids=[123]), "external_ids[0]", "string", id="external_ids number"),
    pytest.param(
        change(contacts__0__external_ids=[" "]), "contacts[0].external_ids[0]", "non-empty", id="contact ids"
    ),
    # appointment windows
    pytest.param(
        change(appointment_windows__0__end_time="2017-01-01T05:00:00Z"),
        "appointment_windows[0].end_time",
        "later than start_time",
        id="window ends at its start",
    ),
    pytest.param(
        change(appointment_windows__1__start_time="tomorrow"),
        "appointment_windows[1].start_time",
        "ISO 8601",
        id="window start unreadable",
    ),
    pytest.param(
        change(appointment_windows__0__start_time="2017-01-01T05:00:00"),
        "appointment_windows[0].start_time",
        "offset",
        id="window start without offset",
    ),
    pytest.param(
        change(appointment_windows__0__end_time=_DROP),
        "appointment_windows[0].end_time",
        "required",
        id="window end missing",
    ),
    pytest.param(change(appointment_windows={}), "appointment_windows", "list", id="windows not a list"),
    # contacts
    pytest.param(change(contacts=_DROP), "contacts", "at least one contact", id="contacts missing"),
    pytest.param(change(contacts=[]), "contacts", "non-empty", id="contacts empty"),
    pytest.param(change(contacts__0__primary=False), "contacts", "got none", id="no primary contact"),
    pytest.param(
        change(contacts__1={"first_name": "Other", "primary": True}),
        "contacts",
        "got 2 (contacts[0], contacts[1])",
        id="two primary contacts",
    ),
    pytest.param(
        change(contacts__0__primary="yes"), "contacts[0].primary", "true or false", id="primary text"
    ),
    pytest.param(
        change(
            contacts__0__contact_methods__2={"method": "email", "value": "b@example.com", "preferred": True}
        ),
        "contacts[0].contact_methods",
        "at most one preferred email",
        id="two preferred emails",
    ),
    pytest.param(
        change(
            contacts__0__contact_methods__2={"method": "phone", "value": "+15550000000", "preferred": True}
        ),
        "contacts[0].contact_methods",
        "at most one preferred phone",
        id="two preferred phones",
    ),
    pytest.param(
        change(contacts__0__contact_methods__0__method="fax"),
        "contacts[0].contact_methods[0].method",
        "phone, email",
        id="method unknown",
    ),
    pytest.param(change(**{EMAIL: "testy at widgets"}), EMAIL, "email address", id="email malformed"),
    pytest.param(change(**{EMAIL: _DROP}), EMAIL, "required", id="contact method value missing"),
    pytest.param(
        change(**{PHONE: "555-123-4567"}),
        PHONE,
        "normalize_work_order rewrites it as '+15551234567'",
        id="phone",
    ),
    pytest.param(change(**{PHONE: "1-800-FLOWERS"}), PHONE, "only digits", id="phone with letters"),
    pytest.param(change(**{PHONE: "+1555123"}), PHONE, "10 digits after the 1", id="phone too few digits"),
    pytest.param(change(**{PHONE: "tel:+1-555-123-4567;ext=12"}), PHONE, "ext", id="phone extension"),
    # service providers
    pytest.param(
        change(service_providers__1=SECOND_PROVIDER),
        "service_providers",
        "exactly one service provider under direct",
        id="direct with two providers",
    ),
    pytest.param(
        change(orchestration="jump_ball", service_providers=[]),
        "service_providers",
        "at least one",
        id="jump ball without providers",
    ),
    pytest.param(change(service_providers=_DROP), "service_providers", "required", id="providers missing"),
    pytest.param(
        change(service_providers__0__phone_number="call Joe"),
        "service_providers[0].phone_number",
        "phone number",
        id="provider phone",
    ),
    pytest.param(
        change(service_providers__0__email="joe@"), "service_providers[0].email", "email", id="provider email"
    ),
    pytest.param(
        change(service_providers__0__id="123"), "service_providers[0].id", "integer", id="provider id"
    ),
    pytest.param(
        change(service_providers__0={"email": "joe@joesplumbing.com"}),
        "service_providers[0]",
        "id, external_ids or name",
        id="provider unidentifiable",
    ),
]


def test_the_guides_work_order_example_validates_clean() -> None:
    assert validate_work_order(work_order_document()) == []


@pytest.mark.parametrize("mutation", VALID)
def test_valid_variant(mutation: Callable[[dict[str, Any]], None]) -> None:
    assert validate_work_order(changed(mutation)) == []


@pytest.mark.parametrize(("mutation", "path", "fragment"), INVALID)
def test_invalid_variant(mutation: Callable[[dict[str, Any]], None], path: str, fragment: str) -> None:
    violations = validate_work_order(changed(mutation))
    assert any(v.path == path and fragment in v.message for v in violations), violations


@pytest.mark.parametrize("status", JOB_STATUSES)
def test_every_job_status_is_a_valid_starting_status(status: str) -> None:
    assert validate_work_order(changed(change(status=status))) == []


@pytest.mark.parametrize("state", sorted(US_STATES | CA_PROVINCES))
def test_every_state_and_province_code_is_accepted(state: str) -> None:
    postal = "M5V 3L9" if state in CA_PROVINCES else "02115"
    assert validate_work_order(changed(change(location__state=state, location__postal_code=postal))) == []


def test_the_state_lists_are_the_real_ones() -> None:
    assert len(US_STATES) == 56  # 50 states, DC, AS GU MP PR VI
    assert len(CA_PROVINCES) == 13  # 10 provinces, 3 territories


def test_message_says_what_is_wrong_and_what_is_allowed() -> None:
    violations = validate_work_order(changed(change(location__postal_code="1234")))
    assert violations == [
        Violation(
            "location.postal_code",
            "must be a 5-digit US ZIP code or a 6-character Canadian postal code "
            "(A1A 1A1 or A1A1A1, capitals), got '1234'",
        )
    ]


def test_missing_tz_database_is_said_not_taken_for_a_bad_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_time_zones", frozenset)
    violations = validate_work_order(work_order_document())
    assert [v.path for v in violations] == ["location.timezone", "service_providers[0].address.timezone"]
    assert "no IANA time zone database" in violations[0].message


def test_this_machine_has_a_tz_database() -> None:
    assert "America/New_York" in validation._time_zones()


@pytest.mark.parametrize("junk", [[], "text", None, 3])
def test_a_document_that_is_not_an_object_is_one_violation(junk: Any) -> None:
    assert [v.path for v in validate_work_order(junk)] == [""]


@pytest.mark.parametrize(
    "junk",
    [
        {"contacts": [None, 3, {"contact_methods": [None, {"method": ["phone"], "preferred": True}]}]},
        {"location": [], "service_providers": {}, "appointment_windows": [None]},
        {"location": {"state": ["MA"], "country": {"a": 1}, "postal_code": None, "timezone": 5}},
    ],
)
def test_junk_of_any_shape_gives_violations_never_an_exception(junk: dict[str, Any]) -> None:
    assert validate_work_order(junk)


@pytest.mark.parametrize(
    "typed",
    [
        "+1 (555) 123-4567",
        "555-123-4567",
        "+15551234567",
        "tel:+1-555-123-4567",
        "(555) 123 4567",
        "1.555.123.4567",
    ],
)
def test_normalize_phone_gives_one_canonical_form(typed: str) -> None:
    assert normalize_phone(typed) == "+15551234567"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("+44 20 7946 0958", "+442079460958"), ("TEL:+44-20-7946-0958", "+442079460958")],
)
def test_normalize_phone_keeps_other_countries(typed: str, expected: str) -> None:
    assert normalize_phone(typed) == expected


def test_normalize_phone_reads_national_numbers_for_another_default_country() -> None:
    assert normalize_phone("020 7946 0958", default_country="44") == "+442079460958"


@pytest.mark.parametrize(
    "typed",
    [
        "1-800-FLOWERS",  # letters
        "555-1234",  # too few digits
        "+1555123456",  # nine digits after +1
        "25551234567",  # eleven digits not starting with 1
        "tel:555-123-4567",  # a local tel: URI needs a phone-context
        "tel:+1-555-123-4567;ext=12",  # extension
        "+1 555 +123 4567",  # + inside
        "+0555123456",  # calling codes do not start with 0
        "",
    ],
)
def test_normalize_phone_refuses_what_it_cannot_read(typed: str) -> None:
    assert normalize_phone(typed) is None


def test_normalize_phone_refuses_a_default_country_that_is_not_a_calling_code() -> None:
    with pytest.raises(ValueError, match="calling code"):
        normalize_phone("555-123-4567", default_country="US")


def test_normalize_work_order_rewrites_phones_then_validates() -> None:
    doc = changed(
        change(**{PHONE: "(555) 123-4567", "service_providers[0].phone_number": "tel:+1-555-888-9999"})
    )
    normalized, violations = normalize_work_order(doc)
    assert violations == []
    assert normalized["contacts"][0]["contact_methods"][0]["value"] == "+15551234567"
    assert normalized["service_providers"][0]["phone_number"] == "+15558889999"


def test_normalize_work_order_leaves_its_input_alone() -> None:
    doc = changed(change(**{PHONE: "(555) 123-4567"}))
    normalize_work_order(doc)
    assert doc["contacts"][0]["contact_methods"][0]["value"] == "(555) 123-4567"


def test_normalize_work_order_keeps_an_unreadable_phone_and_reports_it() -> None:
    normalized, violations = normalize_work_order(changed(change(**{PHONE: "call me"})))
    assert normalized["contacts"][0]["contact_methods"][0]["value"] == "call me"
    assert [v.path for v in violations] == [PHONE]


def test_normalize_work_order_does_not_touch_email_values() -> None:
    doc = changed(change(**{EMAIL: "5551234567@example.com"}))
    normalized, _ = normalize_work_order(doc)
    assert normalized["contacts"][0]["contact_methods"][1]["value"] == "5551234567@example.com"

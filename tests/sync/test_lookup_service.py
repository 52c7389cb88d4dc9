"""The engine side of the look-up commands (sync/service/lookups.py) without sockets: which organization is
the best match, the zone times are shown in, trades read from a CRM field, which back end answers."""

from __future__ import annotations

import pytest

from connector.dispatch_v3.lookups import Found, OrgMatch
from connector.mapping import LookupSpec
from sync.errors import NeedsAttention, SettingsError, UsageError
from sync.service.lookups import (
    CONFIGURE_V3,
    WorkSite,
    best_match,
    display_zone,
    lookup_context,
    split_trades,
    v3_backend,
)
from sync.settings import load_settings

SPEC = LookupSpec(
    postal_code="PostalCode", state="State", timezone="Time_Zone__c", provider_field="Provider__c"
)


def site(**values: object) -> WorkSite:
    fields: dict[str, object] = {
        "object_name": "WorkOrder",
        "record_id": "0WO000000000001AAA",
        "spec": SPEC,
        "postal_code": "62701",
        "street": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "trades": (),
        "duration_minutes": None,
        "timezone": None,
        "provider": None,
    }
    fields.update(values)
    return WorkSite(**fields)  # type: ignore[arg-type]


def test_the_highest_score_is_the_best_match() -> None:
    found = Found((OrgMatch(1, ("a",), 0.2), OrgMatch(2, ("b",), 0.9), OrgMatch(3, ("c",))))
    assert best_match(found, site(), "62701", []).organization_id == 2


def test_matches_without_scores_tie_unless_there_is_one() -> None:
    assert best_match(Found((OrgMatch(1, ("a",)),)), site(), "62701", []).organization_id == 1
    with pytest.raises(NeedsAttention, match=r"2 organizations tie .* \(organization ids 1, 2\)"):
        best_match(Found((OrgMatch(1, ("a",)), OrgMatch(2, ("b",)))), site(), "62701", ["hvac"])


def test_equal_top_scores_tie() -> None:
    found = Found((OrgMatch(1, ("a",), 0.9), OrgMatch(2, ("b",), 0.9), OrgMatch(3, ("c",), 0.1)))
    with pytest.raises(NeedsAttention, match="postal code 62701 and trades hvac"):
        best_match(found, site(), "62701", ["hvac"])


def test_no_match_needs_attention() -> None:
    with pytest.raises(NeedsAttention, match="no organization matches postal code 62701: nothing assigned"):
        best_match(Found(()), site(), "62701", [])


def test_times_are_shown_in_the_option_then_the_record_then_the_state_zone() -> None:
    assert display_zone(site(timezone="America/Denver"), "Europe/Paris")[0].key == "Europe/Paris"
    zone, source = display_zone(site(timezone="America/Denver"), None)
    assert zone.key == "America/Denver" and source == "WorkOrder 0WO000000000001AAA Time_Zone__c"
    assert display_zone(site(), None) == (
        display_zone(site(), "America/Chicago")[0],
        "the main zone of state IL",
    )
    assert display_zone(site(state="Illinois"), None)[1] == "UTC (no time zone known)"
    assert display_zone(None, None)[0].key == "UTC"
    with pytest.raises(UsageError, match="'Mars/Base' is not an IANA time zone"):
        display_zone(None, "Mars/Base")


def test_trades_are_split_as_picklists_and_lists_write_them() -> None:
    assert split_trades("HVAC;Cooling") == ("HVAC", "Cooling")
    assert split_trades(" hvac, cooling | hvac ") == ("hvac", "cooling")
    assert split_trades("") == ()


def test_without_a_dispatch_v3_back_end_the_error_says_how_to_add_one() -> None:
    ctx = lookup_context(load_settings(database_url="sqlite://", backends={"dispatch_connect": {}}))
    with pytest.raises(SettingsError) as info:
        v3_backend(ctx)
    assert str(info.value) == CONFIGURE_V3


def test_the_v3_back_end_is_found_by_type_and_chosen_when_there_are_several() -> None:
    backends = {"dispatch_v3": {}, "v3_eu": {"type": "dispatch_v3"}, "dispatch_connect": {}}
    ctx = lookup_context(load_settings(database_url="sqlite://", backends=backends))
    with pytest.raises(
        UsageError, match=r"several Dispatch v3 back ends are configured \(dispatch_v3, v3_eu\)"
    ):
        v3_backend(ctx)
    assert v3_backend(ctx, "v3_eu") == "v3_eu"
    with pytest.raises(UsageError, match="--backend dispatch_connect: not a configured Dispatch v3 back end"):
        v3_backend(ctx, "dispatch_connect")

"""The engine side of the look-up commands (`match`, `availability`): which Dispatch v3 back end answers, what
a CRM work order says about its place and needs (the mapping's `lookups:` block), the time zone its times are
shown in, and `match orgs --assign`: the best match's Account written into the work order's provider field,
with a sync-log row.

The look-ups themselves are connector.dispatch_v3.lookups. Whatever a person must fix is raised with the
exit code that says who: a bad option is a usage error (2), a work order whose data cannot be searched or a
search with no single best answer needs a person (3).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simple_salesforce import format_soql  # type: ignore[attr-defined]

from connector.dispatch_v3.lookups import Found, Lookups, OrgMatch
from connector.errors import LookupRefused
from connector.mapping import LookupSpec, load_mapping
from connector.mapping_values import reader
from sync.context import SyncContext
from sync.errors import NeedsAttention, SettingsError, SyncError, UsageError
from sync.settings import Settings
from sync.store.db import check_schema, make_engine, session_scope
from sync.store.synclog import write_log

V3_TYPE = "dispatch_v3"
CONFIGURE_V3 = (
    "no Dispatch v3 back end is configured, and the look-ups use its API: add `dispatch_v3: {}` under "
    "`backends:` in the config file and set DISPATCH_V3_CLIENT_ID and DISPATCH_V3_CLIENT_SECRET "
    '(docs/architecture.md, "Configuring back ends")'
)
SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# The zone most of a state's or province's people live in: shown, labelled as such, when the work order
# names no time zone of its own (a few states span two).
_ZONES_BY_STATE = {
    "America/New_York": "CT DE DC FL GA KY ME MD MA NH NJ NY NC OH PA RI SC VT VA WV",
    "America/Chicago": "AL AR IL IA KS LA MN MS MO NE ND OK SD TN TX WI",
    "America/Denver": "CO MT NM UT WY",
    "America/Phoenix": "AZ",
    "America/Boise": "ID",
    "America/Los_Angeles": "CA NV OR WA",
    "America/Anchorage": "AK",
    "Pacific/Honolulu": "HI",
    "America/Detroit": "MI",
    "America/Indiana/Indianapolis": "IN",
    "America/Puerto_Rico": "PR",
    "America/St_Thomas": "VI",
    "Pacific/Guam": "GU",
    "Pacific/Saipan": "MP",
    "Pacific/Pago_Pago": "AS",
    "America/Toronto": "ON QC",
    "America/Vancouver": "BC",
    "America/Edmonton": "AB",
    "America/Regina": "SK",
    "America/Winnipeg": "MB",
    "America/Halifax": "NS PE",
    "America/Moncton": "NB",
    "America/St_Johns": "NL",
    "America/Whitehorse": "YT",
    "America/Yellowknife": "NT",
    "America/Iqaluit": "NU",
}
STATE_ZONES = {state: zone for zone, states in _ZONES_BY_STATE.items() for state in states.split()}


@dataclass(frozen=True)
class WorkSite:
    """What a CRM record says about where the work is and what it needs (None: not mapped or empty)."""

    object_name: str
    record_id: str
    spec: LookupSpec
    postal_code: str | None
    street: str | None
    city: str | None
    state: str | None
    trades: tuple[str, ...]
    duration_minutes: int | None
    timezone: str | None
    provider: str | None

    @property
    def label(self) -> str:
        return f"{self.object_name} {self.record_id}"

    @property
    def address(self) -> str | None:
        """`street, city, state postal_code`, the playbook's form; None without a street."""
        if not self.street:
            return None
        region = " ".join(x for x in (self.state, self.postal_code) if x)
        return ", ".join(x for x in (" ".join(self.street.split()), self.city, region) if x)


@dataclass(frozen=True)
class Assignment:
    record: WorkSite
    account_id: str
    account_name: str | None
    organization_id: int | None
    changed: bool


def lookup_context(settings: Settings) -> SyncContext:
    """A context for look-ups: the mapping, the CRM and the back ends on first use. The store is opened only
    by --assign (its log row), and routes are not checked: nothing is published."""
    engine = make_engine(settings.database_url)
    return SyncContext(settings=settings, engine=engine, mapping=load_mapping(settings.mapping_file))


def v3_backend(ctx: SyncContext, wanted: str | None = None) -> str:
    """The configured Dispatch v3 back end to ask (its instance name)."""
    blocks = ctx.settings.backend_blocks
    names = [name for name, block in blocks.items() if block.entry.name == V3_TYPE]
    if wanted is not None:
        if wanted not in names:
            raise UsageError(
                f"--backend {wanted}: not a configured Dispatch v3 back end (configured: {', '.join(names)})"
                if names
                else CONFIGURE_V3
            )
        return wanted
    if not names:
        raise SettingsError(CONFIGURE_V3)
    if len(names) > 1:
        raise UsageError(
            f"several Dispatch v3 back ends are configured ({', '.join(names)}): pick one with --backend"
        )
    return names[0]


def lookups_for(ctx: SyncContext, backend: str | None = None) -> Lookups:
    """Look-ups over the back end's own client (its token, its retries)."""
    return Lookups(ctx.backend(v3_backend(ctx, backend)).client)  # type: ignore[attr-defined]


@contextmanager
def refusals(site: WorkSite | None) -> Iterator[None]:
    """A look-up refused for its inputs: typed inputs are a usage error (2); inputs read from a CRM record
    mean the record needs a person (3), and the line names it."""
    try:
        yield
    except LookupRefused as exc:
        if site is None:
            raise UsageError(str(exc)) from None
        raise NeedsAttention(f"{site.label}: {exc}") from None


def read_work_site(ctx: SyncContext, object_name: str, record_id: str) -> WorkSite:
    """The record's look-up fields, read as the mapping's `lookups:` block names them."""
    spec = ctx.mapping.object(object_name).lookups
    if spec is None:
        raise UsageError(
            f"mapping file {ctx.mapping.source}: objects.{object_name} has no `lookups:` block, so "
            "--work-order cannot be read; add one (docs/wire-formats.md, 'Dispatch look-ups') or give the "
            "values as options"
        )
    if not SALESFORCE_ID.fullmatch(record_id):
        raise UsageError(
            f"--work-order {record_id!r} is not a Salesforce record id (15 or 18 letters and digits)"
        )
    fields = ", ".join(dict.fromkeys(["Id", *spec.crm_fields()]))
    soql = format_soql(f"SELECT {fields} FROM {object_name} WHERE Id = {{}}", record_id)
    rows = ctx.crm.query_all(soql)
    if not rows:
        raise NeedsAttention(f"no {object_name} {record_id} in Salesforce")
    row = rows[0]
    label = f"{object_name} {record_id}"

    def text(name: str | None) -> str | None:
        value = reader(name)(row) if name else None
        return str(value).strip() or None if value is not None else None

    return WorkSite(
        object_name=object_name,
        record_id=str(row.get("Id") or record_id),
        spec=spec,
        postal_code=text(spec.postal_code),
        street=text(spec.street),
        city=text(spec.city),
        state=text(spec.state),
        trades=split_trades(text(spec.trades) or ""),
        duration_minutes=_minutes(reader(spec.duration_minutes)(row), spec.duration_minutes, label)
        if spec.duration_minutes
        else None,
        timezone=_zone_name(text(spec.timezone), spec.timezone, label),
        provider=text(spec.provider_field),
    )


def split_trades(value: str) -> tuple[str, ...]:
    """A multi-select picklist (`a;b`) or a list separated by `,` or `|`."""
    parts = re.split(r"[;,|]", value)
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def display_zone(site: WorkSite | None, option: str | None) -> tuple[ZoneInfo, str]:
    """The zone times are shown in and where it came from: --tz, the record's time zone field, the zone of
    its state, else UTC."""
    if option:
        return _zone(option, "--tz"), "--tz"
    if site is not None and site.timezone:
        return ZoneInfo(site.timezone), f"{site.label} {site.spec.timezone}"
    if site is not None and site.state and site.state.upper() in STATE_ZONES:
        return ZoneInfo(STATE_ZONES[site.state.upper()]), f"the main zone of state {site.state.upper()}"
    return ZoneInfo("UTC"), "UTC (no time zone known)"


def best_match(found: Found[OrgMatch], site: WorkSite, postal_code: str, trades: Sequence[str]) -> OrgMatch:
    """The one best organization: the highest `ranking_score` when Dispatch sends scores, else the only
    match. None, or several equally good, needs a person."""
    searched = f"postal code {postal_code}" + (f" and trades {', '.join(trades)}" if trades else "")
    if not found.items:
        raise NeedsAttention(f"no organization matches {searched}: nothing assigned to {site.label}")
    scores = [m.ranking_score if m.ranking_score is not None else -math.inf for m in found.items]
    top = [m for m, score in zip(found.items, scores, strict=True) if score == max(scores)]
    if len(top) > 1:
        ids = ", ".join(str(m.organization_id) for m in top)
        raise NeedsAttention(
            f"{len(top)} organizations tie for the best match of {searched} (organization ids {ids}): "
            f"nothing assigned to {site.label}; set {site.spec.provider_field} by hand or narrow the search "
            "(--trade)"
        )
    return top[0]


def assign_provider(ctx: SyncContext, site: WorkSite, match: OrgMatch, *, postal_code: str) -> Assignment:
    """Write the match's CRM Account into the record's provider field, with an info row in the sync log."""
    field = site.spec.provider_field
    if not field:
        raise UsageError(
            f"mapping file {ctx.mapping.source}: objects.{site.object_name}.lookups has no provider_field, "
            "so --assign has no field to set"
        )
    check_schema(ctx.engine)  # the log row must be writable before Salesforce is changed
    account = _account_of(ctx, match, site)
    account_id = str(account["Id"])
    changed = site.provider != account_id
    if changed:
        result = ctx.crm.update_records(site.object_name, [{"Id": site.record_id, field: account_id}])[0]
        if not result.success:
            raise SyncError(f"Salesforce refused to set {field} of {site.label}: {result.error_message}")
        with session_scope(ctx.engine) as session:
            write_log(
                session,
                f"{field} of {site.label} set to Account {account_id} ({account.get('Name')}): the best "
                f"match of Dispatch Match Orgs for postal code {postal_code} (organization "
                f"{match.organization_id}); was {site.provider or 'empty'}",
                level="info",
                entity=site.object_name,
                crm_record_id=site.record_id,
                external_id=account_id,
                details={
                    "field": field,
                    "account_id": account_id,
                    "organization_id": match.organization_id,
                    "postal_code": postal_code,
                    "previous": site.provider,
                },
            )
    name = account.get("Name")
    return Assignment(site, account_id, str(name) if name else None, match.organization_id, changed)


def _account_of(ctx: SyncContext, match: OrgMatch, site: WorkSite) -> dict[str, Any]:
    """The Account whose Id is one of the match's external ids (the bundled mapping sends Account Ids as the
    organizations' external ids)."""
    ids = [x for x in match.external_ids if SALESFORCE_ID.fullmatch(x)]
    described = (
        f"organization {match.organization_id} (external ids {', '.join(match.external_ids) or 'none'})"
    )
    if ids:
        rows = ctx.crm.query_all(format_soql("SELECT Id, Name FROM Account WHERE Id IN {}", ids))
        if rows:
            return dict(rows[0])
    raise NeedsAttention(
        f"the best match, {described}, is no Account in Salesforce: nothing assigned to {site.label}"
    )


def _minutes(value: Any, field: str | None, label: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        minutes = math.ceil(float(value))
    except (TypeError, ValueError, OverflowError):
        raise NeedsAttention(f"{label}: {field} {value!r} is not a number of minutes") from None
    return minutes


def _zone_name(value: str | None, field: str | None, label: str) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise NeedsAttention(
            f"{label}: {field} {value!r} is not an IANA time zone, e.g. America/Chicago"
        ) from None
    return value


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"{where} {name!r} is not an IANA time zone, e.g. America/Chicago") from None

"""What Dispatch checks before it applies an `agent/in` record: the references each record type needs.

The playbook names the rules in its samples' notes ("A Billing Document must be attached to an existing job.
And each line ... must be linked to a valid ... Billing Item", "external_organization_id to link it back the
organization", a calendar event of a user, a profile picture of a user, job trades / suggested times /
custom forms / notes of a job). A record that breaks one becomes an `err` event in the playbook's style
(`Problem writing <type> ({"errors": {...}})`), never a refused request.

Organizations: a record that names its organization (`external_organization_id`, or the Dispatch
`organization_id`) must name one that exists, created earlier (in this request or before). A record that
names none belongs to the organization of the account's key (`X-Dispatch-Key: organization|42|acme`, the
FSM set-up, where every record is the key's own); under an enterprise key (`enterprise|7|brand`) it is
refused, since Dispatch cannot tell which provider it is for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: Types whose record is about a job named by `external_job_id` (or the Dispatch `job_id`).
JOB_CHILD_TYPES = frozenset(
    {"appointment", "attachment", "billing_document", "job_trade", "suggested_times", "custom_form"}
)
#: Types that belong to an organization (named, or the key's).
ORGANIZATION_TYPES = frozenset(
    {
        "customer",
        "job",
        "user",
        "billing_item",
        "config",
        "trade_account_org",
        "job_attribution",
        "calendar_event",
    }
)
SERVICE_AREA_LISTS = {"tract": "census_tracts", "zcta5": "postal_codes", "fsaldu": "canadian_postal_codes"}

Find = Callable[..., tuple[str | None, dict[str, Any] | None]]


class RecordError(Exception):
    """A record Dispatch would refuse; becomes an `err` event."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(json.dumps({"errors": errors}, separators=(",", ":")))
        self.errors = errors


def natural_key(record_type: str, record: dict[str, Any]) -> str | None:
    """The key a record is upserted by: its external id, or for the types the playbook sends without one,
    what names them (a job's trades and suggested times are one per job; a custom form one per job and form;
    a user tag one per user and key; an appointment type by name; configuration settings per organization)."""
    external = record.get("external_id")
    if record_type in ("job_trade", "suggested_times"):
        return _text(record.get("external_job_id")) or _text(record.get("job_id"))
    if record_type == "custom_form":
        job = _text(record.get("external_job_id")) or _text(record.get("job_id"))
        return f"{job}/{record.get('form_id')}" if job else None
    if record_type == "user_tag":
        user = _text(record.get("external_user_id")) or _text(external)
        return f"{user}/{record.get('key')}" if user else None
    if record_type == "appointment_type":
        return _text(external) or _text(record.get("name"))
    if record_type == "config":
        return _text(external) or _text(record.get("external_organization_id"))
    return _text(external)


def ack_external_id(record_type: str, record: dict[str, Any]) -> str | None:
    """The `external_id` an ack or err names: the record's own, else the job or user it is about (what a
    sender without an external id can match it by)."""
    own = _text(record.get("external_id"))
    if own:
        return own
    if record_type in JOB_CHILD_TYPES:
        return _text(record.get("external_job_id")) or _text(record.get("job_id"))
    if record_type == "user_tag":
        return _text(record.get("external_user_id"))
    return None


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


class Rules:
    """The checks, over the store's `find(type, external_id, dispatch_id)` and the key's organization."""

    def __init__(self, find: Find, key_organization: dict[str, Any] | None) -> None:
        self.find = find
        self.key_organization = key_organization

    def check(self, record_type: str, merged: dict[str, Any], attachment: str | None) -> None:
        """Raise RecordError naming every missing reference; fill in the Dispatch ids of those found."""
        errors: dict[str, list[str]] = {}
        if record_type in ORGANIZATION_TYPES:
            self._organization(merged, errors)
        if record_type in JOB_CHILD_TYPES:
            self._job(merged, errors)
        check = getattr(self, f"_check_{record_type}", None)
        if check is not None:
            check(merged, errors, attachment)
        if errors:
            raise RecordError(errors)

    # -- references ------------------------------------------------------------------------------

    def _organization(self, merged: dict[str, Any], errors: dict[str, list[str]]) -> None:
        external, dispatch_id = merged.get("external_organization_id"), merged.get("organization_id")
        if external not in (None, ""):
            _, org = self.find("organization", external)
            if org is None:
                errors["organization"] = [f"not found (external_organization_id {external})"]
                return
        elif dispatch_id not in (None, ""):
            key_org = self.key_organization or {}
            if str(dispatch_id) == str(key_org.get("id")):
                return
            _, org = self.find("organization", None, dispatch_id)
            if org is None:
                errors["organization"] = [f"not found (organization_id {dispatch_id})"]
                return
        elif self.key_organization is not None:
            org = self.key_organization
        else:
            errors["organization"] = ["missing: external_organization_id is required with an enterprise key"]
            return
        merged["organization_id"] = org["id"]

    def _job(self, merged: dict[str, Any], errors: dict[str, list[str]]) -> None:
        external, dispatch_id = merged.get("external_job_id"), merged.get("job_id")
        _, job = self.find("job", external, dispatch_id)
        if job is None:
            named = f"external_job_id {external}" if external not in (None, "") else f"job_id {dispatch_id}"
            errors["job"] = [f"not found ({named})" if (external or dispatch_id) else "missing: no job named"]
            return
        merged["job_id"] = job["id"]
        merged.setdefault("external_job_id", job.get("external_id"))

    def _user(self, external_user_id: Any, errors: dict[str, list[str]], field: str = "user") -> bool:
        if external_user_id in (None, ""):
            errors[field] = ["missing: no user named"]
            return False
        _, user = self.find("user", external_user_id)
        if user is None:
            errors[field] = [f"not found (external_user_id {external_user_id})"]
            return False
        return True

    # -- per type --------------------------------------------------------------------------------

    def _check_billing_document(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        problems = []
        for index, line in enumerate(merged.get("lines") or []):
            item = line.get("external_billing_item_id") if isinstance(line, dict) else None
            if item in (None, ""):
                problems.append(f"line {index}: missing external_billing_item_id")
            elif self.find("billing_item", item)[1] is None:
                problems.append(f"line {index}: billing item {item} not found")
        if problems:
            errors["lines"] = problems

    def _check_calendar_event(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        self._user(merged.get("external_user_id"), errors)

    def _check_profile_picture(
        self, merged: dict[str, Any], errors: dict[str, list[str]], attachment: str | None
    ) -> None:
        self._user(merged.get("external_id"), errors)
        if not attachment and not merged.get("attachment"):
            errors["attachment"] = ["missing: the picture's base64 body is required"]
        if not merged.get("file_name"):
            errors["file_name"] = ["missing: a file name with extension is required"]

    def _check_user_tag(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        self._user(merged.get("external_user_id") or merged.get("external_id"), errors)
        if merged.get("key") in (None, ""):
            errors["key"] = ["missing"]

    def _check_trade_account_user(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        self._user(merged.get("external_id"), errors)
        self._trades(merged, errors)

    def _check_trade_account_org(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        self._trades(merged, errors)

    def _check_job_trade(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        self._trades(merged, errors)

    def _trades(self, merged: dict[str, Any], errors: dict[str, list[str]]) -> None:
        trades = merged.get("trades")
        if not isinstance(trades, list) or not all(isinstance(t, str) and t for t in trades):
            errors["trades"] = ["must be a list of trade names"]

    def _check_suggested_times(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        times = merged.get("suggested_times")
        if not isinstance(times, list) or not all(
            isinstance(t, dict) and t.get("start_time") and t.get("end_time") for t in times
        ):
            errors["suggested_times"] = ["must be a list of {start_time, end_time}"]

    def _check_custom_form(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        if merged.get("form_id") in (None, ""):
            errors["form_id"] = ["missing"]

    def _check_appointment_type(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        if merged.get("name") in (None, ""):
            errors["name"] = ["missing: an appointment type needs a name"]

    def _check_job_attribution(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        if merged.get("name") in (None, ""):
            errors["name"] = ["missing: a job source needs a name"]

    def _check_service_area(self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any) -> None:
        """An organization's area names it; a user's names the user (`external_user_id`, or the playbook's
        `<area id>-<user id>` external id)."""
        if merged.get("external_organization_id") not in (None, ""):
            self._organization(merged, errors)
        elif merged.get("external_user_id") not in (None, ""):
            self._user(merged["external_user_id"], errors)
        else:
            user = self._user_by_suffix(str(merged.get("external_id") or ""))
            if user is None:
                errors["service_area"] = [
                    "needs its organization (external_organization_id) or its user "
                    "(external_user_id, or an external_id ending in -<user external id>)"
                ]
            else:
                merged["external_user_id"] = user
        area_type = merged.get("service_area_type")
        if area_type is not None:
            wanted = SERVICE_AREA_LISTS.get(str(area_type))
            if wanted is None:
                errors["service_area_type"] = [f"{area_type} is not one of {', '.join(SERVICE_AREA_LISTS)}"]
            elif not isinstance(merged.get(wanted), list) or not merged[wanted]:
                errors[wanted] = [f"required (a non-empty list) for service_area_type {area_type}"]

    def _user_by_suffix(self, external_id: str) -> str | None:
        parts = external_id.split("-")
        for cut in range(1, len(parts)):
            candidate = "-".join(parts[cut:])
            if self.find("user", candidate)[1] is not None:
                return candidate
        return None

    def _check_auto_assign_technician(
        self, merged: dict[str, Any], errors: dict[str, list[str]], _: Any
    ) -> None:
        external = merged.get("external_id")
        if external in (None, "") or self.find("job", external)[1] is None:
            errors["job"] = [f"not found (external_id {external})"]

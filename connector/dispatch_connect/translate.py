"""What an `agent/out` message means, in the engine's words.

Each action's `Put` key (its put-type) becomes one `ReportedEvent`, `RecordResult` or `Notice`. This is the
only place that knows Dispatch's payload shapes: `external_ids`, `+0000` offsets, `job.external_id`,
`amount.text`, `payload.err`, the survey's `[reason, ...] comment` convention. The attributes are read
leniently (event_shapes.py): a wrong-typed attribute is dropped and reported in `problems`, never fatal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connector.dispatch_connect.client import MalformedMessage, OutboundMessage
from connector.dispatch_connect.event_shapes import normalize_event
from connector.errors import MalformedDelivery
from connector.ports import Notice, RecordResult, Report, ReportedEvent

_OFFSET = re.compile(r"([+-]\d\d)(\d\d)$")
SURVEY_REASONS = re.compile(r"^\s*\[([^\]]*)\]\s*")


def parse_time(value: Any) -> datetime | None:
    """Dispatch writes `2018-05-18T10:05:46+0000`; Python wants a colon in the offset."""
    if not value:
        return None
    text = _OFFSET.sub(r"\1:\2", str(value).replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def split_survey_comment(message: str | None) -> tuple[list[str], str]:
    """'[Late, Messy] Great tech' -> (['Late', 'Messy'], 'Great tech')."""
    if not message:
        return [], ""
    match = SURVEY_REASONS.match(message)
    if not match:
        return [], message.strip()
    reasons = [r.strip() for r in match.group(1).split(",") if r.strip()]
    return reasons, message[match.end() :].strip()


def translate_message(system: str, payload: Any) -> Iterator[Report]:
    """Every action of one stored `agent/out` message, in order."""
    try:
        message = OutboundMessage.parse(payload)
    except MalformedMessage as exc:
        raise MalformedDelivery(f"agent/out message is malformed: {exc}") from None
    for action in message.actions:
        yield from translate_action(system, action.put_type, action.data)


def translate_action(system: str, put_type: str, raw: Mapping[str, Any]) -> Iterator[Report]:
    """One action; attributes dropped for their type ride on its report, so support reads one row."""
    data, problems = normalize_event(raw)
    translator = TRANSLATORS.get(put_type)
    if translator is None:
        reports: list[Report] = [
            Notice(
                f"unknown event type {put_type!r}: kept in the inbox, no CRM effect",
                level="warning",
                entity=put_type,
                external_id=_text(data.get("external_id")) or _parent_job(data),
                details=data,
            )
        ]
    else:
        reports = list(translator(system, data))
    if problems and reports:
        reports[0] = replace(reports[0], problems=tuple(problems))
    yield from reports


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _parent_job(data: Mapping[str, Any]) -> str | None:
    job = data.get("job")
    return str(job["external_id"]) if isinstance(job, Mapping) and job.get("external_id") else None


def _number(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _job(system: str, data: dict[str, Any]) -> Iterator[Report]:
    others = (str(v) for v in data.get("external_ids") or [] if isinstance(v, str | int))
    yield ReportedEvent(
        system,
        "job",
        external_id=_text(data.get("external_id")) or next(others, None),
        remote_id=_text(data.get("id")),
        status=_text(data.get("status")),
        updated_at=parse_time(data.get("updated_at")),
        reason=_text(data.get("status_message")),
        attributes={**data, "title": data["title"].strip()} if isinstance(data.get("title"), str) else data,
    )


def _iso_times(data: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The attributes with their times as ISO 8601 (`+0000` -> `+00:00`): the CRM takes those as written."""
    times = {key: parse_time(data.get(key)) for key in keys if data.get(key)}
    return {**data, **{key: value.isoformat() for key, value in times.items() if value}}


def _billing(data: dict[str, Any]) -> dict[str, Any]:
    """A billing document's attributes, plus `balance` (total less total paid, as Dispatch's money shape)."""
    attributes = _iso_times(data, "updated_at")
    total, paid = data.get("total"), data.get("total_paid")
    total_value = _number(total.get("value")) if isinstance(total, Mapping) else None
    paid_value = _number(paid.get("value")) if isinstance(paid, Mapping) else 0.0
    if total_value is not None and isinstance(total, Mapping):
        balance = round(total_value - (paid_value or 0.0), 2)
        attributes["balance"] = {"currency": total.get("currency"), "value": f"{balance:.2f}"}
    return attributes


def _stateful(kind: str) -> Callable[[str, dict[str, Any]], Iterator[Report]]:
    """Appointments, offers, estimates and invoices: a status on an entity that may belong to a job."""

    def translate(system: str, data: dict[str, Any]) -> Iterator[Report]:
        attributes = _billing(data) if kind in ("estimate", "invoice") else data
        yield ReportedEvent(
            system,
            kind,
            external_id=_text(data.get("external_id")),
            remote_id=_text(data.get("id")),
            status=_text(data.get("status")),
            updated_at=parse_time(data.get("updated_at")),
            reason=_text(data.get("status_message")) if kind in ("appointment", "offer") else None,
            parent_external_id=_parent_job(data),
            parent_remote_id=_text(data.get("job_id")),
            window_start=parse_time(data.get("start_time")),
            window_end=parse_time(data.get("end_time")),
            attributes=attributes,
        )

    return translate


def _attachment(system: str, data: dict[str, Any]) -> Iterator[Report]:
    """Notes (with `description`) and files (with `file_token`); `deleted_at` set means deleted."""
    note = "description" in data and not data.get("file_token")
    yield ReportedEvent(
        system,
        "note" if note else "attachment",
        remote_id=_text(data.get("id")),
        status="deleted" if data.get("deleted_at") else "active",
        updated_at=parse_time(data.get("updated_at")),
        reason=data.get("description") if note else data.get("name"),
        parent_external_id=_parent_job(data),
        attributes={**data, "deleted": bool(data.get("deleted_at"))},
    )


def _survey(system: str, data: dict[str, Any]) -> Iterator[Report]:
    reasons, comments = split_survey_comment(data.get("message"))
    yield ReportedEvent(
        system,
        "survey",
        remote_id=_text(data.get("id")),
        parent_external_id=_parent_job(data),
        reason=comments,
        attributes={**data, "rating": _number(data.get("rating")), "reasons": reasons},
    )


def _payment(system: str, data: dict[str, Any]) -> Iterator[Report]:
    """A payment on a billing document: `parent_*` name the document (not the job); `result` is its status."""
    document = data.get("billing_document") or {}
    yield ReportedEvent(
        system,
        "payment",
        external_id=_text(data.get("external_id")),
        remote_id=_text(data.get("id")),
        status=_text(data.get("result")),
        updated_at=parse_time(data.get("updated_at")),
        parent_external_id=_text(document.get("external_id")),
        parent_remote_id=_text(data.get("billing_document_id")),
        attributes=_iso_times(data, "updated_at"),
    )


def _calendar_event(system: str, data: dict[str, Any]) -> Iterator[Report]:
    """A technician's own time (lunch, load truck), named by `uuid` and the enterprise's `external_id`."""
    yield ReportedEvent(
        system,
        "calendar_event",
        external_id=_text(data.get("external_id")),
        remote_id=_text(data.get("uuid")),
        reason=_text(data.get("title")),
        window_start=parse_time(data.get("started_at")),
        window_end=parse_time(data.get("completed_at")),
        attributes=_iso_times(data, "started_at", "completed_at", "updated_at"),
    )


def _custom_form(system: str, data: dict[str, Any]) -> Iterator[Report]:
    """A submitted custom form; it has no id of its own: a job and a form name name it (`reason`)."""
    yield ReportedEvent(
        system,
        "form",
        reason=_text(data.get("form_name")),
        parent_external_id=_parent_job(data),
        parent_remote_id=_text(data.get("job_id")),
        updated_at=parse_time(data.get("updated_at")),
        attributes=data,
    )


def _ack(system: str, data: dict[str, Any]) -> Iterator[Report]:
    model = str(data.get("model") or "")
    if model.startswith("auto_assign"):
        external = data.get("external_id") or (data.get("data") or {}).get("external_id")
        yield Notice(
            f"{model}: {data.get('ack_message') or 'assigned'}",
            level="warning" if data.get("ack_message") else "info",
            entity=model,
            external_id=_text(external),
            message_id=_text(data.get("msg_id")),
            details=data,
        )
        return
    yield RecordResult(
        message_id=_text(data.get("msg_id")),
        record_type=_text(data.get("model")),
        external_id=_text(data.get("external_id")),
        ok=True,
        remote_id=_text(data.get("id")),
    )


def _err(system: str, data: dict[str, Any]) -> Iterator[Report]:
    inner = (data.get("payload") or {}).get("err") if isinstance(data.get("payload"), Mapping) else None
    err = inner or data
    yield RecordResult(
        message_id=_text(err.get("msg_id")),
        record_type=_text(err.get("data_type")),
        external_id=_text(err.get("external_id")),
        ok=False,
        error=str(err.get("message") or "Dispatch reported an error without a message"),
    )


def _inbox_message(system: str, data: dict[str, Any]) -> Iterator[Report]:
    """A message the customer or the provider wrote in Dispatch's inbox (the playbook's Inbox Messages)."""
    about = (_text(data.get("external_customer_id")), _text(data.get("external_organization_id")))
    yield ReportedEvent(
        system,
        "message",
        reason=_text(data.get("message_content")),
        about=tuple(x for x in about if x),
        attributes={
            "sender": _text(data.get("sender")),
            "external_customer_id": _text(data.get("external_customer_id")),
            "external_organization_id": _text(data.get("external_organization_id")),
            "message_content": _text(data.get("message_content")),
        },
    )


TRANSLATORS: dict[str, Callable[[str, dict[str, Any]], Iterator[Report]]] = {
    "job": _job,
    "appointment": _stateful("appointment"),
    "offer": _stateful("offer"),
    "joboffer": _stateful("offer"),
    "attachment": _attachment,
    "surveyresponse": _survey,
    "estimate": _stateful("estimate"),
    "invoice": _stateful("invoice"),
    "payment": _payment,
    "ack": _ack,
    "err": _err,
    "inbox_message": _inbox_message,
    "calendar_event": _calendar_event,
    "customform": _custom_form,
}

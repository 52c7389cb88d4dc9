"""The seam between the engine and every field-service back end: types only, no I/O.

A back end (Dispatch Connect, Dispatch v3, Dispatch1, Totalmobile, ServiceMobility) differs from the others
only at its edge: how a change set is sent, how results come back (in the answer, by a later event, by a
webhook, by polling a status) and the words it uses. Everything here is in the engine's words, so `sync/`
never names a system. Shaped like httpx's transport (one method the client calls) and dlt's destination
registry (name -> factory with a typed settings block), see docs/architecture.md.

Flow:
    publisher --records--> Destination.send --> RecordResult now (in the answer) or later (by a Delivery)
    PullChannel.fetch / PushChannel.accept --> Delivery --inbox--> Backend.translate --> Report items
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import requests
from pydantic import BaseModel

from connector.errors import ConfigurationError

Level = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class RecordResult:
    """What a back end says about one record it was sent, now (in its answer) or later (by an event).

    `message_id` is the engine's batch id the record travelled in (None when the back end does not say);
    `record_type` and `external_id` name the record as the engine sent it."""

    message_id: str | None
    record_type: str | None
    external_id: str | None
    ok: bool
    remote_id: str | None = None
    error: str | None = None
    retriable: bool = False
    problems: tuple[str, ...] = ()
    details: Mapping[str, Any] | None = None  # what else the answer said (ids it created), for support


@dataclass(frozen=True)
class ReportedEvent:
    """What the field reports, in the engine's words.

    `kind` is an engine entity kind: job, appointment, offer, note, attachment, survey, estimate, invoice,
    payment. `parent_external_id` / `parent_remote_id` name the job an appointment, note, survey or billing
    document belongs to. `attributes` keeps the back end's own (normalised) attributes: the mapping's
    inbound paths read them, and support sees them. `reason` is the free text the event carries (a status
    reason, a note's body, a file's name, a survey comment). `problems` (on every report type) lists
    attributes the back end dropped because they had the wrong type: the engine logs them in the same row
    as the report's own effect instead of failing the message. A survey's `attributes` carry `rating`
    (a number or None) and `reasons` (a list); a note's carry `deleted` (a bool)."""

    system: str
    kind: str
    external_id: str | None = None
    remote_id: str | None = None
    status: str | None = None
    updated_at: datetime | None = None
    reason: str | None = None
    parent_external_id: str | None = None
    parent_remote_id: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # External ids of records the engine sent that the event concerns, when it names no job (an inbox
    # message names a customer and a provider): the engine finds the CRM records that sent all of them.
    about: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notice:
    """Something a back end reports that only support needs to see (an auto-assign failure, an event type
    with no CRM effect, an unknown type): one sync-log row, nothing else."""

    message: str
    level: Level = "info"
    entity: str | None = None
    external_id: str | None = None
    message_id: str | None = None
    details: Mapping[str, Any] | None = None
    problems: tuple[str, ...] = ()


Report = ReportedEvent | RecordResult | Notice


@dataclass(frozen=True)
class Delivery:
    """One message a channel received, as the inbox stores it (before it is settled or answered).

    `id` is unique across the store: Dispatch Connect's agent/out IDs as they are, any other channel's ids
    prefixed with its system name. `handle` is what the channel needs to settle the delivery (a receipt);
    it is kept in memory only. `entity_key` orders one entity's deliveries in processing. A delivery whose
    envelope the channel cannot read still comes through, with `problem` set: it is stored as received (dead,
    with that reason) and settled, so it never loops undelivered, and `retry --dead` reads it again later."""

    system: str
    id: str
    kind: str
    payload: Any
    entity_key: str | None = None
    handle: Any = None
    problem: str | None = (
        None  # why the channel cannot read it: stored as dead with this reason, then settled
    )


@dataclass(frozen=True)
class FetchedPage:
    """One fetch from a pull channel: the deliveries that parsed, and the entries that did not (they are
    not settled, so the source delivers them again, and the engine logs `problem`)."""

    deliveries: Sequence[Delivery]
    full: bool
    problem: str | None = None
    bad: Sequence[Any] = ()


@dataclass(frozen=True)
class JobFields:
    """Where a job record (the primary record of a work order) keeps the values the engine's strict
    policy checks: the status the CRM asks for and the provider it is assigned to."""

    status: str = "status"
    provider: str = "external_organization_id"


class Destination(Protocol):
    """Where change sets go. `record_types` is the dependency order the engine sends records in (and the
    types a mapping may build for this back end); `job_record_type` is the record the job state machine
    governs. When `confirmed_by_answer` is true, a send that returns confirms every record of the batch it
    does not report on; otherwise confirmation waits for RecordResults (from the answer or later)."""

    system: str
    max_batch: int
    record_types: tuple[str, ...]
    job_record_type: str
    job_fields: JobFields

    @property
    def confirmed_by_answer(self) -> bool: ...

    def send(self, records: Sequence[Mapping[str, Any]], *, message_id: str) -> Sequence[RecordResult]:
        """Send one change set; raise `connector.errors.ConnectorError` when the whole send failed."""
        ...


@runtime_checkable
class EncodingDestination(Destination, Protocol):
    """A destination that can send a change set in more than one wire encoding (Dispatch Connect: the
    canonical JSON array, or the playbook's CSV for first loads). `encodings` names them; JSON is always
    one. Destinations without it send JSON only."""

    encodings: tuple[str, ...]

    def send(
        self, records: Sequence[Mapping[str, Any]], *, message_id: str, encoding: str = "json"
    ) -> Sequence[RecordResult]: ...


def destination_encodings(destination: Destination) -> tuple[str, ...]:
    """The encodings a destination sends (`("json",)` unless it says otherwise)."""
    return destination.encodings if isinstance(destination, EncodingDestination) else ("json",)


def send_encoded(
    destination: Destination, records: Sequence[Mapping[str, Any]], *, message_id: str, encoding: str
) -> Sequence[RecordResult]:
    """Send a batch in the encoding it was committed with; a JSON batch goes through the plain `send`."""
    if encoding == "json":
        return destination.send(records, message_id=message_id)
    if not isinstance(destination, EncodingDestination) or encoding not in destination.encodings:
        raise ConfigurationError(f"the {destination.system} back end cannot send {encoding!r} batches")
    return destination.send(records, message_id=message_id, encoding=encoding)


@runtime_checkable
class PullChannel(Protocol):
    """A source the engine drains on a schedule (a queue, or a status reconciler that polls jobs)."""

    page_size: int

    def fetch(self, limit: int) -> FetchedPage: ...

    def settle(self, delivery: Delivery) -> None:
        """Tell the source the delivery is stored (an ack); raise ConnectorError if it refused."""
        ...


@runtime_checkable
class PushChannel(Protocol):
    """A source that calls us over HTTP (webhooks). The daemon serves it under `path` with the channel's
    own authentication, never the dashboard token: store in the inbox, then answer 2xx."""

    path: str

    def accept(self, headers: Mapping[str, str], body: bytes) -> Sequence[Delivery]:
        """Verify, then parse. Raise `connector.errors.PushRejected` (401) or `MalformedDelivery` (400)."""
        ...


class Backend(Protocol):
    """One configured back end: its destination and its channels. `label` is its name in messages people
    read. What its deliveries mean is its type's `translate` (BackendType), which needs no connection,
    so stored messages are processed without credentials."""

    system: str
    label: str
    destination: Destination
    pull_channels: Sequence[PullChannel]
    push_channels: Sequence[PushChannel]

    def sessions(self) -> Sequence[requests.Session]:
        """The HTTP sessions it uses (metrics count calls on them)."""
        ...


@dataclass(frozen=True)
class FetchedFile:
    """A file a back end holds (a field photo, a billing document's PDF): its bytes, its MIME type (what
    the back end's answer said it is) and a name when the back end gives one."""

    content: bytes
    mime_type: str
    name: str | None = None


@runtime_checkable
class FileSource(Protocol):
    """A back end's files, for the engine's file queue and support's commands (`Backend.files`, optional:
    a back end without it has none). Raise `connector.errors.FileUnavailable` (a token it does not know
    or that expired, a file over `max_bytes`) or a TransientError (try again later)."""

    def fetch_file(self, token: str, file_format: str = "original", *, max_bytes: int) -> FetchedFile: ...

    def billing_pdfs(self, job_remote_id: str, *, max_bytes: int) -> Mapping[str, FetchedFile]:
        """Every billing document of the job as a PDF, by the back end's billing document id."""
        ...


def file_source(backend: Backend) -> FileSource | None:
    """The back end's files, if it has any."""
    files = getattr(backend, "files", None)
    return files if isinstance(files, FileSource) else None


SessionHook = Callable[[requests.Session, str], None]


@dataclass(frozen=True)
class BackendType:
    """A registry entry: a back-end kind, its typed settings block and the factory that builds it.

    `env_prefix` is where its settings come from in the environment (`DISPATCH_SECRET` for the Dispatch
    Connect instance named like its type); `secrets` names the fields that may only come from there;
    `record_types` are the records its destination takes (the mapping is checked against them); `label`
    is its name in messages people read ("Dispatch rejected job ..."). `translate(delivery, settings)`
    says what a stored delivery means, in the engine's words; it raises `MalformedDelivery` when the
    delivery can never be read, and is lenient about everything else."""

    name: str
    label: str
    settings_model: type[BaseModel]
    env_prefix: str
    secrets: tuple[str, ...]
    required: tuple[str, ...]
    record_types: tuple[str, ...]
    factory: Callable[[str, Any, Sequence[SessionHook]], Backend]
    translate: Callable[[Delivery, Any], Iterable[Report]]
    description: str = ""

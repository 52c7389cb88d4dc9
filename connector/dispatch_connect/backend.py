"""Dispatch Connect as the engine sees it: a destination (`agent/in`), a pull channel (`agent/out`, settled
by `agent/ack`) and a translation of what it reports. Registered as `dispatch_connect` in connector.registry.

Results come later, by `ack`/`err` events matched on the batch's MessageId (`ACKS=true`), or the HTTP 200 of
`agent/in` confirms the batch (`ACKS=false`: received, not yet applied).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connector import jsoncodec
from connector.dispatch_connect import canonical
from connector.dispatch_connect.client import (
    MAX_MESSAGES_PER_POLL,
    SANDBOX_URL,
    DispatchConnectClient,
    MalformedMessage,
    MalformedPage,
    OutboundMessage,
)
from connector.dispatch_connect.files import FILES_SANDBOX_URL, DispatchFiles
from connector.dispatch_connect.translate import translate_message
from connector.http import hooked_session
from connector.ports import (
    BackendType,
    Delivery,
    Destination,
    FetchedPage,
    JobFields,
    PullChannel,
    PushChannel,
    RecordResult,
    SessionHook,
)

#: Every playbook "To Dispatch" record type in dependency order (canonical.RECORD_TYPES, documented in
#: docs/wire-formats.md); the outbox sorts each change set by it, across batch boundaries.
RECORD_TYPES = canonical.RECORD_TYPES


class DispatchConnectSettings(BaseModel):
    """The `dispatch_connect` settings block (environment: `DISPATCH_BASE_URL`, `DISPATCH_SECRET`, ...)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: str = Field(SANDBOX_URL, description="Dispatch Connect base URL")
    public_key: str | None = Field(None, description="X-Dispatch-Key, e.g. organization|123|acme")
    secret: SecretStr | None = Field(None, description="hex HMAC secret (environment only)")
    acks: bool = Field(True, description="confirm batches by ack events (false: by HTTP 200)")
    timeout_s: float = Field(30.0, gt=0, description="HTTP timeout for Dispatch calls")
    files_url: str = Field(FILES_SANDBOX_URL, description="Dispatch files-api base URL (field photos, files)")

    @field_validator("secret")
    @classmethod
    def _secret_is_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            if not raw:
                raise ValueError("must not be empty")
            try:
                bytes.fromhex(raw)
            except ValueError:
                raise ValueError("must be a hex string (Dispatch gives the secret hex-encoded)") from None
        return value


def entity_key(message: OutboundMessage) -> str | None:
    """`put-type:external id` of the first action, so one entity's events are processed in order."""
    for action in message.actions:
        data = action.data
        external = data.get("external_id") or (data.get("job") or {}).get("external_id") or data.get("id")
        if external is not None:
            return f"{action.put_type}:{external}"[:300]
    return None


class AgentInDestination:
    """One signed, gzipped `agent/in` POST per change set; results arrive later as ack/err events."""

    max_batch: int = 5000
    record_types: tuple[str, ...] = RECORD_TYPES
    #: JSON (the canonical array) always; CSV (`publish --all --csv`): a text/csv request per record type run
    encodings: tuple[str, ...] = ("json", "csv")
    job_record_type: str = "job"
    job_fields: JobFields = JobFields()

    def __init__(self, system: str, client: DispatchConnectClient, settings: DispatchConnectSettings) -> None:
        self.system = system
        self.client = client
        self.settings = settings

    @property
    def confirmed_by_answer(self) -> bool:
        return not self.settings.acks

    def send(
        self, records: Sequence[Mapping[str, Any]], *, message_id: str, encoding: str = "json"
    ) -> Sequence[RecordResult]:
        self.client.send_records(records, message_id=message_id, encoding=encoding)
        return ()


class AgentOutChannel:
    """`agent/out` pages of at most 10, each message settled by `agent/ack` once the engine stored it."""

    page_size = MAX_MESSAGES_PER_POLL

    def __init__(self, system: str, client: DispatchConnectClient) -> None:
        self.system = system
        self.client = client

    def fetch(self, limit: int) -> FetchedPage:
        try:
            messages = self.client.poll(limit)
        except MalformedPage as exc:  # the bad ones are stored as received too (dead, with the reason)
            deliveries = [self._delivery(m) for m in exc.messages] + [self._unreadable(b) for b in exc.bad]
            return FetchedPage(deliveries, full=len(deliveries) >= limit)
        return FetchedPage([self._delivery(m) for m in messages], full=len(messages) >= limit)

    def settle(self, delivery: Delivery) -> None:
        if delivery.handle is None:  # no receipt to ack with: it comes back and is recognised by its id
            return
        receipt, procedure_id = delivery.handle
        self.client.ack(receipt, procedure_id)

    def _unreadable(self, entry: Any) -> Delivery:
        """An entry without the documented envelope, kept whole: its ID and receipt when it has them (so it
        is acked and never loops), else an id made of its content (so a redelivery is the same row)."""
        try:
            OutboundMessage.parse(entry)
            reason = "not readable"
        except MalformedMessage as exc:
            reason = str(exc)
        message = _object(entry.get("Message") if isinstance(entry, dict) else None)
        request = _object(message.get("Request"))
        ident, receipt, procedure = message.get("ID"), message.get("Receipt"), request.get("ProcedureID")
        if not isinstance(ident, str | int):
            digest = hashlib.sha256(jsoncodec.dumps(entry)).hexdigest()[:40]
            ident = f"{self.system}:unreadable:{digest}"
        settle = (receipt, str(procedure)) if isinstance(receipt, str) and procedure is not None else None
        kind = str(request["Type"]) if isinstance(request.get("Type"), str) else "unreadable"
        return Delivery(self.system, str(ident), kind, entry, handle=settle, problem=reason)

    def _delivery(self, message: OutboundMessage) -> Delivery:
        return Delivery(
            self.system,
            message.id,
            message.type,
            message.raw,
            entity_key=entity_key(message),
            handle=(message.receipt, message.procedure_id),
        )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class DispatchConnectBackend:
    label = "Dispatch"

    def __init__(self, system: str, client: DispatchConnectClient, settings: DispatchConnectSettings) -> None:
        self.system = system
        self.client = client
        self.settings = settings
        self.destination: Destination = AgentInDestination(system, client, settings)
        self.pull_channels: Sequence[PullChannel] = (AgentOutChannel(system, client),)
        self.push_channels: Sequence[PushChannel] = ()
        self.files = DispatchFiles(settings.files_url, client, timeout=settings.timeout_s)

    def sessions(self) -> Sequence[requests.Session]:
        return (self.client.session,)


def build(
    system: str, settings: DispatchConnectSettings, hooks: Sequence[SessionHook]
) -> DispatchConnectBackend:
    """The registry's factory: a client with a fresh HTTP session, the hooks (metrics) applied to it."""
    session = hooked_session(system, hooks)
    client = DispatchConnectClient(
        settings.base_url,
        str(settings.public_key),
        settings.secret.get_secret_value() if settings.secret else "",
        session=session,
        timeout=settings.timeout_s,
    )
    return DispatchConnectBackend(system, client, settings)


def from_client(
    client: DispatchConnectClient,
    *,
    system: str = "dispatch_connect",
    acks: bool = True,
    files_url: str | None = None,
) -> DispatchConnectBackend:
    """A back end around a client built elsewhere (tests and benchmarks tune its retries); its files come
    from `files_url`, by default the client's own host (the emulator serves both)."""
    settings = DispatchConnectSettings(
        base_url=client.base_url,
        files_url=files_url or client.base_url,
        public_key=client.public_key,
        secret=None,
        acks=acks,
        timeout_s=client.timeout,
    )
    return DispatchConnectBackend(system, client, settings)


BACKEND_TYPE = BackendType(
    name="dispatch_connect",
    label="Dispatch",
    settings_model=DispatchConnectSettings,
    env_prefix="DISPATCH_",
    secrets=("secret",),
    required=("public_key", "secret"),
    record_types=RECORD_TYPES,
    factory=build,
    translate=lambda delivery, _settings: translate_message(delivery.system, delivery.payload),
    description="Dispatch Connect: agent/in change sets, agent/out events, HMAC-signed",
)

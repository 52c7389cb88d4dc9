"""A small back-end type with one push channel, for testing the daemon's webhook mechanism end to end.

`testpush`: its caller proves itself with the shared key in `X-Test-Key`; a body is one event
`{"id": ..., "job": {"external_id": ..., "status": ...}}` or a list of them. Registered at run time with
connector.registry.register (see `registered()`), never in the built-in registry.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, SecretStr

from connector import registry
from connector.errors import MalformedDelivery, PushRejected, RemoteRejected
from connector.ports import (
    BackendType,
    Delivery,
    Destination,
    JobFields,
    PullChannel,
    PushChannel,
    RecordResult,
    Report,
    ReportedEvent,
    SessionHook,
)

NAME = "testpush"
KEY_HEADER = "X-Test-Key"


class HookSettings(BaseModel):
    """The `testpush` block (environment: TESTPUSH_SHARED_KEY for the instance named like its type)."""

    model_config = ConfigDict(extra="forbid")

    shared_key: SecretStr | None = None
    path: str | None = None  # default /hooks/<instance name>


class HookChannel:
    def __init__(self, system: str, key: str, path: str) -> None:
        self.system = system
        self.path = path
        self._key = key.encode()

    def accept(self, headers: Mapping[str, str], body: bytes) -> Sequence[Delivery]:
        presented = headers.get(KEY_HEADER)
        if presented is None:
            raise PushRejected(f"{KEY_HEADER} header missing")
        if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._key):
            raise PushRejected(f"{KEY_HEADER} does not match the shared key")
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedDelivery(f"body is not JSON ({type(exc).__name__})") from None
        events = parsed if isinstance(parsed, list) else [parsed]
        return [self._delivery(event) for event in events]

    def _delivery(self, event: Any) -> Delivery:
        if not isinstance(event, dict) or "id" not in event or not isinstance(event.get("job"), dict):
            raise MalformedDelivery(
                'an event must be {"id": ..., "job": {"external_id": ..., "status": ...}}'
            )
        job = event["job"]
        return Delivery(
            self.system,
            f"{self.system}:{event['id']}",
            "job",
            event,
            entity_key=f"job:{job.get('external_id')}",
        )


class NoDestination:
    """testpush only reports; the engine never routes records to it in these tests."""

    max_batch = 1
    record_types: tuple[str, ...] = ("job",)
    job_record_type = "job"
    job_fields = JobFields()

    def __init__(self, system: str) -> None:
        self.system = system

    @property
    def confirmed_by_answer(self) -> bool:
        return True

    def send(self, records: Sequence[Mapping[str, Any]], *, message_id: str) -> Sequence[RecordResult]:
        raise RemoteRejected("testpush takes no records")


class HookBackend:
    label = "TestPush"

    def __init__(self, system: str, settings: HookSettings) -> None:
        key = settings.shared_key.get_secret_value() if settings.shared_key else ""
        self.system = system
        self.destination: Destination = NoDestination(system)
        self.pull_channels: Sequence[PullChannel] = ()
        self.push_channels: Sequence[PushChannel] = (
            HookChannel(system, key, settings.path or f"/hooks/{system}"),
        )

    def sessions(self) -> Sequence[requests.Session]:
        return ()


def build(system: str, settings: HookSettings, hooks: Sequence[SessionHook]) -> HookBackend:
    return HookBackend(system, settings)


def translate(delivery: Delivery, settings: HookSettings) -> Iterable[Report]:
    job = delivery.payload["job"]
    updated = job.get("updated_at")
    yield ReportedEvent(
        system=delivery.system,
        kind="job",
        external_id=job.get("external_id"),
        status=job.get("status"),
        updated_at=datetime.fromisoformat(updated) if updated else None,
    )


BACKEND_TYPE = BackendType(
    name=NAME,
    label="TestPush",
    settings_model=HookSettings,
    env_prefix="TESTPUSH_",
    secrets=("shared_key",),
    required=("shared_key",),
    record_types=("job",),
    factory=build,
    translate=translate,
    description="test back end: one webhook at /hooks/<name>, authenticated by X-Test-Key",
)


@contextmanager
def registered() -> Iterator[BackendType]:
    registry.register(BACKEND_TYPE)
    try:
        yield BACKEND_TYPE
    finally:
        registry.unregister(NAME)

"""Dispatch v3 REST as the engine sees it: a work-order destination (one request per work order, sent with
bounded concurrency, results in the answer) and a status reconciler (a pull channel over the list endpoints,
since v3 has no webhooks yet). Registered as `dispatch_v3` in connector.registry.

Creating is idempotent: before it POSTs a work order the destination looks its external id up among the
jobs (one list request per 100 records), so a batch re-sent after a crash or an outage updates the job it
created instead of creating another. A job it knows is changed with `PATCH /v3/jobs/:id`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connector.dispatch_v3.client import (
    PAGE_LIMIT,
    TOKEN_PATH,
    WORKORDER_PATH,
    DispatchV3Client,
    DispatchV3Rejected,
    DispatchV3Unavailable,
)
from connector.dispatch_v3.translate import translate_item
from connector.dispatch_v3.validation import normalize_work_order
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
    Report,
    SessionHook,
)

RECORD_TYPES = ("work_order",)
PATCHABLE = ("status", "title", "description")
CREATED_IDS = ("job_id", "service_provider_id", "primary_contact_id", "appointment_id")


class DispatchV3Settings(BaseModel):
    """The `dispatch_v3` settings block (environment `DISPATCH_V3_CLIENT_ID`, `DISPATCH_V3_CLIENT_SECRET`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: str = Field("https://api.dispatch.me", description="Dispatch v3 API base URL")
    client_id: str | None = Field(None, description="OAuth2 client id")
    client_secret: SecretStr | None = Field(None, description="OAuth2 client secret (environment only)")
    token_path: str = Field(TOKEN_PATH, description="token endpoint (the public docs: /v3/oauth/token)")
    workorder_path: str = Field(
        WORKORDER_PATH, description="work-order endpoint (the public docs: /v3/work_orders)"
    )
    timeout_s: float = Field(30.0, gt=0, description="HTTP timeout")
    concurrency: int = Field(8, ge=1, le=64, description="work-order requests in flight at once")
    reconcile_lookback_s: float = Field(
        86400.0, ge=0, description="how far back the status reconciler reads on start"
    )


def work_order_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical `work_order` record as v3 wants it: its external id first among `external_ids`."""
    document = dict(record)
    external_id = str(document.pop("external_id"))
    others = [str(x) for x in document.get("external_ids") or [] if str(x) != external_id]
    document["external_ids"] = [external_id, *others]
    return document


class WorkOrderDestination:
    """Work orders, one request each, `concurrency` at a time; every record gets a result in the answer."""

    max_batch: int = 200
    record_types: tuple[str, ...] = RECORD_TYPES
    job_record_type: str = "work_order"
    job_fields: JobFields = JobFields(status="status", provider="service_providers")
    confirmed_by_answer: bool = False

    def __init__(self, system: str, client: DispatchV3Client, settings: DispatchV3Settings) -> None:
        self.system = system
        self.client = client
        self.settings = settings
        self.known_jobs: dict[str, int] = {}  # external id -> Dispatch job id

    def send(self, records: Sequence[Mapping[str, Any]], *, message_id: str) -> Sequence[RecordResult]:
        results: list[RecordResult] = []
        valid: list[tuple[str, dict[str, Any]]] = []
        for item in records:
            external_id = str(item["record"]["external_id"])
            document, violations = normalize_work_order(work_order_document(item["record"]))
            if violations:  # nothing sent for this record; one result (one log row) per violation
                results.extend(
                    self._refused(message_id, external_id, f"{v.path}: {v.message}") for v in violations
                )
            else:
                valid.append((external_id, document))
        self._look_up([external_id for external_id, _ in valid])
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="v3-send") as pool:
            outcomes = list(pool.map(lambda pair: self._send_one(message_id, *pair), valid))
        unavailable = [o for o in outcomes if isinstance(o, DispatchV3Unavailable)]
        if unavailable:  # the batch is sent again later; what was created is found by its external id then
            raise DispatchV3Unavailable(f"{len(unavailable)} of {len(valid)} work orders: {unavailable[0]}")
        return results + [o for o in outcomes if isinstance(o, RecordResult)]

    def _look_up(self, external_ids: list[str]) -> None:
        """Learn the job ids of work orders created before (this run or an earlier one): a request per 100."""
        unknown = [x for x in external_ids if x not in self.known_jobs]
        for start in range(0, len(unknown), PAGE_LIMIT):
            chunk = unknown[start : start + PAGE_LIMIT]
            for job in self.client.iter_list("jobs", external_id=",".join(chunk)):
                for external_id in job.get("external_ids") or []:
                    if external_id in chunk:
                        self.known_jobs[str(external_id)] = int(job["id"])

    def _send_one(
        self, message_id: str, external_id: str, document: dict[str, Any]
    ) -> RecordResult | DispatchV3Unavailable:
        answer: dict[str, Any] | None = None
        try:
            job_id = self.known_jobs.get(external_id)
            if job_id is None:
                answer = self.client.create_work_order(document)
                job_id = self.known_jobs[external_id] = int(answer["job_id"])
            else:
                changes = {key: document[key] for key in PATCHABLE if key in document}
                if changes:
                    self.client.patch_job(job_id, changes)
        except DispatchV3Unavailable as exc:
            return exc
        except DispatchV3Rejected as exc:
            return self._refused(message_id, external_id, str(exc))
        created = {k: answer.get(k) for k in CREATED_IDS} if answer is not None else None
        return RecordResult(
            message_id, "work_order", external_id, ok=True, remote_id=str(job_id), details=created
        )

    def _refused(self, message_id: str, external_id: str, error: str) -> RecordResult:
        return RecordResult(message_id, "work_order", external_id, ok=False, error=error)


class StatusReconciler:
    """Finds what changed in the field by reading the job and appointment lists updated since the last read
    (pages of 100): a quiet cycle costs two requests whatever the number of open jobs. Settling is a no-op:
    the lists are not a queue. The watermark lives in memory; after a restart it starts
    `reconcile_lookback_s` back, and what it reads again is recognised in the inbox by its id (same job,
    same `updated_at`)."""

    page_size: int = PAGE_LIMIT
    LISTS = ("jobs", "appointments")

    def __init__(self, system: str, client: DispatchV3Client, settings: DispatchV3Settings) -> None:
        self.system = system
        self.client = client
        start = datetime.now(UTC) - timedelta(seconds=settings.reconcile_lookback_s)
        self.since = dict.fromkeys(self.LISTS, start)
        self._list = 0
        self._offset = 0
        self._newest: dict[str, datetime] = {}

    def fetch(self, limit: int) -> FetchedPage:
        what = self.LISTS[self._list]
        page = self.client.list_page(
            what, updated_since=_iso(self.since[what]), offset=self._offset, limit=min(limit, PAGE_LIMIT)
        )
        items = [item for item in page.get("data") or [] if isinstance(item, dict)]
        deliveries = [self._delivery(what, item) for item in items]
        for item in items:
            stamp = _parse(item.get("updated_at"))
            if stamp and stamp > self._newest.get(what, self.since[what]):
                self._newest[what] = stamp
        if page.get("next_offset") is not None:
            self._offset = int(page["next_offset"])
            return FetchedPage(deliveries, full=True)
        self.since[what] = self._newest.get(what, self.since[what])
        self._offset = 0
        self._list = (self._list + 1) % len(self.LISTS)
        return FetchedPage(deliveries, full=self._list != 0)  # one drain reads both lists once

    def settle(self, delivery: Delivery) -> None:
        return None

    def _delivery(self, what: str, item: dict[str, Any]) -> Delivery:
        kind = what[:-1]  # job, appointment
        # Status too: two changes within one timestamp tick are still two deliveries.
        ident = f"{self.system}:{kind}:{item.get('id')}:{item.get('updated_at')}:{item.get('status')}"
        owner = item.get("id") if kind == "job" else item.get("job_id")
        return Delivery(self.system, ident[:128], kind, {"type": kind, kind: item}, entity_key=f"job:{owner}")


class DispatchV3Backend:
    label = "Dispatch v3"

    def __init__(self, system: str, client: DispatchV3Client, settings: DispatchV3Settings) -> None:
        self.system = system
        self.client = client
        self.destination: Destination = WorkOrderDestination(system, client, settings)
        self.pull_channels: Sequence[PullChannel] = (StatusReconciler(system, client, settings),)
        self.push_channels: Sequence[PushChannel] = ()

    def sessions(self) -> Sequence[requests.Session]:
        return (self.client.session,)


def build(system: str, settings: DispatchV3Settings, hooks: Sequence[SessionHook]) -> DispatchV3Backend:
    """The registry's factory: a client with a fresh HTTP session (pool sized for the sender's threads)."""
    session = hooked_session(system, hooks, pool_size=max(10, settings.concurrency))
    client = DispatchV3Client(
        settings.base_url,
        str(settings.client_id),
        settings.client_secret.get_secret_value() if settings.client_secret else "",
        session=session,
        timeout=settings.timeout_s,
        token_path=settings.token_path,
        workorder_path=settings.workorder_path,
    )
    return DispatchV3Backend(system, client, settings)


def translate(delivery: Delivery, settings: Any) -> Iterable[Report]:
    return translate_item(delivery.system, delivery.payload)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


BACKEND_TYPE = BackendType(
    name="dispatch_v3",
    label="Dispatch v3",
    settings_model=DispatchV3Settings,
    env_prefix="DISPATCH_V3_",
    secrets=("client_secret",),
    required=("client_id", "client_secret"),
    record_types=RECORD_TYPES,
    factory=build,
    translate=translate,
    description="Dispatch v3 REST: work orders over OAuth2, statuses reconciled from the list endpoints",
)

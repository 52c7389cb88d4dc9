"""Shared set-up for bench/sandbox.py, bench/publisher.py and bench/poller.py (kept here, not in bench/,
where every script is a benchmark).

Starts both emulators on loopback with one injectable clock, a migrated SQLite store in a temporary
folder, and a SyncContext wired to them, the way tests/e2e/conftest.py does. Counts always come from the
emulators' own accounting (`sf.counts`, `dispatch.counts`), never from the clients.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

import requests
import yaml

from connector.crm import connect_salesforce
from connector.dispatch_connect.backend import from_client
from connector.dispatch_connect.client import DispatchConnectClient
from connector.mapping import load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator, trusting_session
from sync.context import SyncContext
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.service.daemon import freeze_startup_heap
from sync.settings import load_settings
from sync.store.db import make_engine, upgrade
from sync.writeback.queue import flush_writebacks
from tests.org import PROVIDER_ACCOUNT

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
DEFAULT_MAPPING = ROOT / "connector" / "mappings" / "salesforce_default.yaml"
PUBLIC_KEY = "organization|42|acme-facilities"
SECRET = "5ec12e7" + "0" * 57
# The host process runs two services (and Dispatch's apply worker) under one GIL. With CPython's default 5 ms
# switch interval, a thread woken by a request waits behind a busy one for up to 5 ms at each GIL hand-over,
# a stall two separate services would not have. Measured on the publisher benchmark: the engine's cycle
# 0.49 s -> 0.35 s and the naive path 21.6 s -> 18.6 s with 0.5 ms (one run each; both sides gain).
HOST_SWITCH_INTERVAL_S = 0.0005
USERNAME, PASSWORD, TOKEN = "integration@fieldservice.example", "demo-password", "demo-token"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class BenchClock:
    """One clock for both emulators: Salesforce wants an aware datetime, Dispatch a float timestamp."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def work_order_rows(
    provider_id: str, contact_ids: list[str], n: int, start: int = 0
) -> Iterator[dict[str, Any]]:
    for i in range(start, start + n):
        yield {
            "WorkOrderNumber": f"WO-{i:07d}",
            "Subject": f"Replace breaker #{i}",
            "Description": "Trips under load",
            "Status": "New",
            "Street": f"{i} Main St",
            "City": "Springfield",
            "State": "IL",
            "PostalCode": "62701",
            "ContactId": contact_ids[i % len(contact_ids)],
            "Dispatch_Service_Provider__c": provider_id,
            "Dispatch_Send__c": "2026-11-25T09:00:00Z",
        }


def seed_org(sf: SalesforceEmulator, contacts: int) -> tuple[str, list[str]]:
    """One flagged provider account and `contacts` contacts; returns their ids."""
    provider = sf.insert("Account", dict(PROVIDER_ACCOUNT))
    contact_ids = sf.insert_many(
        "Contact",
        (
            {"FirstName": "Jane", "LastName": f"Doe {i}", "Email": f"jane{i}@example.com", "Phone": "+1555"}
            for i in range(contacts)
        ),
    )
    return provider, contact_ids


def set_latency(sf: SalesforceEmulator, dispatch: DispatchEmulator, latency_s: float) -> None:
    """The same latency on every endpoint of both emulators (0: none)."""
    if latency_s > 0:
        sf.faults.set("*", latency_s=latency_s)
        dispatch.set_faults("*", latency_s=latency_s)
    else:
        sf.faults.clear()
        dispatch.set_faults(clear=True)


@dataclass
class Rig:
    sf: SalesforceEmulator
    dispatch: DispatchEmulator
    ctx: SyncContext
    clock: BenchClock
    provider_id: str
    contact_ids: list[str]
    tmp: Path

    def work_order_rows(self, n: int, start: int = 0) -> Iterator[dict[str, Any]]:
        return work_order_rows(self.provider_id, self.contact_ids, n, start)

    def insert_work_orders(self, n: int, start: int = 0) -> list[str]:
        return self.sf.insert_many("WorkOrder", self.work_order_rows(n, start))

    def sf_calls(self) -> int:
        """REST calls the Salesforce emulator counted (logins excluded: the gateway logged in at set-up)."""
        return sum(v for k, v in self.sf.counts.items() if k not in ("login", "token"))

    def set_latency(self, latency_s: float) -> None:
        set_latency(self.sf, self.dispatch, latency_s)

    def new_client(self) -> DispatchConnectClient:
        return DispatchConnectClient(
            self.dispatch.base_url, PUBLIC_KEY, SECRET, backoff_s=0.01, max_attempts=4
        )


def workorder_only_mapping(folder: Path) -> Path:
    """The default mapping with only its WorkOrder object, so a cycle costs one query, not one per object."""
    data = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))
    data["objects"] = {"WorkOrder": data["objects"]["WorkOrder"]}
    path = folder / "workorder_only.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make_context(
    folder: Path,
    sf_url: str,
    sf_session: requests.Session,
    dispatch_url: str,
    mapping_file: Path | None = None,
    **overrides: Any,
) -> SyncContext:
    """Like tests/e2e/conftest.py; takes URLs so a child process can wire itself to a parent's emulators."""
    settings = load_settings(
        database_url=f"sqlite:///{folder}/store.db",
        dispatch_base_url=dispatch_url,
        dispatch_public_key=PUBLIC_KEY,
        dispatch_secret=SECRET,
        mapping_file=mapping_file,
        **overrides,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    client = DispatchConnectClient(dispatch_url, PUBLIC_KEY, SECRET, backoff_s=0.01, max_attempts=4)
    crm = connect_salesforce(
        sf_url, username=USERNAME, password=PASSWORD, security_token=TOKEN, session=sf_session
    )
    return SyncContext(
        settings=settings,
        engine=engine,
        mapping=load_mapping(settings.mapping_file),
        backends={"dispatch_connect": from_client(client, acks=settings.value("dispatch_acks"))},
        crm_gateway=crm,
    )


@contextmanager
def rig(contacts: int = 100, workorder_only: bool = True, **overrides: Any) -> Iterator[Rig]:
    """Both emulators, a fresh store and a context; everything stopped and deleted afterwards."""
    clock = BenchClock()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        SalesforceEmulator(FIXTURE, clock=clock) as sf,
        DispatchEmulator(PUBLIC_KEY, SECRET, clock=clock.timestamp) as dispatch,
    ):
        folder = Path(tmp)
        provider, contact_ids = seed_org(sf, contacts)
        mapping_file = workorder_only_mapping(folder) if workorder_only else None
        ctx = make_context(folder, sf.base_url, sf.session(), dispatch.base_url, mapping_file, **overrides)
        try:
            yield Rig(sf, dispatch, ctx, clock, provider, contact_ids, folder)
        finally:
            ctx.engine.dispose()


# --- emulators in a process of their own -------------------------------------------------------------
def _freeze_heap() -> None:
    """The emulators' stored records are long-lived: kept out of the cyclic GC, a full collection no longer
    walks 10,000+ records and stalls both services for 100-170 ms (measured), which a real service would not.
    Frozen whenever the host is quiet (after seeding, inserts, and each wait for Dispatch to go idle), so
    the pause never lands inside a measured cycle, the engine's or the naive path's."""
    freeze_startup_heap()  # the daemon's own call: gc.collect(), then gc.freeze()


class EmulatorHost:
    """Both emulators and their clock, living in the process a `remote_rig` starts.

    Dispatch and Salesforce are remote services: their CPU work must not share the measured engine's GIL,
    or the benchmark charges the emulators' record-keeping to the engine."""

    def __init__(self, contacts: int) -> None:
        sys.setswitchinterval(HOST_SWITCH_INTERVAL_S)
        self.clock = BenchClock()
        self.sf = SalesforceEmulator(FIXTURE, clock=self.clock).__enter__()
        self.dispatch = DispatchEmulator(PUBLIC_KEY, SECRET, clock=self.clock.timestamp).__enter__()
        self.provider_id, self.contact_ids = seed_org(self.sf, contacts)
        self.applied: list[tuple[Any, str, dict[str, Any], str]] | None = None
        self._log_applied()
        _freeze_heap()

    def _log_applied(self) -> None:
        """While `applied` is a list, every record Dispatch applies is added to it in Dispatch's own order
        (one worker applies requests in the order received): (message id, record type, record, ack|err)."""
        apply = self.dispatch.store.apply

        def logged(item: Any, msg_id: Any) -> Any:
            event = apply(item, msg_id)
            if self.applied is not None:
                self.applied.append((msg_id, item.record_type, item.record, event[0]))
            return event

        self.dispatch.store.apply = logged  # type: ignore[method-assign]

    def dispatch_log_start(self) -> None:
        self.applied = []

    def dispatch_log_take(self) -> list[tuple[Any, str, dict[str, Any], str]]:
        """The records applied since dispatch_log_start (after waiting for Dispatch to be idle); stops it."""
        self.dispatch.wait_idle(1800)
        taken, self.applied = self.applied or [], None
        return taken

    def info(self) -> dict[str, Any]:
        return {
            "sf_url": self.sf.base_url,
            "ca_path": str(self.sf.ca_path),
            "dispatch_url": self.dispatch.base_url,
            "provider_id": self.provider_id,
        }

    def insert_work_orders(self, n: int, start: int = 0) -> list[str]:
        ids = self.sf.insert_many("WorkOrder", work_order_rows(self.provider_id, self.contact_ids, n, start))
        _freeze_heap()
        return ids

    def sf_insert(self, object_name: str, values: dict[str, Any]) -> str:
        return self.sf.insert(object_name, values)

    def sf_insert_many(self, object_name: str, rows: list[dict[str, Any]]) -> list[str]:
        ids = self.sf.insert_many(object_name, rows)
        _freeze_heap()
        return ids

    def sf_define_object(self, name: str, fields: dict[str, Any], key_prefix: str | None = None) -> None:
        self.sf.define_object(name, fields, key_prefix)

    def sf_update(self, object_name: str, record_id: str, values: dict[str, Any]) -> None:
        self.sf.update(object_name, record_id, values)

    def sf_update_many(self, object_name: str, record_ids: list[str], values: dict[str, Any]) -> None:
        for record_id in record_ids:
            self.sf.update(object_name, record_id, values)

    def sf_get(self, object_name: str, record_id: str) -> dict[str, Any]:
        return self.sf.get(object_name, record_id)

    def sf_counts(self) -> dict[str, int]:
        return self.sf.counts

    def sf_reset_counts(self) -> None:
        self.sf.reset_counts()

    def dispatch_counts(self) -> dict[str, int]:
        return self.dispatch.counts

    def dispatch_wait_idle(self, timeout: float) -> bool:
        idle = self.dispatch.wait_idle(timeout)
        _freeze_heap()  # quiet now: what Dispatch stored so far is kept out of the collections to come
        return idle

    def set_latency(self, latency_s: float) -> None:
        set_latency(self.sf, self.dispatch, latency_s)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def close(self) -> None:
        self.dispatch.stop()
        self.sf.stop()


class _HostManager(BaseManager):
    pass


_HostManager.register("EmulatorHost", EmulatorHost)


class _RemoteSalesforce:
    """The slice of SalesforceEmulator's API the benchmarks use, forwarded to the host process."""

    def __init__(self, host: Any, info: dict[str, Any]) -> None:
        self._host = host
        self.base_url: str = info["sf_url"]
        self.ca_path = Path(info["ca_path"])

    def session(self) -> requests.Session:
        return trusting_session(self.ca_path)

    def insert(self, object_name: str, values: dict[str, Any]) -> str:
        return str(self._host.sf_insert(object_name, dict(values)))

    def update(self, object_name: str, record_id: str, values: dict[str, Any]) -> None:
        self._host.sf_update(object_name, record_id, dict(values))

    def update_many(self, object_name: str, record_ids: list[str], values: dict[str, Any]) -> None:
        self._host.sf_update_many(object_name, list(record_ids), dict(values))

    def get(self, object_name: str, record_id: str) -> dict[str, Any]:
        return dict(self._host.sf_get(object_name, record_id))

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._host.sf_counts())

    def reset_counts(self) -> None:
        self._host.sf_reset_counts()


class _RemoteDispatch:
    def __init__(self, host: Any, info: dict[str, Any]) -> None:
        self._host = host
        self.base_url: str = info["dispatch_url"]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._host.dispatch_counts())

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return bool(self._host.dispatch_wait_idle(timeout))


class _RemoteClock:
    def __init__(self, host: Any) -> None:
        self._host = host

    def advance(self, seconds: float) -> None:
        self._host.advance(seconds)


class RemoteRig(Rig):
    """A Rig whose emulators run in another process (see EmulatorHost)."""

    host: Any = None

    def insert_work_orders(self, n: int, start: int = 0) -> list[str]:
        return list(self.host.insert_work_orders(n, start))

    def set_latency(self, latency_s: float) -> None:
        self.host.set_latency(latency_s)


@contextmanager
def remote_rig(
    contacts: int = 100,
    workorder_only: bool = True,
    *,
    manager_class: type[BaseManager] | None = None,
    host_name: str = "EmulatorHost",
    **overrides: Any,
) -> Iterator[RemoteRig]:
    """Like rig(), with both emulators in a separate process (spawned, so no thread state is forked).

    A benchmark that needs more of the emulators' process (an EmulatorHost subclass) registers it with a
    manager class of its own and passes both."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        (manager_class or _HostManager)(ctx=get_context("spawn")) as manager,
    ):
        host = getattr(manager, host_name)(contacts)
        try:
            info = host.info()
            folder = Path(tmp)
            sf = _RemoteSalesforce(host, info)
            mapping_file = workorder_only_mapping(folder) if workorder_only else None
            ctx = make_context(
                folder, sf.base_url, sf.session(), info["dispatch_url"], mapping_file, **overrides
            )
            r = RemoteRig(
                sf,
                _RemoteDispatch(host, info),
                ctx,
                _RemoteClock(host),
                info["provider_id"],
                [],
                folder,
            )
            r.host = host
            try:
                yield r
            finally:
                ctx.engine.dispose()
        finally:
            host.close()


def settle(r: Rig, timeout: float = 1800) -> dict[str, int]:
    """Wait until Dispatch applied everything, then drain, process and flush until nothing is left."""
    totals = {"received": 0, "processed": 0, "written": 0, "flush_calls": 0}
    r.dispatch.wait_idle(timeout)
    while True:
        polled = drain_pull_channels(r.ctx)
        processed = 0
        while (done := process_inbox(r.ctx).processed) > 0:
            processed += done
        written = 0
        while True:
            flushed = flush_writebacks(
                r.ctx.engine, r.ctx.crm, batch_size=r.ctx.settings.writeback_batch_size
            )
            totals["flush_calls"] += flushed.calls
            written += flushed.records_written
            if flushed.records_written == 0:
                break
        totals["received"] += polled.received
        totals["processed"] += processed
        totals["written"] += written
        if polled.received == 0 and processed == 0 and written == 0:
            return totals


def peak_rss_mb(own: bool = False) -> float:
    """Peak resident memory in MB. `own`: this process image's own peak (VmHWM), for a child process.

    On Linux ru_maxrss survives fork and execve, so a child started by a big parent reports the parent's
    peak; VmHWM belongs to the memory map that execve created and does not.
    """
    if own:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def report(figures: dict[str, Any], json_path: Path | None) -> None:
    """Print the table; write the one flat JSON object when asked."""
    width = max(len(k) for k in figures)
    print(f"{'figure':<{width}}  value")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")

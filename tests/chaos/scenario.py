"""The round trip shared by the crash suite, the fault suite and bench/chaos.py.

N flagged work orders in the Salesforce emulator; the connector publishes them; a scripted field technician
plays accept -> schedule -> (pause) -> complete on every job once Dispatch has it; the connector drains,
processes and writes back. `assess()` then judges the end state from the emulators' and the store's own
records: what was lost, what was applied twice, what is stuck.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.dispatch_connect.queue import QueueFaults
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from connector.sandbox.server import Faults
from sync.store.db import make_engine, upgrade
from sync.store.models import InboxMessage, OutboxBatch, SyncLog, TrackedRecord, WriteBack
from tests.chaos.field import (
    FINAL_REASON,
    FINAL_STATUS,
    FieldPlayer,
    PlayerThread,
)
from tests.chaos.office import OfficeThread, StreamEvidence, wait_caught_up, wait_edits
from tests.org import PROVIDER_ACCOUNT

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
PUBLIC_KEY = "organization|42|acme-facilities"
SECRET = "5ec12e7" + "0" * 57
USERNAME, PASSWORD, TOKEN = "integration@fieldservice.example", "demo-password", "demo-token"
START = 1_800_000_000.0

MILESTONE_FIELDS = {
    "accept": "Dispatch_Accepted_At__c",
    "schedule": "Dispatch_Scheduled_At__c",
    "pause": "Dispatch_Paused_At__c",
    "complete": "Dispatch_Completed_At__c",
}
#: Fields of the final CRM state that do not depend on wall time (compared across runs).
COMPARED_FIELDS = (
    "Dispatch_Status__c",
    "Dispatch_Status_Reason__c",
    "Dispatch_Error__c",
    "Dispatch_Accepted_At__c",
    "Dispatch_Rejected_At__c",
    "Dispatch_Scheduled_At__c",
    "Dispatch_En_Route_At__c",
    "Dispatch_Started_At__c",
    "Dispatch_Paused_At__c",
    "Dispatch_Completed_At__c",
    "Dispatch_Canceled_At__c",
    "Dispatch_Appointment_Start__c",
    "Dispatch_Appointment_End__c",
)
TRANSITION = re.compile(r"^\w+ \S+: \S+ -> \S+")


class FakeClock:
    """Dispatch's clock, moved by the test: identical event timestamps in every run."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FastClock:
    """Wall time sped up `rate` times: events played 0.2 s apart get distinct one-second timestamps, and a
    30 s visibility timeout lapses after 30/rate real seconds (a crashed poller's messages come back soon)."""

    def __init__(self, rate: float = 10.0, start: float = START) -> None:
        self.rate, self.start, self.t0 = rate, start, time.monotonic()

    def __call__(self) -> float:
        return self.start + (time.monotonic() - self.t0) * self.rate


@dataclass
class World:
    sf: SalesforceEmulator
    dispatch: DispatchEmulator
    orders: list[str]
    db_path: Path
    engine: Engine

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"


@contextmanager
def world(
    tmp: Path,
    records: int,
    *,
    clock: Callable[[], float],
    sf_faults: Faults | None = None,
    dispatch_faults: Faults | None = None,
    queue_faults: QueueFaults | None = None,
) -> Iterator[World]:
    """Both emulators on loopback, a provider, a contact, `records` flagged work orders, a migrated store."""
    with (
        SalesforceEmulator(FIXTURE, faults=sf_faults) as sf,
        DispatchEmulator(
            PUBLIC_KEY, SECRET, clock=clock, faults=dispatch_faults, queue_faults=queue_faults
        ) as dispatch,
    ):
        provider = sf.insert("Account", dict(PROVIDER_ACCOUNT))
        contact = sf.insert(
            "Contact",
            {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com", "Phone": "+15550101"},
        )
        rows = [
            {
                "Subject": f"Replace breaker {n}",
                "Description": "Trips under load",
                "Status": "New",
                "Street": f"{n} Main St",
                "City": "Springfield",
                "State": "IL",
                "PostalCode": "62701",
                "ContactId": contact,
                "Dispatch_Service_Provider__c": provider,
                "Dispatch_Send__c": "2026-11-25T09:00:00Z",
            }
            for n in range(records)
        ]
        orders = sf.insert_many("WorkOrder", rows)
        db_path = tmp / "store.db"
        engine = make_engine(f"sqlite:///{db_path}")
        upgrade(engine)
        try:
            yield World(sf, dispatch, orders, db_path, engine)
        finally:
            engine.dispose()


# --- judging the end state ----------------------------------------------------------------------------------
@dataclass
class Assessment:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return not self.lost and not self.stuck

    def summary(self, limit: int = 8) -> str:
        parts = []
        for name in ("lost", "duplicated", "stuck"):
            items: list[str] = getattr(self, name)
            if items:
                parts.append(f"{name} {len(items)}: " + "; ".join(items[:limit]))
        return " | ".join(parts) or "ok"


def crm_problems(wo: str, record: dict[str, Any], steps: tuple[str, ...]) -> list[str]:
    problems = []
    if not record.get("Dispatch_Last_Synced__c"):
        problems.append("Dispatch_Last_Synced__c unset")
    if record.get("Dispatch_Status__c") != FINAL_STATUS:
        problems.append(f"Dispatch_Status__c={record.get('Dispatch_Status__c')!r}")
    if record.get("Dispatch_Status_Reason__c") != FINAL_REASON:
        problems.append(f"Dispatch_Status_Reason__c={record.get('Dispatch_Status_Reason__c')!r}")
    for step in steps:
        if not record.get(MILESTONE_FIELDS[step]):
            problems.append(f"{MILESTONE_FIELDS[step]} unset")
    if not record.get("Dispatch_Appointment_Start__c") or not record.get("Dispatch_Appointment_End__c"):
        problems.append("appointment window unset")
    if record.get("Dispatch_Error__c"):
        problems.append(f"Dispatch_Error__c={record['Dispatch_Error__c']!r}")
    return [f"{wo}: {p}" for p in problems]


def assess(w: World, player: FieldPlayer) -> Assessment:
    a = Assessment()
    jobs = w.dispatch.records("job")
    for wo in w.orders:
        if wo not in jobs:
            a.lost.append(f"{wo}: no job in Dispatch")
            continue
        a.lost.extend(crm_problems(wo, w.sf.get("WorkOrder", wo), player.plan[wo]))
        if len(w.dispatch.job_assignments(wo)) > 1:
            a.duplicated.append(f"{wo}: {len(w.dispatch.job_assignments(wo))} Dispatch jobs")
    if not player.finished:
        a.stuck.append(f"field player: {player.steps_left()} step(s) not played (job missing in Dispatch)")
    extra = len(w.sf.record_ids("WorkOrder")) - len(w.orders)
    if extra:
        a.duplicated.append(f"{extra} work order(s) created by the connector")
    with Session(w.engine) as s:
        _assess_store(s, player, a)
    a.counts.update(lost=len(a.lost), duplicated=len(a.duplicated), stuck=len(a.stuck))
    return a


def _assess_store(s: Session, player: FieldPlayer, a: Assessment) -> None:
    messages = s.exec(select(InboxMessage)).all()
    inbox = {m.message_id: m.status for m in messages}
    a.counts["redeliveries"] = sum(m.deliveries - 1 for m in messages)
    for message_id, (wo, step) in player.field_messages.items():
        status = inbox.get(message_id)
        if status is None:
            a.lost.append(f"field message {message_id} ({wo} {step}) never stored")
        elif status == "dead":
            a.lost.append(f"field message {message_id} ({wo} {step}) dead")
    counts = Counter(inbox.values())
    if counts["new"]:
        a.stuck.append(f"{counts['new']} inbox message(s) new")
    if counts["dead"]:
        a.stuck.append(f"{counts['dead']} inbox message(s) dead")
    batches = s.exec(select(OutboxBatch)).all()
    pending = [b.message_id for b in batches if b.status in ("pending", "failed")]
    if pending:
        a.stuck.append(f"{len(pending)} outbox batch(es) pending/failed: {pending[:3]}")
    seen: dict[tuple[str, str], set[str]] = {}
    for b in batches:
        for item in b.payload or []:
            if item.get("record_type") == "job":
                record = item.get("record") or {}
                digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
                seen.setdefault((str(record.get("external_id")), digest), set()).add(b.message_id)
    for (ext, _digest), ids in seen.items():
        if len(ids) > 1:
            a.duplicated.append(f"job {ext} with the same content in {len(ids)} batches")
    wb = Counter(r.status for r in s.exec(select(WriteBack)).all())
    if wb["pending"] or wb["failed"]:
        a.stuck.append(f"write_back pending {wb['pending']}, failed {wb['failed']}")
    unconfirmed = s.exec(
        select(TrackedRecord.crm_id).where(
            col(TrackedRecord.flagged).is_(True), col(TrackedRecord.confirmed_at).is_(None)
        )
    ).all()
    if unconfirmed:
        a.stuck.append(f"{len(unconfirmed)} tracked record(s) unconfirmed: {list(unconfirmed)[:3]}")
    rows = s.exec(
        select(SyncLog.msg_id, SyncLog.message).where(
            col(SyncLog.direction) == "in", col(SyncLog.msg_id).is_not(None)
        )
    ).all()
    transitions = Counter((m, t) for m, t in rows if TRANSITION.match(t or ""))
    for (msg_id, transition), n in transitions.items():
        if n > 1:
            a.duplicated.append(f"message {msg_id} applied {n} times: {transition}")
    a.counts.update(inbox=len(inbox), batches=len(batches), field_messages=len(player.field_messages))


def crm_state(w: World) -> dict[int, dict[str, Any]]:
    """The wall-time-free Dispatch_* fields of every work order, keyed by its position."""
    return {
        i: {f: w.sf.get("WorkOrder", wo).get(f) for f in COMPARED_FIELDS} for i, wo in enumerate(w.orders)
    }


# --- the daemon subprocess ---------------------------------------------------------------------------
class DaemonProcess:
    """`python -m sync.service.cli run` against both emulators; output goes to a file (no pipe to fill).

    STREAMING=on by default (issue 20 item 5: the crash suite proves itself with change events driving the
    publisher); `streaming="off"` runs the polling cycle alone."""

    def __init__(
        self,
        w: World,
        workdir: Path,
        *,
        interval_s: float = 0.2,
        batch_size: int = 200,
        streaming: str = "on",
    ) -> None:
        self.w, self.workdir = w, workdir
        self.log_path = workdir / "daemon.log"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_"))
        }
        interval = str(interval_s)
        env.update(
            DATABASE_URL=w.database_url,
            DISPATCH_BASE_URL=w.dispatch.base_url,
            DISPATCH_PUBLIC_KEY=PUBLIC_KEY,
            DISPATCH_SECRET=SECRET,
            DISPATCH_TIMEOUT_S="10",
            SALESFORCE_INSTANCE_URL=w.sf.base_url,
            SALESFORCE_USERNAME=USERNAME,
            SALESFORCE_PASSWORD=PASSWORD,
            SALESFORCE_SECURITY_TOKEN=TOKEN,
            SALESFORCE_CA_BUNDLE=str(w.sf.ca_path),
            PUBLISH_INTERVAL_S=interval,
            POLL_INTERVAL_S=interval,
            PROCESS_INTERVAL_S=interval,
            WRITEBACK_INTERVAL_S=interval,
            DASHBOARD_PORT="0",
            BATCH_SIZE=str(batch_size),
            PYTHONPATH=str(ROOT),
            STREAMING=streaming,
        )
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.kills = 0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"--- start {self.kills}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sync.service.cli", "run"],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        marker = f"--- start {self.kills}\n"
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "dashboard and health on" in text.rsplit(marker, 1)[-1]:
                return
            assert self.proc is not None and self.proc.poll() is None, f"daemon exited: {text[-2000:]}"
            time.sleep(0.05)
        raise AssertionError("daemon did not start")

    def kill9(self) -> None:
        """SIGKILL and reap. The dead process's leases stay behind, as after a real crash: the restarted
        daemon must take them over by itself (sync/store/locks.py recognises a dead holder on this host)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_converged(
    w: World,
    player: FieldPlayer,
    timeout: float,
    *,
    poll_s: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> tuple[Assessment, float | None]:
    """Assess until converged or `timeout`; returns the last assessment and seconds taken (None: never)."""
    t0 = last_report = time.monotonic()
    while True:
        a = assess(w, player)
        elapsed = time.monotonic() - t0
        if progress and time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            depth = w.dispatch.queue_depth()
            progress(f"{elapsed:6.1f} s: agent/out depth {depth}, {a.summary(2)}")
        if a.converged:
            return a, elapsed
        if elapsed > timeout:
            return a, None
        time.sleep(poll_s)


@dataclass
class CrashRun:
    records: int
    kills: int
    lost: int
    duplicated: int
    stuck: int
    converge_s: float | None
    roundtrip_s: float | None  # first start to convergence
    assessment: Assessment
    wall_s: float
    stream: StreamEvidence | None = None  # with office edits and streaming on: what shows it streamed
    edits: int = 0  # work orders the office edited during the run


def crash_run(
    tmp: Path,
    records: int,
    kills: int,
    *,
    seed: int,
    converge_timeout: float,
    kill_window_s: tuple[float, float] = (0.5, 3.5),
    batch_size: int = 200,
    progress: Callable[[str], None] | None = None,
    streaming: str = "on",
    office: bool = False,
    on_kill: Callable[[World, DaemonProcess], None] | None = None,
) -> CrashRun:
    """One crash run: daemon + field, SIGKILL `kills` times at seeded random moments, restart, converge.
    `office`: work orders are edited throughout the kills too (tests/chaos/office.py); every last edit must
    reach Dispatch (else it counts as lost), and with streaming on the run returns the stream's evidence.
    `on_kill` looks at the world right after each SIGKILL, before the restart."""
    import random

    rng = random.Random(seed)
    t_start = time.monotonic()
    stream: StreamEvidence | None = None
    with world(tmp, records, clock=FastClock()) as w:
        player = FieldPlayer(w.dispatch, w.orders)
        field_thread = PlayerThread(player)
        office_thread = OfficeThread(w.sf, w.orders, seed=seed) if office else None
        daemon = DaemonProcess(w, tmp, batch_size=batch_size, streaming=streaming)
        field_thread.start()
        try:
            daemon.start()
            if office_thread is not None:
                office_thread.start()
            first_start = daemon.started_at
            for _ in range(kills):
                time.sleep(rng.uniform(*kill_window_s))
                daemon.kill9()
                if on_kill is not None:
                    on_kill(w, daemon)
                daemon.start()
            if office_thread is not None:
                office_thread.stop()
            last_restart = daemon.started_at
            daemon.wait_ready()
            a, _ = wait_converged(w, player, converge_timeout, progress=progress)
            converged_at = time.monotonic()
            converge_s = converged_at - last_restart if a.converged else None
            roundtrip_s = converged_at - first_start if a.converged else None
            missing: list[str] = []
            if office_thread is not None:  # the edits' acks are written back after Dispatch has them
                missing = wait_edits(w, office_thread.edits, converge_timeout)
                a, _ = wait_converged(w, player, converge_timeout)
                if streaming == "on":
                    stream = wait_caught_up(w, daemon.log_path, timeout=15)
            a = assess(w, player)  # once more, after convergence: nothing moves twice later
            a.lost.extend(missing)
            a.counts["lost"] = len(a.lost)
        finally:
            field_thread.stop()
            if office_thread is not None:
                office_thread.stop()
            daemon.stop()
        for thread in (field_thread, office_thread):
            if thread is not None and thread.error is not None:
                raise thread.error
    return CrashRun(
        records,
        kills,
        len(a.lost),
        len(a.duplicated),
        len(a.stuck),
        converge_s,
        roundtrip_s,
        a,
        time.monotonic() - t_start,
        stream,
        len(office_thread.edits) if office_thread else 0,
    )

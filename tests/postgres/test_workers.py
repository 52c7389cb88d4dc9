"""Several processor workers on a real PostgreSQL: every event applied exactly once and in order per entity;
the single-poller lock is taken over when its holder dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from sync.store.db import make_engine, upgrade
from sync.store.locks import LockHeld, single_instance
from sync.store.models import InboxMessage, SyncLog, TrackedRecord

pytestmark = pytest.mark.postgres
JOB_SEQUENCE = ["offered", "unscheduled"]  # then scheduled / paused alternately: every event a transition
WORKER = """
import sys
from connector.mapping import load_mapping
from sync.context import SyncContext
from sync.store.db import make_engine
from sync.inbound.processor import process_inbox
from sync.settings import load_settings
settings = load_settings(database_url=sys.argv[1])
ctx = SyncContext(settings=settings, engine=make_engine(settings.database_url), mapping=load_mapping())
total, idle = 0, 0
while idle < 3:
    done = process_inbox(ctx, limit=50).processed
    total += done
    idle = idle + 1 if done == 0 else 0
print(total)
"""


def envelope(message_id: str, data: dict) -> dict:
    actions = [{"ID": None, "Put": {"job": data}}]
    request = {"ProcedureID": "p", "Type": "job", "Payload": {"Actions": actions}}
    return {"Message": {"ID": message_id, "Receipt": "r", "Request": request}}


def seed(url: str, jobs: int, rounds: int) -> dict[str, list[str]]:
    """jobs x rounds job events, interleaved across jobs, each one a state change."""
    engine = make_engine(url)
    upgrade(engine)
    start = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    expected: dict[str, list[str]] = {}
    with Session(engine) as session:
        for j in range(jobs):
            session.add(
                TrackedRecord(
                    system="dispatch_connect",
                    crm_object="WorkOrder",
                    crm_id=f"0WO{j:015d}",
                    external_id=f"J-{j}",
                )
            )
        for r in range(rounds):
            status = JOB_SEQUENCE[r] if r < 2 else ("scheduled", "paused")[r % 2]
            for j in range(jobs):
                message_id = f"m-{r:03d}-{j:03d}"
                at = start + timedelta(minutes=r)
                data = {
                    "id": j,
                    "external_id": f"J-{j}",
                    "status": status,
                    "status_message": f"round {r}",
                    "updated_at": at.isoformat(),
                }
                session.add(
                    InboxMessage(
                        message_id=message_id,
                        system="dispatch_connect",
                        type="job",
                        entity_key=f"job:J-{j}",
                        payload=envelope(message_id, data),
                        received_at=at + timedelta(seconds=j),
                    )
                )
                expected.setdefault(f"J-{j}", []).append(message_id)
        session.commit()
    engine.dispose()
    return expected


def test_three_workers_apply_every_event_once_and_in_order(pg_url: str) -> None:
    expected = seed(pg_url, jobs=20, rounds=15)
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, pg_url], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    counts = [int(w.communicate(timeout=240)[0].strip()) for w in workers]
    assert sum(counts) == 300 and sum(1 for c in counts if c > 0) >= 2  # the work was shared
    engine = make_engine(pg_url)
    with Session(engine) as session:
        messages = session.exec(select(InboxMessage)).all()
        assert {m.status for m in messages} == {"processed"} and {m.attempts for m in messages} == {1}
        rows = session.exec(
            select(SyncLog).where(col(SyncLog.msg_id).is_not(None)).order_by(col(SyncLog.id))
        ).all()
    applied: dict[str, list[str]] = {}
    for row in rows:
        if row.entity == "job" and " -> " in row.message:
            applied.setdefault(row.external_id or "", []).append(row.msg_id or "")
    assert applied == expected  # exactly once each, in arrival order per entity
    engine.dispose()


HOLDER = """
import sys, time
from sync.store.db import make_engine
from sync.store.locks import single_instance
with single_instance(make_engine(sys.argv[1]), "poller"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_poller_lock_is_taken_over_when_the_holder_dies(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LockHeld), single_instance(engine, "poller"):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.monotonic() + 5  # well within one poll interval
    while True:
        try:
            with single_instance(engine, "poller"):
                break
        except LockHeld:
            assert time.monotonic() < deadline, "the dead holder's lock was not released"
            time.sleep(0.1)
    engine.dispose()


def test_json_payload_survives_postgres(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    payload = envelope("m-x", {"external_id": "J", "status": "offered", "note": "ünïcødé ☃ \\\" ' <b>"})
    with Session(engine) as session:
        session.add(
            InboxMessage(
                message_id="m-x", system="dispatch_connect", payload=payload, received_at=datetime.now(UTC)
            )
        )
        session.commit()
    with Session(engine) as session:
        assert json.dumps(session.get(InboxMessage, "m-x").payload) == json.dumps(payload)
    engine.dispose()

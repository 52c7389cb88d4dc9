"""The crash suite with streaming on: the office edits work orders while the daemon runs and is killed, and
the evidence that the daemon's StreamListener really streamed.

Every edit is a Salesforce change event. With STREAMING=on the daemon's publish job runs the watermark cycle
only at start and then every STREAM_PUBLISH_INTERVAL_S (300 s), so during a run the events are what carries
an edit to Dispatch; a SIGKILL may land inside a coalescing window or a publish, and the restarted daemon
resumes after the replay ids it stored (store then advance: only after the outbox commit).
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session, select

from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.store.models import StreamPosition

if TYPE_CHECKING:
    from tests.chaos.scenario import World

# The listener's line per published window (sync/outbound/streaming.py StreamListener._flush).
ACCOUNT_EVERY = 10
WINDOW_LINE = re.compile(r"change events: (\d+) event\(s\), (\d+) record\(s\) changed")


class OfficeThread(threading.Thread):
    """Edits the Description of a seeded random work order every `interval_s` until stopped; `edits` holds
    the last text per work order (set after the save returned: the CRM has it). Every ACCOUNT_EVERY-th edit
    is of the service providers' billing street instead, so the Account channel has events too (a field the
    work orders' own organization records do not carry: their jobs are not sent again for it)."""

    def __init__(self, sf: SalesforceEmulator, orders: list[str], *, seed: int, interval_s: float = 0.1):
        super().__init__(name="office", daemon=True)
        self.sf, self.orders, self.interval_s = sf, orders, interval_s
        self.providers = [i for i in sf.record_ids("Account") if sf.get("Account", i).get("Dispatch_Me__c")]
        self.rng = random.Random(seed)
        self.edits: dict[str, str] = {}
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.stopping.wait(self.interval_s):
                n += 1
                if n % ACCOUNT_EVERY == 1:
                    for provider in self.providers:
                        self.sf.update("Account", provider, {"BillingStreet": f"{n} Depot Road"})
                    continue
                wo = self.rng.choice(self.orders)
                text = f"Trips under load; office note {n}"
                self.sf.update("WorkOrder", wo, {"Description": text})
                self.edits[wo] = text
        except BaseException as exc:  # surfaced by the caller
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def edits_missing(w: World, edits: dict[str, str]) -> list[str]:
    """Office edits whose text Dispatch's job does not show."""
    jobs = w.dispatch.records("job")
    return [
        f"{wo}: office edit {text!r} not in Dispatch (job has {jobs.get(wo, {}).get('description')!r})"
        for wo, text in edits.items()
        if jobs.get(wo, {}).get("description") != text
    ]


def wait_edits(w: World, edits: dict[str, str], timeout: float, poll_s: float = 0.2) -> list[str]:
    """Edits still missing after waiting up to `timeout` for them to reach Dispatch."""
    deadline = time.monotonic() + timeout
    while (missing := edits_missing(w, edits)) and time.monotonic() < deadline:
        time.sleep(poll_s)
    return missing


@dataclass
class StreamEvidence:
    """What shows the daemon streamed: its stored positions and its log."""

    positions: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # channel -> (mode, replay)
    last_replay_id: int = 0  # the newest change event Salesforce (the emulator) published
    windows: int = 0  # "change events: ..." lines in the daemon log (windows published)
    records_changed: int = 0  # records those windows changed (office edits carried by events)
    events: int = 0

    @property
    def caught_up(self) -> bool:
        """Every event published was consumed, its changes committed, and its replay id stored."""
        stored = [replay for _mode, replay in self.positions.values() if replay is not None]
        return bool(stored) and max(stored) == self.last_replay_id

    def problems(self, channels: set[str]) -> list[str]:
        found = []
        for channel in sorted(channels):
            mode, replay = self.positions.get(channel, ("absent", None))
            if mode != "streaming" or replay is None:
                found.append(f"{channel}: stream_position {mode}, replay id {replay}")
        if not self.caught_up:
            found.append(f"stored replay ids {self.positions} behind the newest event {self.last_replay_id}")
        if not self.windows or not self.records_changed:
            found.append(
                f"the daemon log shows {self.windows} window(s), {self.records_changed} record(s) changed"
            )
        return found


def stream_evidence(w: World, log_path: Path) -> StreamEvidence:
    with Session(w.engine) as session:
        rows = session.exec(select(StreamPosition)).all()
    evidence = StreamEvidence(
        positions={r.channel: (r.mode, int(r.replay_id) if r.replay_id else None) for r in rows},
        last_replay_id=int(w.sf.streaming.status()["last_replay_id"]),
    )
    for match in WINDOW_LINE.finditer(log_path.read_text(errors="replace")):
        evidence.windows += 1
        evidence.events += int(match.group(1))
        evidence.records_changed += int(match.group(2))
    return evidence


def wait_caught_up(w: World, log_path: Path, timeout: float, poll_s: float = 0.2) -> StreamEvidence:
    """The last write-backs' echoes are still in a window for up to STREAM_COALESCE_MS: wait for them."""
    deadline = time.monotonic() + timeout
    while not (evidence := stream_evidence(w, log_path)).caught_up and time.monotonic() < deadline:
        time.sleep(poll_s)
    return evidence


@dataclass
class KillMoment:
    """A SIGKILL seen from outside: had the killed daemon published windows of events, and how many events
    had Salesforce published beyond the replay ids it had stored (read again after the restart)."""

    streamed: bool
    unstored: int


def kill_moment(w: World, log_path: Path) -> KillMoment:
    """Right after a kill (before the restart): the killed process's part of the log, the stored ids."""
    text = log_path.read_text(errors="replace").rsplit("--- start ", 1)[-1]
    evidence = stream_evidence(w, log_path)
    stored = [replay for _mode, replay in evidence.positions.values() if replay is not None]
    return KillMoment(bool(WINDOW_LINE.search(text)), evidence.last_replay_id - max(stored, default=0))

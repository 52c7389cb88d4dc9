"""In-process health of the daemon's scheduled jobs, shared by the scheduler, /healthz and the dashboard."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime

from sync.store.dbtypes import utcnow


@dataclass(frozen=True)
class JobStatus:
    name: str
    interval_s: float
    runs: int = 0
    failures: int = 0
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_result: str | None = None  # "ok" | "error" | "skipped" (another instance holds the lock)
    last_error: str | None = None
    last_summary: str | None = None
    last_success: datetime | None = None


@dataclass
class JobHealth:
    """Thread-safe registry the scheduler updates and readers copy."""

    _jobs: dict[str, JobStatus] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, name: str, interval_s: float) -> None:
        with self._lock:
            self._jobs[name] = JobStatus(name, interval_s)

    def started(self, name: str) -> None:
        with self._lock:
            self._jobs[name] = replace(self._jobs[name], last_started=utcnow())

    def finished(
        self, name: str, result: str, *, summary: str | None = None, error: str | None = None
    ) -> None:
        now = utcnow()
        with self._lock:
            job = self._jobs[name]
            self._jobs[name] = replace(
                job,
                runs=job.runs + 1,
                failures=job.failures + (result == "error"),
                last_finished=now,
                last_result=result,
                last_error=error,
                last_summary=summary,
                last_success=now if result == "ok" else job.last_success,
            )

    def snapshot(self) -> dict[str, JobStatus]:
        with self._lock:
            return dict(self._jobs)

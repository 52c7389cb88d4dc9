"""Prometheus metrics of the daemon: queue depths (read at scrape time), job runs and last success, errors
by kind, API calls per system, events processed (rate() of it gives events per second).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from sync.store.models import InboxMessage, OutboxBatch, WriteBack


class _QueueDepth(Collector):
    """Reads queue depths from the store on each scrape, so they are never stale."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("dc_queue_depth", "Rows per queue and status", labels=["queue", "status"])
        with Session(self.engine) as session:
            for queue, model in (("inbox", InboxMessage), ("outbox", OutboxBatch), ("writeback", WriteBack)):
                rows = session.exec(select(model.status, func.count()).group_by(model.status)).all()  # type: ignore[attr-defined]
                for status, count in rows:
                    family.add_metric([queue, status], count)
        yield family


class Metrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.job_runs = Counter(
            "dc_job_runs", "Scheduled job runs", ["job", "result"], registry=self.registry
        )
        self.last_success = Gauge(
            "dc_job_last_success_timestamp_seconds", "Last successful run", ["job"], registry=self.registry
        )
        self.errors = Counter("dc_errors", "Errors by kind", ["kind"], registry=self.registry)
        self.api_calls = Counter("dc_api_calls", "HTTP calls per system", ["system"], registry=self.registry)
        self.events = Counter("dc_events_processed", "Inbox messages applied", registry=self.registry)
        self.registry.register(_QueueDepth(engine))

    def count_calls(self, session: Any, system: str) -> None:
        """Count every HTTP response of a requests.Session (retries and logins included)."""
        counter = self.api_calls.labels(system=system)
        session.hooks.setdefault("response", []).append(lambda response, *a, **k: counter.inc())

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

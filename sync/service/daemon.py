"""`dispatch-connector run`: one process that runs publish, poll, process, write-back flush and log
retention on their intervals, and serves /healthz, /readyz, /metrics, the support dashboard and the back
ends' push channels (webhooks, under /hooks/; sync.inbound.push).

Each job runs on a thread of its own when asked (sync.service.wakeups): by its interval's tick (APScheduler
3.x, `max_instances=1`, coalesced misfires) or by another job with work for it (sync.service.cadence: a
stored message wakes the processor, an applied one the write-back flush), so no job overlaps itself and
the intervals are the idle cadence (docs/engine.md, "Wake-ups"). A wake-up stays in its process: roles
run apart keep their intervals. The single-publisher and single-poller rules across processes come from
`sync.store.locks`, not from APScheduler. A job that raises is logged, counted and retried at its next
interval; it never stops the daemon. SIGTERM and SIGINT stop the scheduler after the unit of work in
hand (each job works in small committed units), then exit 0.
"""

from __future__ import annotations

import errno
import gc
import logging
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from connector.errors import ConfigurationError
from sync.context import SyncContext
from sync.errors import SettingsError, SyncError
from sync.inbound.customers import link_field_customers
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import publish_changes
from sync.service import cadence
from sync.service.health import JobHealth
from sync.service.mapping_check import require_mapping_ok
from sync.service.metrics import Metrics
from sync.service.wakeups import JobRunner, waking_through
from sync.store.db import session_scope
from sync.store.locks import LockHeld
from sync.store.synclog import error_words, purge_log, write_log
from sync.writeback.files import flush_file_fetches
from sync.writeback.logmirror import mirror_log
from sync.writeback.queue import flush_writebacks

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sync.outbound.streaming import StreamListener

log = logging.getLogger("dispatch_connector.daemon")
ROLES = {
    "publisher": ("publish",),
    "poller": ("poll",),
    "processor": ("process", "writeback", "retention"),
}
ROLES["all"] = tuple(job for jobs in ROLES.values() for job in jobs)
PROCESS_BATCH = 500
ctx_events: dict[int, int] = {}  # messages applied by the last process run, per context (for the counter)


def _publish(ctx: SyncContext) -> str:
    r = publish_changes(ctx)
    cadence.after_publish(ctx, r.requests_sent)
    return f"read {r.read}, changed {r.changed}, refused {r.refused}, requests {r.requests_sent}"


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _quiet(summary: str) -> bool:
    """A run that did nothing (every count zero) or only chose to wait: with the fast polling after activity
    (every 0.5 s for a minute) these would be most of the log, so they go at DEBUG (the health board and
    /metrics still count them)."""
    return summary.startswith("waiting") or all(float(n) == 0 for n in _NUMBER.findall(summary))


def _resend_pending(ctx: SyncContext) -> str:
    r = publish_changes(ctx, only={})  # no object named: sends what is pending, reads nothing
    return f"re-sent pending batches: requests {r.requests_sent}, errors {len(r.send_errors)}"


def _poll(ctx: SyncContext) -> str:
    r = drain_pull_channels(ctx, on_stored=cadence.wake_processor)
    cadence.after_poll(ctx, r)
    return f"received {r.received}, stored {r.stored}, redelivered {r.redelivered}, acked {r.acked}"


def _process(ctx: SyncContext) -> str:
    r = process_inbox(ctx, limit=PROCESS_BATCH)
    ctx_events[id(ctx)] = r.processed
    cadence.after_process(r, PROCESS_BATCH)
    return f"processed {r.processed}, failed {r.failed}, dead {r.dead}"


def _writeback(ctx: SyncContext) -> str:
    if (wait := cadence.writeback_wait(ctx)) > 0:  # woken early: let the Collections calls fill first
        return f"waiting {wait:.2f} s for more write-backs"
    mirrored = mirror_log(ctx)
    flush_file_fetches(ctx)  # files from the field into the CRM (sync/writeback/files.py)
    r = flush_writebacks(
        ctx.engine,
        ctx.crm,
        batch_size=ctx.settings.writeback_batch_size,
        concurrency=ctx.settings.writeback_concurrency,
        whole_calls=cadence.whole_calls(ctx),  # the queue still fills: full Collections calls only
    )
    linked = link_field_customers(ctx)  # jobs born in the field: their customer as a Contact (next flush)
    return (
        f"records {r.records_written} in {r.calls} call(s), failures {len(r.failures)}, log rows {mirrored}, "
        f"customers matched {linked.matched}, created {linked.created}"
    )


def _retention(ctx: SyncContext) -> str:
    with session_scope(ctx.engine) as session:
        removed = purge_log(session, timedelta(days=ctx.settings.log_retention_days))
    return f"purged {removed} log row(s)"


JOBS: dict[str, Callable[[SyncContext], str]] = {
    "publish": _publish,
    "poll": _poll,
    "process": _process,
    "writeback": _writeback,
    "retention": _retention,
}


@dataclass
class Daemon:
    ctx: SyncContext
    role: str = "all"
    health: JobHealth = field(default_factory=JobHealth)
    metrics: Metrics | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    fatal: str | None = None  # set when a job hit a configuration error: the daemon stops, exit code 2
    runners: dict[str, JobRunner] = field(default_factory=dict)  # one per scheduled job, made by start()
    listener: StreamListener | None = None  # CRM change events (STREAMING on/auto, a role that publishes)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; use one of {', '.join(ROLES)}")
        self.metrics = self.metrics or Metrics(self.ctx.engine)
        self.scheduler = BackgroundScheduler(timezone=UTC)
        for name in ROLES[self.role]:
            self.health.register(name, self.interval(name))
        for backend in self.ctx.backends.values():  # those handed in already built
            for session in backend.sessions():
                self.metrics.count_calls(session, backend.system)
        self.ctx.session_hooks.append(self.metrics.count_calls)

    def interval(self, name: str) -> float:
        s = self.ctx.settings
        return {
            "publish": s.publish_interval_s,
            "poll": s.poll_interval_s,
            "process": s.process_interval_s,
            "writeback": s.writeback_interval_s,
            "retention": 3600.0,
        }[name]

    def run_job(self, name: str) -> None:
        """One run of one job; never raises (the scheduler would only log it less helpfully)."""
        if self.stopping.is_set():
            return
        job = JOBS[name]
        if name == "publish" and self.listener is not None and not self.listener.cycle_due():
            # Change events stream: the reading cycle is a safety net every STREAM_PUBLISH_INTERVAL_S, but a
            # batch a failed send left pending still goes again every PUBLISH_INTERVAL_S.
            job = _resend_pending
        assert self.metrics is not None
        self.health.started(name)
        try:
            # A started daemon's jobs wake each other (sync.service.cadence); `run --once` runs them as asked.
            with waking_through(self.wake if self.runners else None):
                summary = job(self.ctx)
        except LockHeld as exc:
            self.health.finished(name, "skipped", summary=str(exc))
            self.metrics.job_runs.labels(job=name, result="skipped").inc()
            return
        except ConfigurationError as exc:
            # Retrying a refused login every interval would lock the integration user: stop instead.
            self._failed(name, exc)
            self.fatal = f"{name}: {exc}; fix the configuration and restart"
            self.stopping.set()
            return
        except Exception as exc:
            self._failed(name, exc)
            return
        self.health.finished(name, "ok", summary=summary)
        self.metrics.job_runs.labels(job=name, result="ok").inc()
        self.metrics.last_success.labels(job=name).set(datetime.now(UTC).timestamp())
        if name == "process":
            self.metrics.events.inc(ctx_events.pop(id(self.ctx), 0))
        level = logging.DEBUG if _quiet(summary) else logging.INFO
        log.log(level, "%s: %s", name, summary, extra={"job": name, "result": "ok"})

    def _failed(self, name: str, exc: Exception) -> None:
        assert self.metrics is not None
        message = error_words(exc)  # support reads it (health, sync log): the cause in words, never SQL
        self.health.finished(name, "error", error=message)
        self.metrics.job_runs.labels(job=name, result="error").inc()
        self.metrics.errors.labels(kind=f"{name}:{type(exc).__name__}").inc()
        log.error("%s failed, retrying at the next interval: %s", name, message, extra={"job": name})
        try:
            with session_scope(self.ctx.engine) as session:
                write_log(
                    session,
                    f"{name} job failed, retrying at the next interval: {message}",
                    level="error",
                    direction="internal",
                    entity=name,
                )
        except Exception:  # the store itself is down: the log line above is all we can do
            pass

    def wake(self, name: str, delay_s: float = 0.0) -> None:
        """Ask for a run of job `name` now (or in `delay_s`), without waiting for its interval. Requests
        collapse into one run; one made during a run gets one more run after it; a job of another role
        (another process) is not reached. Before start() and after stop(), nothing (sync.service.wakeups)."""
        runner = self.runners.get(name)
        if runner is not None and not self.stopping.is_set():
            runner.wake(delay_s)

    def check_mapping(self) -> None:
        """Refuse to start when the mapping does not match the org: a role that publishes or processes reads
        and writes CRM fields by it. Raises MappingMismatch (exit code 2) naming object, field and key; asked
        once per context (sync.service.mapping_check), so later calls cost nothing."""
        if {"publish", "process"} & set(ROLES[self.role]):
            require_mapping_ok(self.ctx)

    def run_once(self) -> None:
        """Each job of the role once, in pipeline order (for `run --once`, tests and the demo)."""
        self.check_mapping()
        for name in ROLES[self.role]:
            self.run_job(name)

    def start(self) -> None:
        self.check_mapping()  # before anything is scheduled: a bad mapping stops the daemon here
        now = datetime.now(UTC)
        for name in ROLES[self.role]:
            # The job runs on its own thread when asked (a wake-up, or the interval's tick below).
            self.runners[name] = runner = JobRunner(name, partial(self.run_job, name))
            runner.start()
            interval = self.interval(name)
            self.scheduler.add_job(
                self.wake,
                "interval",
                args=[name],
                id=name,
                seconds=interval,
                next_run_time=now,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval)),
            )
        self.scheduler.start()
        self._start_listener()
        log.info("daemon started (role %s): %s", self.role, ", ".join(ROLES[self.role]))

    def _start_listener(self) -> None:
        """CRM change events publish what changed at once (sync/outbound/streaming.py, docs/streaming.md)."""
        settings = self.ctx.settings
        if settings.streaming == "off" or "publish" not in ROLES[self.role]:
            return
        from sync.outbound.streaming import StreamListener

        self.health.register("stream", settings.stream_coalesce_ms / 1000)
        self.listener = StreamListener(self.ctx, auto=settings.streaming == "auto", board=self.health)
        self.listener.start()

    def stop(self) -> None:
        """Stop scheduling; wait for the job in hand to finish its current unit of work."""
        self.stopping.set()
        if self.listener is not None:
            self.listener.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for runner in self.runners.values():
            runner.stop()
        log.info("daemon stopped")

    def ready(self) -> bool:
        return bool(self.scheduler.running) and not self.stopping.is_set()


def freeze_startup_heap() -> None:
    """Take what start-up built (modules, settings, mapping, engine, clients) out of the cyclic GC's view.

    Those objects live as long as the process, yet every full collection walked them all again: about
    90 ms a time in this engine, one in every second publish cycle of 1,000 changes, where the cycle itself
    takes about 400 ms. gc.freeze() is CPython's tool for long-running servers: later objects are collected
    as before, and reference counting still frees a frozen object once nothing refers to it."""
    gc.collect()
    gc.freeze()


def serve(
    daemon: Daemon,
    host: str,
    port: int,
    *,
    token: str | None = None,
    on_started: Callable[[str], None] | None = None,
    port_setting: str = "DASHBOARD_PORT",
) -> None:
    """Run the scheduler and the HTTP server until SIGTERM/SIGINT (or `daemon.stopping` is set).

    The port is bound before any job is scheduled, so a port in use stops start-up with a SettingsError
    naming `port_setting` instead of failing in the server thread after a round of jobs. Signal handlers are
    installed only on the main thread (Python allows nothing else); a caller on another thread, such as a
    test, stops the daemon by setting `daemon.stopping`."""
    import uvicorn

    listener = bind_listener(host, port, setting=port_setting)
    try:
        app = build_app(daemon, token=token)  # before the scheduler starts: a bad push path stops here
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]

        def _stop(signum: int, _frame: Any) -> None:
            log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
            server.should_exit = True
            daemon.stopping.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
        daemon.start()
    except BaseException:
        listener.close()
        raise
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.05)
    if not server.started:
        daemon.stop()
        listener.close()
        raise SyncError(f"the HTTP server on {host}:{port} did not start; see the log lines above")
    if on_started:
        bound = listener.getsockname()[1]
        on_started(f"http://{f'[{host}]' if ':' in host else host}:{bound}")
    while not daemon.stopping.is_set():
        daemon.stopping.wait(0.5)
    daemon.stop()
    server.should_exit = True
    thread.join(timeout=10)
    listener.close()


def bind_listener(host: str, port: int, *, setting: str = "DASHBOARD_PORT") -> socket.socket:
    """A TCP socket bound to (host, port) for the HTTP server; a SettingsError naming `setting` (and
    DASHBOARD_HOST with the daemon's own setting) when the port is taken or the address cannot be used."""
    check = f"check DASHBOARD_HOST and {setting}" if setting == "DASHBOARD_PORT" else f"check {setting}"
    if not 0 <= port <= 65535:  # getaddrinfo would take 70000 as 4464
        raise SettingsError(f"{setting} must be a port number from 0 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, OverflowError) as exc:
        raise SettingsError(f"cannot listen on {host}:{port} ({exc}); {check}") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"port {port} on {host} is already in use (another daemon or demo?); stop what holds it or "
                f"choose another port with {setting}"
            ) from None
        raise SettingsError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); {check}") from None
    return listener


def build_app(daemon: Daemon, *, token: str | None = None) -> FastAPI:
    """The daemon's HTTP app: the dashboard, health and metrics, plus the push channels (webhooks) of every
    configured back end when the daemon's role receives from back ends (`all`, `poller`). The publisher and
    processor roles serve none: they may run without the back ends' credentials, and a sender needs one
    stable URL anyway."""
    from sync.dashboard.app import create_dashboard_app
    from sync.inbound.push import mount_push_channels

    assert daemon.metrics is not None
    app = create_dashboard_app(
        daemon.ctx.engine,
        health=daemon.health,
        token=token,
        metrics=daemon.metrics.render,
        ready=daemon.ready,
    )
    if "poll" in ROLES[daemon.role]:
        limit = daemon.ctx.settings.push_max_body_bytes
        paths = mount_push_channels(app, daemon.ctx, max_body_bytes=limit)
        if paths:
            log.info("push channels served (body limit %d bytes): %s", limit, ", ".join(paths))
        else:
            log.info("push channels served: none (no configured back end has one)")
    return app

"""The read-only support dashboard: sync health, the sync log, per-record timelines, state machine diagrams.

Server-rendered (Jinja2, autoescaped, no JavaScript, no external assets) so it works on an offline machine and
every value from the CRM or Dispatch renders as text. It only reads the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import sqlalchemy
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from statemachines import KINDS, mermaid, transition_table
from sync.dashboard.auth import install_token_guard
from sync.dashboard.diagram import machine_svg
from sync.dashboard.failing import failing_write_backs
from sync.dashboard.timeline import record_timeline
from sync.service.health import JobHealth, JobStatus
from sync.store.dbtypes import utcnow
from sync.store.models import InboxMessage, OutboxBatch, SyncLog, WriteBack
from sync.store.synclog import DIRECTIONS, LEVELS, query_log, without_sql

TEMPLATES = Path(__file__).parent / "templates"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
DEFAULT_LIMIT, MAX_LIMIT = 200, 2000
_SINCE = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# (title, table, statuses always shown even at 0) for the health page's queue depths.
QUEUES: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("Inbox (polled and pushed messages)", InboxMessage, ("new", "processed", "dead")),
    ("Outbox batches (agent/in)", OutboxBatch, ("pending", "sent", "confirmed", "failed")),
    ("CRM write-back queue", WriteBack, ("pending", "done", "failed", "skipped")),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def utc_text(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_ms_text(value: datetime | None) -> str:
    """Millisecond precision for the timeline, where several steps happen within one second."""
    text = utc_text(value)
    if value is None:
        return text
    return text[:-1] + f".{value.microsecond // 1000:03d}Z"


def parse_since(text: str) -> timedelta:
    """`15m`, `2h`, `3d`, `1w` -> a duration; anything else is refused with a message for the form."""
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"'since' must look like 15m, 2h, 3d or 1w (got {text[:40]!r})")
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = utc_text
    env.filters["utc_ms"] = utc_ms_text
    env.filters["words"] = without_sql  # rows written before errors were put in words may hold SQL
    return env


@dataclass
class LogFilters:
    record: str = ""
    entity: str = ""
    direction: str = ""
    level: str = ""
    since: str = ""
    limit: int = DEFAULT_LIMIT
    errors: list[str] = field(default_factory=list)


def parse_log_filters(params: dict[str, str]) -> LogFilters:
    """GET params -> filters; bad values are reported on the page (and ignored) rather than a bare 422."""
    f = LogFilters(
        record=params.get("record", "").strip()[:255],
        entity=params.get("entity", "").strip()[:40],
        direction=params.get("direction", "").strip(),
        level=params.get("level", "").strip(),
        since=params.get("since", "").strip()[:20],
    )
    if f.direction and f.direction not in DIRECTIONS:
        f.errors.append(f"'direction' must be one of {', '.join(DIRECTIONS)}")
        f.direction = ""
    if f.level and f.level not in LEVELS:
        f.errors.append(f"'level' must be one of {', '.join(LEVELS)}")
        f.level = ""
    if f.since:
        try:
            parse_since(f.since)
        except ValueError as exc:
            f.errors.append(str(exc))
            f.since = ""
    raw_limit = params.get("limit", "").strip()
    if raw_limit:
        if raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT:
            f.limit = int(raw_limit)
        else:
            f.errors.append(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return f


def _counts_by_status(session: Session, model: Any) -> dict[str, int]:
    rows = session.exec(select(model.status, func.count()).group_by(model.status)).all()
    return {str(status): int(count) for status, count in rows}


def _count_since(session: Session, level: str, since: datetime) -> int:
    query = (
        select(func.count()).select_from(SyncLog).where(col(SyncLog.level) == level, col(SyncLog.at) >= since)
    )
    return int(session.exec(query).one())


def health_context(session: Session, health: JobHealth | None) -> dict[str, Any]:
    day_ago = utcnow() - timedelta(hours=24)
    jobs: list[JobStatus] = sorted((health.snapshot() if health else {}).values(), key=lambda j: j.name)
    failing, failing_total = failing_write_backs(session)
    return {
        "failing_write_backs": failing,
        "failing_total": failing_total,
        "jobs": jobs,
        "has_health": health is not None,
        "queues": [(title, _counts_by_status(session, model), statuses) for title, model, statuses in QUEUES],
        "errors_24h": _count_since(session, "error", day_ago),
        "warnings_24h": _count_since(session, "warning", day_ago),
        "recent_errors": query_log(session, level="error", limit=10),
    }


def _log_context(session: Session, filters: LogFilters) -> dict[str, Any]:
    since = utcnow() - parse_since(filters.since) if filters.since else None
    rows = query_log(
        session,
        record=filters.record or None,
        entity=filters.entity or None,
        direction=filters.direction or None,
        level=filters.level or None,
        since=since,
        limit=filters.limit,
    )
    entities = session.exec(select(SyncLog.entity).distinct().where(col(SyncLog.entity).is_not(None))).all()
    return {
        "rows": rows,
        "filters": filters,
        "entities": sorted(str(e) for e in entities),
        "levels": LEVELS,
        "directions": DIRECTIONS,
    }


def _machines_context() -> dict[str, Any]:
    return {
        "machines": [
            {
                "kind": kind,
                "table": transition_table(kind),
                "mermaid": mermaid(kind),
                "svg": machine_svg(kind),
            }
            for kind in KINDS
        ]
    }


def create_dashboard_app(
    engine: sqlalchemy.Engine,
    *,
    health: JobHealth | None = None,
    token: str | None = None,
    metrics: Callable[[], bytes] | None = None,
    ready: Callable[[], bool] | None = None,
) -> FastAPI:
    app = FastAPI(title="dispatch-connector dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    env = make_templates()

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.update(path=request.url.path, has_metrics=metrics is not None, now=utcnow())
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    if token:  # registered first, so it runs inside the security headers: a refused request gets them too
        install_token_guard(app, token)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        with Session(engine) as session:
            return render(request, "index.html", **health_context(session, health))

    @app.get("/log", response_class=HTMLResponse)
    def log(request: Request) -> HTMLResponse:
        filters = parse_log_filters(dict(request.query_params))
        with Session(engine) as session:
            context = _log_context(session, filters)
        return render(request, "log.html", status_code=400 if filters.errors else 200, **context)

    @app.get("/records")
    def record_search(id: str = "") -> Response:
        """The header's search box (a GET form cannot put the id into the path)."""
        if not id.strip():
            return RedirectResponse("/log", status_code=303)
        return RedirectResponse(f"/records/{quote(id.strip()[:255], safe='')}", status_code=303)

    @app.get("/records/{record_id:path}", response_class=HTMLResponse)
    def record(request: Request, record_id: str) -> HTMLResponse:
        with Session(engine) as session:
            timeline = record_timeline(session, record_id[:255])
        return render(request, "record.html", status_code=200 if timeline.found else 404, timeline=timeline)

    @app.get("/machines", response_class=HTMLResponse)
    def machines(request: Request) -> HTMLResponse:
        return render(request, "machines.html", **_machines_context())

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/readyz")
    def readyz() -> PlainTextResponse:
        try:
            is_ready = ready() if ready is not None else True
        except Exception:  # a failing readiness probe means "not ready", never a 500
            is_ready = False
        return PlainTextResponse("ready" if is_ready else "not ready", status_code=200 if is_ready else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        if metrics is None:
            return PlainTextResponse("metrics are not enabled in this process", status_code=404)
        return Response(content=metrics(), media_type=METRICS_CONTENT_TYPE)

    return app

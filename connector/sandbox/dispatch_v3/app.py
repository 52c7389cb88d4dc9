"""The WSGI face of the Dispatch v3 emulator: token, work order, jobs, appointments, and the control API.

Every API request is counted under its endpoint name (`ENDPOINTS`), then delayed and faulted by that name's
plan, then (except the token endpoint) authenticated, then answered. The app sees the emulator only through
`EmulatorSurface`, so the emulator imports the app and not the other way round.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from connector.dispatch_v3.validation import normalize_work_order
from connector.sandbox.dispatch_v3 import lifecycle
from connector.sandbox.dispatch_v3.control import CONTROL_METHODS, FieldRefused
from connector.sandbox.dispatch_v3.listing import QueryError, page, parse_query
from connector.sandbox.dispatch_v3.lookup_routes import LOOKUP_ENDPOINTS, LookupApi
from connector.sandbox.dispatch_v3.lookups import LookupBook
from connector.sandbox.dispatch_v3.store import Record, V3Store, parse_iso
from connector.sandbox.dispatch_v3.tokens import TokenBook
from connector.sandbox.server import Faults, apply_faults
from statemachines import EntityState, StateMachineError, request_change

ENDPOINTS = (
    "token", "workorder", "jobs.get", "jobs.patch", "jobs.list",
    "appointments.post", "appointments.get", "appointments.patch", "appointments.list",
    *LOOKUP_ENDPOINTS.values(),
)  # fmt: skip
JOB_PATCH_FIELDS = ("status", "title", "description")
APPOINTMENT_PATCH_FIELDS = ("status", "time", "duration")
Handler = Callable[[Request, int | None], Response]


class EmulatorSurface(Protocol):
    store: V3Store
    lookups: LookupBook
    tokens: TokenBook
    faults: Faults
    latency_s: float
    token_path: str
    workorder_path: str

    def count(self, name: str, n: int = 1) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def set_faults(self, endpoint: str = ..., clear: bool = ..., **plan: Any) -> dict[str, Any]: ...

    def set_token_ttl(self, seconds: float) -> dict[str, Any]: ...

    def expire_tokens(self) -> dict[str, Any]: ...

    def jobs(self) -> list[Record]: ...

    def appointments(self) -> list[Record]: ...

    def technicians(self) -> list[Record]: ...

    def service_providers(self) -> list[Record]: ...


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def invalid(errors: list[dict[str, str]]) -> Response:
    return json_response({"error": "validation failed", "errors": errors}, 422)


class BadRequest(Exception):
    """Answered 400 with its message."""


class DispatchV3App:
    def __init__(self, emulator: EmulatorSurface) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self.lookups = LookupApi(emulator.lookups)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.route(request)
        except BadRequest as exc:
            response = error(400, str(exc))
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        path = "/" + request.path.strip("/")
        if path == "/control" or path.startswith("/control/"):
            self.emulator.count("control")
            return self.control(path.removeprefix("/control").strip("/"), request)
        found = self.resolve(request.method, path)
        if isinstance(found, Response):
            return found
        endpoint, handler, record_id = found
        self.emulator.count(endpoint)
        if self.emulator.latency_s > 0:
            time.sleep(self.emulator.latency_s)
        status = apply_faults(self.emulator.faults, endpoint, request.environ)
        if status == 429:
            plan = self.emulator.faults.plan_for(endpoint)
            retry_after = str(plan.retry_after_s if plan else 1)
            return error(429, "too many requests", {"Retry-After": retry_after})
        if status is not None:
            return error(status, f"injected fault on {endpoint}")
        if endpoint != "token" and not self.authorized(request):
            self.emulator.count("unauthorized")
            return error(401, "invalid_token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return handler(request, record_id)

    def resolve(self, method: str, path: str) -> tuple[str, Handler, int | None] | Response:
        """(endpoint name, handler, record id) for a request, or the 404/405 answer."""
        record_id: int | None = None
        routes: dict[str, tuple[str, Handler]]
        if path == self.emulator.token_path:
            routes = {"POST": ("token", self.token)}
        elif path == self.emulator.workorder_path:
            routes = {"POST": ("workorder", self.create_work_order)}
        elif path == "/v3/jobs":
            routes = {"GET": ("jobs.list", self.list_jobs)}
        elif path in LOOKUP_ENDPOINTS:
            name = LOOKUP_ENDPOINTS[path]
            routes = {"GET": (name, self.lookups.handler(name))}
        elif path == "/v3/appointments":
            routes = {
                "GET": ("appointments.list", self.list_appointments),
                "POST": ("appointments.post", self.post_appointment),
            }
        else:
            head, _, tail = path.rpartition("/")
            if head == "/v3/jobs" and tail.isdigit():
                routes = {"GET": ("jobs.get", self.get_job), "PATCH": ("jobs.patch", self.patch_job)}
            elif head == "/v3/appointments" and tail.isdigit():
                routes = {
                    "GET": ("appointments.get", self.get_appointment),
                    "PATCH": ("appointments.patch", self.patch_appointment),
                }
            else:
                return error(404, "not found")
            record_id = int(tail)
        found = routes.get(method)
        if found is None:
            return error(405, f"use {' or '.join(routes)}")
        return found[0], found[1], record_id

    def authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.emulator.tokens.valid(token.strip())

    # -- token and work order --------------------------------------------------------------------

    def token(self, request: Request, _: int | None) -> Response:
        body = json_body(request)
        if body.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type")
        if not self.emulator.tokens.credentials_match(body.get("client_id"), body.get("client_secret")):
            return error(401, "invalid_client")
        return json_response(self.emulator.tokens.issue())

    def create_work_order(self, request: Request, _: int | None) -> Response:
        doc, violations = normalize_work_order(json_body(request))
        if violations:
            return invalid([{"path": v.path, "message": v.message} for v in violations])
        status = doc.get("status") or "offered"
        try:
            request_change("job", EntityState(), status, at=self.store.at())
        except StateMachineError as exc:
            return invalid([{"path": "status", "message": f"cannot start a work order in {status!r}: {exc}"}])
        try:
            ids = self.store.create_work_order(doc, status)
        except ValueError as exc:
            return invalid([{"path": "appointment_windows[0]", "message": str(exc)}])
        return json_response(ids, 201)

    # -- jobs ------------------------------------------------------------------------------------

    def get_job(self, _: Request, job_id: int | None) -> Response:
        with self.store.lock:
            job = self.store.jobs.get(job_id or 0)
            return error(404, "not found") if job is None else json_response(job)

    def patch_job(self, request: Request, job_id: int | None) -> Response:
        body = json_body(request)
        errors = unknown_fields(body, JOB_PATCH_FIELDS)
        errors += [
            {"path": k, "message": "must be a non-empty string"}
            for k in ("status", "title")
            if k in body and (not isinstance(body[k], str) or not body[k].strip())
        ]
        if "description" in body and not isinstance(body["description"], str | None):
            errors.append({"path": "description", "message": "must be a string or null"})
        if errors:
            return invalid(errors)
        with self.store.lock:
            job = self.store.jobs.get(job_id or 0)
            if job is None:
                return error(404, "not found")
            try:
                if "status" in body:
                    lifecycle.change_job(self.store, job, body["status"])
            except StateMachineError as exc:
                return error(422, str(exc))
            changed: Record = {
                k: body[k] for k in ("title", "description") if k in body and body[k] != job[k]
            }
            if changed:
                job.update(changed)
                self.store.touch(job)
            return json_response(job)

    def list_jobs(self, request: Request, _: int | None) -> Response:
        return self.listing(request, "jobs", self.store.jobs)

    # -- appointments ----------------------------------------------------------------------------

    def get_appointment(self, _: Request, appointment_id: int | None) -> Response:
        with self.store.lock:
            appointment = self.store.appointments.get(appointment_id or 0)
            return error(404, "not found") if appointment is None else json_response(appointment)

    def post_appointment(self, request: Request, _: int | None) -> Response:
        body = json_body(request)
        errors = unknown_fields(body, ("job_id", "time", "duration", "status"))
        start, duration, time_errors = appointment_time(body, required=True)
        errors += time_errors
        status = body.get("status", "scheduled")
        if status not in ("scheduled", "draft"):
            errors.append({"path": "status", "message": f"must be scheduled or draft, got {status!r}"})
        job_id = body.get("job_id")
        with self.store.lock:
            job = self.store.jobs.get(job_id) if type(job_id) is int else None
            if job is None:
                errors.append(
                    {"path": "job_id", "message": f"required: the Dispatch id of a job, got {job_id!r}"}
                )
            if errors or job is None or start is None:
                return invalid(errors)
            try:
                appointment = lifecycle.book_appointment(self.store, job, status, start, duration or 3600)
            except StateMachineError as exc:
                return error(422, str(exc))
            return json_response(appointment, 201)

    def patch_appointment(self, request: Request, appointment_id: int | None) -> Response:
        body = json_body(request)
        errors = unknown_fields(body, APPOINTMENT_PATCH_FIELDS)
        start, duration, time_errors = appointment_time(body, required=False)
        errors += time_errors
        if "status" in body and not isinstance(body["status"], str):
            errors.append({"path": "status", "message": "must be a string"})
        if errors:
            return invalid(errors)
        with self.store.lock:
            appointment = self.store.appointments.get(appointment_id or 0)
            if appointment is None:
                return error(404, "not found")
            try:
                if "status" in body:
                    lifecycle.change_appointment(self.store, appointment, body["status"])
            except StateMachineError as exc:
                return error(422, str(exc))
            lifecycle.reschedule(self.store, appointment, start, duration)
            return json_response(appointment)

    def list_appointments(self, request: Request, _: int | None) -> Response:
        return self.listing(request, "appointments", self.store.appointments)

    def listing(self, request: Request, kind: str, table: dict[int, Record]) -> Response:
        try:
            query = parse_query(request.args, kind)
        except QueryError as exc:
            return error(400, str(exc))
        with self.store.lock:
            return json_response(page(table.values(), query))

    # -- control API (the emulator's own, unauthenticated; bind it to loopback) ------------------

    def control(self, path: str, request: Request) -> Response:
        emulator = self.emulator
        if request.method == "GET":
            views: dict[str, Callable[[], Any]] = {
                "": emulator.state,
                "state": emulator.state,
                "jobs": emulator.jobs,
                "appointments": emulator.appointments,
                "technicians": emulator.technicians,
                "providers": emulator.service_providers,
            }
            view = views.get(path)
            return error(404, f"no control resource {path!r}") if view is None else json_response(view())
        if request.method != "POST":
            return error(405, "use GET or POST")
        kwargs = json_body(request)
        try:
            if path == "faults":
                return json_response(emulator.set_faults(**kwargs))
            if path == "token_ttl":
                return json_response(emulator.set_token_ttl(**kwargs))
            if path == "expire_tokens":
                return json_response(emulator.expire_tokens(**kwargs))
            if path not in CONTROL_METHODS:
                return error(404, f"unknown control action {path!r}")
            return json_response({"result": getattr(emulator, CONTROL_METHODS[path])(**kwargs)})
        except KeyError as exc:
            return error(404, str(exc.args[0]) if exc.args else "not found")
        except (StateMachineError, FieldRefused) as exc:
            return error(409, str(exc))
        except (TypeError, ValueError) as exc:
            return error(400, str(exc))


def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is `{}`); BadRequest otherwise."""
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("body is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def unknown_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> list[dict[str, str]]:
    return [
        {"path": key, "message": f"is not a field this request takes ({', '.join(allowed)})"}
        for key in body
        if key not in allowed
    ]


def appointment_time(body: dict[str, Any], *, required: bool) -> tuple[float | None, int | None, list[Any]]:
    """(start, duration, violations) from an appointment body's `time` and `duration`."""
    errors: list[dict[str, str]] = []
    start: float | None = None
    if "time" in body or required:
        try:
            start = parse_iso(body.get("time"))
        except ValueError:
            errors.append(
                {"path": "time", "message": "required: an ISO 8601 time, e.g. 2017-01-01T05:00:00Z"}
            )
    duration = body.get("duration")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0
    ):
        errors.append({"path": "duration", "message": "must be a positive number of seconds"})
        duration = None
    return start, duration, errors

"""The WSGI face of the Dispatch Connect emulator: signed `agent/*` endpoints and the unsigned control API.

The app knows the emulator only through `EmulatorSurface`, the few members it routes to, so the emulator
imports the app and not the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from connector.dispatch_connect.client import (
    HEADER_KEY,
    HEADER_MESSAGE_ID,
    HEADER_RECORD_TYPE,
    HEADER_SIGNATURE,
)
from connector.dispatch_connect.signing import verify
from connector.sandbox.dispatch_connect.control import CONTROL_METHODS
from connector.sandbox.dispatch_connect.queue import OutboundQueue, ReceiptError
from connector.sandbox.server import Faults, apply_faults

SIGNED_ENDPOINTS = ("agent/in", "agent/out", "agent/ack", "agent/billing_document_pdfs")
DATAFILES = "v1/datafiles/"


class EmulatorSurface(Protocol):
    """What the routes need of the emulator; the control actions are looked up by name (`CONTROL_METHODS`)."""

    public_key: str
    secret_hex: str
    faults: Faults
    queue: OutboundQueue

    def count(self, name: str, n: int = 1) -> None: ...

    def receive(
        self,
        body: bytes,
        *,
        content_type: str = ...,
        content_encoding: str = ...,
        record_type: str | None = ...,
        msg_id: str | None = ...,
    ) -> None: ...

    def wait_idle(self, timeout: float = ...) -> bool: ...

    def state(self) -> dict[str, Any]: ...

    def file_answer(self, token: str, file_format: str) -> tuple[int, bytes, str]: ...

    def billing_pdfs(self, job_id: Any) -> dict[str, str]: ...

    def records(self, record_type: str) -> dict[str, dict[str, Any]]: ...

    def set_faults(self, endpoint: str = ..., clear: bool = ..., **plan: Any) -> dict[str, Any]: ...

    def set_queue_faults(
        self,
        duplicate_rate: float | None = ...,
        shuffle_rate: float | None = ...,
        clear: bool = ...,
    ) -> dict[str, Any]: ...


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def error(status: int, code: str, message: str) -> Response:
    return json_response({"error": message, "code": code}, status)


class DispatchApp:
    """Routes requests to the emulator. Signature checks happen before anything is read or stored."""

    def __init__(self, emulator: EmulatorSurface) -> None:
        self.emulator = emulator

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.route(request, environ)
        return response(environ, start_response)

    def route(self, request: Request, environ: dict[str, Any]) -> Response:
        path = request.path.strip("/")
        if path in SIGNED_ENDPOINTS:
            if request.method != "POST":
                return error(405, "method_not_allowed", "use POST")
            self.emulator.count(path)
            status = apply_faults(self.emulator.faults, path, environ)
            if status is not None:
                return error(status, "injected_fault", f"injected fault on {path}")
            return self.signed(path, request)
        if path.startswith(DATAFILES):
            return self.datafile(path.removeprefix(DATAFILES), request, environ)
        if path.startswith("control/") or path == "control":
            self.emulator.count("control")
            return self.control(path.removeprefix("control").strip("/"), request)
        return error(404, "not_found", f"no endpoint {request.path}")

    # -- signed endpoints ------------------------------------------------------------------------

    def signed(self, path: str, request: Request) -> Response:
        body = request.get_data(cache=False)
        key = request.headers.get(HEADER_KEY)
        signature = request.headers.get(HEADER_SIGNATURE)
        if key != self.emulator.public_key:
            self.emulator.count("unauthorized")
            return error(401, "invalid_key", f"{HEADER_KEY} is missing or unknown")
        if not verify(self.emulator.secret_hex, body, signature):
            self.emulator.count("unauthorized")
            return error(401, "invalid_signature", f"{HEADER_SIGNATURE} does not match the body")
        if path == "agent/in":
            self.emulator.receive(
                body,
                content_type=request.headers.get("Content-Type", ""),
                content_encoding=request.headers.get("Content-Encoding", ""),
                record_type=request.headers.get(HEADER_RECORD_TYPE),
                msg_id=request.headers.get(HEADER_MESSAGE_ID),
            )
            return json_response({"status": "received"})
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return error(400, "invalid_json", "body is not JSON")
        if not isinstance(data, dict):
            return error(400, "invalid_json", "body must be a JSON object")
        if path == "agent/out":
            return self.poll(data)
        if path == "agent/billing_document_pdfs":
            return json_response(self.emulator.billing_pdfs(data.get("job_id")))
        return self.ack(data)

    def poll(self, data: dict[str, Any]) -> Response:
        n = data.get("maxNumberOfMessages", 10)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            return error(400, "invalid_max", "maxNumberOfMessages must be a positive integer")
        return json_response(self.emulator.queue.receive(n))

    def ack(self, data: dict[str, Any]) -> Response:
        receipt = data.get("Receipt")
        if not isinstance(receipt, str) or not receipt:
            return error(400, "missing_receipt", "Receipt is required")
        procedure = data.get("ProcedureID")
        try:
            outcome = self.emulator.queue.delete(receipt, procedure if procedure else None)
        except ReceiptError as exc:
            self.emulator.count("acks_refused")
            return error(400, exc.code, str(exc))
        self.emulator.count("acks_error" if data.get("Result") == "error" else "acks")
        return json_response({"status": outcome})

    def datafile(self, rest: str, request: Request, environ: dict[str, Any]) -> Response:
        """The files-api: `GET v1/datafiles/{token}[/{format}]`, unsigned (the token names the file)."""
        if request.method != "GET":
            return error(405, "method_not_allowed", "use GET")
        self.emulator.count("files")
        status = apply_faults(self.emulator.faults, "files", environ)
        if status is not None:
            return error(status, "injected_fault", "injected fault on files")
        token, _, file_format = rest.partition("/")
        status, body, content_type = self.emulator.file_answer(token, file_format or "original")
        return Response(body, status=status, content_type=content_type)

    # -- control API (unsigned; the emulator's own, not Dispatch's) -------------------------------

    def control(self, path: str, request: Request) -> Response:
        emulator = self.emulator
        if request.method == "GET":
            if path in ("", "state"):
                return json_response(emulator.state())
            if path.startswith("records/"):
                return json_response(emulator.records(path.removeprefix("records/")))
            if path == "queue":
                return json_response(emulator.queue.peek())
            return error(404, "not_found", f"no control resource {path!r}")
        if request.method != "POST":
            return error(405, "method_not_allowed", "use GET or POST")
        try:
            kwargs = request.get_json(force=True, silent=False) if request.get_data() else {}
        except Exception:
            return error(400, "invalid_json", "body is not JSON")
        if not isinstance(kwargs, dict):
            return error(400, "invalid_json", "body must be a JSON object of keyword arguments")
        if path == "faults":
            return json_response(emulator.set_faults(**kwargs))
        if path == "queue_faults":
            return json_response(emulator.set_queue_faults(**kwargs))
        if path == "wait_idle":
            return json_response({"idle": emulator.wait_idle(float(kwargs.get("timeout", 5.0)))})
        return self.control_action(path, kwargs)

    def control_action(self, name: str, kwargs: dict[str, Any]) -> Response:
        if name not in CONTROL_METHODS:
            return error(404, "unknown_action", f"unknown control action {name!r}")
        try:
            result = getattr(self.emulator, name)(**kwargs)
        except KeyError as exc:
            return error(404, "not_found", str(exc.args[0]) if exc.args else "not found")
        except (TypeError, ValueError) as exc:
            return error(400, "bad_arguments", str(exc))
        return json_response({"result": result})

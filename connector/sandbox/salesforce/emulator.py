"""The Salesforce REST emulator: HTTPS on loopback with a throwaway CA, seeded from a fixture file.

`SalesforceEmulator` is what tests, the demo and benchmarks start; `serve` runs one in the foreground
for a CLI. Admin writes (fixtures, the Python API, `/control/records`) are attributed to the admin user,
connector writes to the user that logged in, so `LastModifiedById` tells them apart the way a real org does.
"""

from __future__ import annotations

import json
import ssl
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import trustme
from werkzeug.wrappers import Request, Response

from connector.sandbox.salesforce.rest import SalesforceRestApp, json_response
from connector.sandbox.salesforce.schema import ObjectDef, to_wire
from connector.sandbox.salesforce.store import (
    SalesforceApiError,
    SalesforceStore,
    load_fixture,
    utc_now,
)
from connector.sandbox.salesforce.streaming import DEFAULT_DAILY_ALLOCATION, DEFAULT_RETENTION_S, StreamingHub
from connector.sandbox.server import EmulatorServer, Faults

DEMO_FIXTURE = Path(__file__).parents[1] / "fixtures" / "demo_org.yaml"
# Credentials declared in demo_org.yaml (throwaway values for the offline demo, not secrets).
DEMO_USERNAME = "integration@demo.example"
DEMO_PASSWORD = "demo-password"
DEMO_SECURITY_TOKEN = "demo-token"
DEMO_CLIENT_ID = "dispatch-connector"
DEMO_CLIENT_SECRET = "demo-client-secret"
Fixture = Mapping[str, Any] | str | Path


def trusting_session(ca_path: str | Path) -> requests.Session:
    """A requests session that trusts only the CA at `ca_path` (and ignores REQUESTS_CA_BUNDLE); usable from
    another process than the emulator's."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_path)
    return session


class SalesforceEmulator:
    """A Salesforce org in a background thread. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        fixture: Fixture | None = None,
        *,
        api_version: str = "59.0",
        clock: Callable[[], datetime] = utc_now,
        faults: Faults | None = None,
        session_ttl_s: float | None = None,
        page_size: int = 2000,
        daily_api_limit: int = 1_000_000,
        event_retention_s: float = DEFAULT_RETENTION_S,
        daily_event_allocation: int = DEFAULT_DAILY_ALLOCATION,
        stream_timeout_s: float = 110.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = SalesforceStore(clock)
        if fixture is not None:
            load_fixture(self.store, fixture)
        self.faults = faults or Faults()
        self.app = SalesforceRestApp(
            self.store,
            api_version=api_version,
            faults=self.faults,
            session_ttl_s=session_ttl_s,
            page_size=page_size,
            daily_api_limit=daily_api_limit,
        )
        self.app.control = self._control
        self.streaming = StreamingHub(
            self.store,
            api_version=api_version,
            faults=self.faults,
            retention_s=event_retention_s,
            daily_event_allocation=daily_event_allocation,
            connect_timeout_s=stream_timeout_s,
        )
        self.store.on_change = self.streaming.publish  # after the fixture: seeding publishes no events
        self.app.streaming = self.streaming
        self.api_version = api_version
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._tmp = tempfile.TemporaryDirectory(prefix="sf-emulator-")
        self.ca_path = Path(self._tmp.name) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        self._server = EmulatorServer(self.app, host=host, port=port, ssl_context=ctx)
        self.base_url = self._server.base_url

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> str:
        return self._server.start()

    def stop(self) -> None:
        self.streaming.close()  # ends long polls still waiting
        self._server.stop()
        self._tmp.cleanup()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> SalesforceEmulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def session(self) -> requests.Session:
        """A requests session that trusts only this emulator's CA (and ignores REQUESTS_CA_BUNDLE)."""
        return trusting_session(self.ca_path)

    # --- accounting and faults -----------------------------------------------------------------

    @property
    def counts(self) -> dict[str, int]:
        """REST calls by kind, and streaming requests (`streaming_<kind>`, `streaming_events_delivered`)."""
        return {**self.app.counts, **self.streaming.counts}

    def reset_counts(self) -> None:
        self.app.counts.clear()
        self.streaming.counts.clear()

    def fail_next_with_request_limit(self, n: int = 1) -> None:
        """The next n REST calls answer 403 REQUEST_LIMIT_EXCEEDED."""
        self.app.forced_limit_exceeded = n

    def lock_records(self, ids: Iterable[str], times: int = 1) -> None:
        """These records answer UNABLE_TO_LOCK_ROW for their next `times` writes."""
        self.app.locks.lock(ids, times)

    def expire_sessions(self) -> int:
        """Invalidate every session; the next call with an old token answers 401 INVALID_SESSION_ID."""
        return self.app.sessions.expire_all()

    def set_api_limit(self, maximum: int, used: int | None = None) -> None:
        self.app.daily_api_limit = maximum
        if used is not None:
            self.app.api_used = used

    # --- data (as the admin user unless told otherwise) ----------------------------------------

    def define_object(self, name: str, fields: Mapping[str, Any], key_prefix: str | None = None) -> ObjectDef:
        return self.store.define_object(name, fields, key_prefix)

    def user_id(self, username: str) -> str:
        return self.store.user_id(username)

    @property
    def admin_user_id(self) -> str:
        return self.store.admin_user_id

    def insert(self, object_name: str, values: Mapping[str, Any], *, as_user: str | None = None) -> str:
        return self.store.insert(object_name, values, as_user or self.admin_user_id)

    def insert_many(
        self, object_name: str, rows: Iterable[Mapping[str, Any]], *, as_user: str | None = None
    ) -> list[str]:
        user = as_user or self.admin_user_id
        with self.store.lock:
            return [self.store.insert(object_name, row, user) for row in rows]

    def update(
        self, object_name: str, record_id: str, values: Mapping[str, Any], *, as_user: str | None = None
    ) -> None:
        self.store.update(object_name, record_id, values, as_user or self.admin_user_id)

    def delete(self, object_name: str, record_id: str, *, as_user: str | None = None) -> None:
        self.store.delete(object_name, record_id, user_id=as_user or self.admin_user_id)

    def undelete(self, object_name: str, record_id: str, *, as_user: str | None = None) -> None:
        """Restore from the recycle bin (REST has no undelete): publishes an UNDELETE change event."""
        self.store.undelete(object_name, record_id, as_user or self.admin_user_id)

    def get(self, object_name: str, record_id: str) -> dict[str, Any]:
        """A record's fields as typed Python values (datetimes are aware datetimes)."""
        with self.store.lock:
            odef = self.store.require_object(object_name)
            return self.store.record_dict(odef, self.store.get_record(odef, record_id))

    def record_ids(self, object_name: str) -> list[str]:
        return list(self.store.records[self.store.require_object(object_name).name])

    # --- control API (unauthenticated; for the demo and other processes) -----------------------

    def _control(self, request: Request) -> Response:
        try:
            return self._control_route(request)
        except SalesforceApiError as exc:
            return json_response(exc.body(), exc.status)
        except (KeyError, TypeError, ValueError) as exc:
            return json_response([{"message": str(exc), "errorCode": "BAD_REQUEST"}], 400)

    def _control_route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p][1:]
        method = request.method
        body: dict[str, Any] = json.loads(request.get_data() or b"{}") if method != "GET" else {}
        head = parts[0] if parts else ""
        if head == "counts":
            if method == "DELETE" or parts[1:] == ["reset"]:
                self.reset_counts()
            return json_response(self.counts)
        if head == "faults":
            if method == "DELETE":
                self.faults.clear()
            else:
                self.faults.set(body.pop("endpoint", "*"), **body)
            return json_response({k: vars(v) for k, v in self.faults.plans.items()})
        if head == "request_limit":
            self.fail_next_with_request_limit(int(body.get("count", 1)))
            return json_response({"remaining_forced": self.app.forced_limit_exceeded})
        if head == "lock_rows":
            self.lock_records(body["ids"], int(body.get("times", 1)))
            return json_response({"locked": body["ids"]})
        if head == "expire_sessions":
            return json_response({"expired": self.expire_sessions()})
        if head == "streaming":
            return self.streaming.control(method, parts[1:], body)
        if head == "undelete" and len(parts) == 3:
            self.undelete(parts[1], parts[2])
            return Response(status=204)
        if head == "records" and len(parts) >= 2:
            return self._control_records(method, parts[1:], body)
        return json_response([{"message": "unknown control path", "errorCode": "NOT_FOUND"}], 404)

    def _control_records(self, method: str, parts: list[str], body: dict[str, Any]) -> Response:
        if method == "POST" and len(parts) == 1:
            return json_response({"id": self.insert(parts[0], body)}, 201)
        if method == "PATCH" and len(parts) == 2:
            self.update(parts[0], parts[1], body)
            return Response(status=204)
        if method == "GET" and len(parts) == 2:
            return json_response({k: to_wire(v) for k, v in self.get(parts[0], parts[1]).items()})
        return json_response([{"message": "unsupported", "errorCode": "METHOD_NOT_ALLOWED"}], 405)


def serve(
    host: str = "127.0.0.1",
    port: int = 8443,
    fixture: Fixture | None = DEMO_FIXTURE,
    *,
    ca_path: str | Path | None = None,
    notes: Iterable[str] = (),
) -> None:
    """Run an emulator in the foreground until interrupted; write its CA to `ca_path` for clients.

    Prints how to reach it (URL, each login of the fixture, the CA file), then `notes`: a person who
    starts an emulator needs all of that before any client can talk to it."""
    emulator = SalesforceEmulator(fixture, host=host, port=port)
    target = (Path(ca_path) if ca_path else Path("salesforce-emulator-ca.pem")).resolve()
    target.write_bytes(emulator.ca_pem)
    for line in describe(emulator, target, fixture):
        print(line)
    for line in notes:
        print(line)
    print("", flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator._tmp.cleanup()


def describe(emulator: SalesforceEmulator, ca_path: Path, fixture: Fixture | None) -> list[str]:
    """What a client needs: the URL, the fixture's logins (throwaway values) and the CA to trust."""
    source = f" (org: {Path(fixture).name})" if isinstance(fixture, str | Path) else ""
    lines = [f"Salesforce emulator on {emulator.base_url}{source}"]
    auth = emulator.store.auth
    for user in auth.users.values():
        lines.append(
            f"  login: username {user.username}  password {user.password}  "
            f"security token {user.security_token or '(none)'}"
        )
    for app in auth.apps.values():
        lines.append(
            f"  connected app: client id {app.client_id}  client secret {app.client_secret}  "
            f"(runs as {app.run_as})"
        )
    lines.append(f"  TLS: a throwaway CA, written to {ca_path} (trust it: SALESFORCE_CA_BUNDLE)")
    return lines


def main(argv: list[str] | None = None) -> None:
    """`python -m connector.sandbox.salesforce.emulator [--port 8443] [--fixture FILE] [--ca-path FILE]`."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the Salesforce REST emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--fixture", default=str(DEMO_FIXTURE))
    parser.add_argument("--ca-path", default=None)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.fixture, ca_path=args.ca_path)


if __name__ == "__main__":
    main()

"""Push channels (webhooks) served by the running daemon: `serve()` on a free port, a real HTTP client.

The back end is tests/e2e/push_backend.py (`testpush`, registered for each test): its channel at
/hooks/testpush checks `X-Test-Key` against TESTPUSH_SHARED_KEY. Dispatch Connect is configured next to it
(its emulator answers the poller), so the daemon runs with two back ends, one of them pushing.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from fastapi import FastAPI
from sqlmodel import Session, col, select

import sync.inbound.push as push
from connector.mapping import load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from sync.context import SyncContext
from sync.dashboard.app import create_dashboard_app
from sync.errors import SettingsError
from sync.inbound.inbox import store_delivery
from sync.inbound.processor import process_inbox
from sync.service.daemon import Daemon, build_app, serve
from sync.settings import load_settings
from sync.store.db import make_engine, upgrade
from sync.store.models import EntityStateRow, InboxMessage, SyncLog
from tests.e2e.conftest import PUBLIC_KEY, SECRET, FakeClock
from tests.e2e.push_backend import KEY_HEADER, registered

KEY = "shared-key-5f1c9a"
WRONG = "not-the-key-77ab"
DASHBOARD_TOKEN = "dash-token-31d0e2"
LIMIT = 2048
HOOK = "/hooks/testpush"


@pytest.fixture(autouse=True)
def registered_testpush(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TESTPUSH_SHARED_KEY", KEY)
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)
    with registered():
        yield


@pytest.fixture
def dispatch() -> Iterator[DispatchEmulator]:
    with DispatchEmulator(PUBLIC_KEY, SECRET, clock=FakeClock()) as emulator:
        yield emulator


@pytest.fixture
def ctx(tmp_path: Path, dispatch: DispatchEmulator) -> Iterator[SyncContext]:
    settings = load_settings(
        backends={"dispatch_connect": {}, "testpush": {"type": "testpush"}},
        database_url=f"sqlite:///{tmp_path}/store.db",
        dispatch_base_url=dispatch.base_url,
        dispatch_public_key=PUBLIC_KEY,
        dispatch_secret=SECRET,
        push_max_body_bytes=LIMIT,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    context = SyncContext(settings=settings, engine=engine, mapping=load_mapping())
    yield context
    engine.dispose()


@contextmanager
def running(ctx: SyncContext, *, token: str | None = None) -> Iterator[str]:
    """`serve()` on a free loopback port in a thread (role poller: it receives); yields its base URL."""
    daemon = Daemon(ctx, role="poller")
    started: queue.Queue[str | BaseException] = queue.Queue()

    def run() -> None:
        try:
            serve(daemon, "127.0.0.1", 0, token=token, on_started=started.put)
        except BaseException as exc:
            started.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    url = started.get(timeout=30)
    if isinstance(url, BaseException):
        raise url
    try:
        yield url
    finally:
        daemon.stopping.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "serve() did not stop"


@pytest.fixture
def url(ctx: SyncContext) -> Iterator[str]:
    with running(ctx) as base:
        yield base


def event(event_id: str = "e-1", external_id: str = "WO-1", status: str = "unscheduled") -> dict[str, Any]:
    return {
        "id": event_id,
        "job": {"external_id": external_id, "status": status, "updated_at": "2026-11-25T09:00:00+00:00"},
    }


def post(url: str, body: Any, *, key: str | None = KEY, **kwargs: Any) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers[KEY_HEADER] = key
    data = body if isinstance(body, bytes | str) or hasattr(body, "__next__") else json.dumps(body)
    return requests.post(url + HOOK, data=data, headers=headers, timeout=10, **kwargs)


def inbox(ctx: SyncContext) -> list[InboxMessage]:
    with Session(ctx.engine) as session:
        return list(session.exec(select(InboxMessage)).all())


def error_rows(ctx: SyncContext) -> list[SyncLog]:
    with Session(ctx.engine) as session:
        query = select(SyncLog).where(col(SyncLog.level) == "error", col(SyncLog.entity) == "testpush")
        return list(session.exec(query).all())


def job_states(ctx: SyncContext) -> list[EntityStateRow]:
    with Session(ctx.engine) as session:
        return list(
            session.exec(select(EntityStateRow).where(col(EntityStateRow.system) == "testpush")).all()
        )


# --- accepted pushes ---------------------------------------------------------------------------------------
def test_good_push_is_stored_then_applied(ctx: SyncContext, url: str) -> None:
    answer = post(url, event())
    assert (answer.status_code, answer.json()) == (200, {"stored": 1, "duplicates": 0})
    [row] = inbox(ctx)
    assert (row.message_id, row.system, row.type, row.status) == ("testpush:e-1", "testpush", "job", "new")
    assert process_inbox(ctx).processed == 1
    [state] = job_states(ctx)
    assert (state.kind, state.external_id, state.state) == ("job", "WO-1", "unscheduled")


def test_the_same_id_pushed_again_is_counted_and_applied_once(ctx: SyncContext, url: str) -> None:
    assert post(url, event()).json() == {"stored": 1, "duplicates": 0}
    again = post(url, event())
    assert (again.status_code, again.json()) == (200, {"stored": 0, "duplicates": 1})
    [row] = inbox(ctx)
    assert row.deliveries == 2
    assert process_inbox(ctx).processed == 1
    assert process_inbox(ctx).processed == 0
    assert len(job_states(ctx)) == 1


def test_a_chunked_body_within_the_limit_is_stored(ctx: SyncContext, url: str) -> None:
    raw = json.dumps([event("c-1"), event("c-2", "WO-2")]).encode()
    answer = post(url, (raw[i : i + 50] for i in range(0, len(raw), 50)))
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert (answer.status_code, answer.json()) == (200, {"stored": 2, "duplicates": 0})
    assert sorted(r.message_id for r in inbox(ctx)) == ["testpush:c-1", "testpush:c-2"]


# --- refused pushes ----------------------------------------------------------------------------------------
def test_a_wrong_key_gets_401_stores_nothing_and_logs_without_the_key(ctx: SyncContext, url: str) -> None:
    answer = post(url, event(), key=WRONG)
    assert answer.status_code == 401
    assert inbox(ctx) == []
    [row] = error_rows(ctx)
    assert row.direction == "in" and HOOK in row.message
    logged = row.message + json.dumps(row.details)
    assert KEY not in logged and WRONG not in logged and "WO-1" not in logged  # no credential, no body


def test_a_missing_key_gets_401(ctx: SyncContext, url: str) -> None:
    answer = post(url, event(), key=None)
    assert answer.status_code == 401
    assert inbox(ctx) == []
    assert "missing" in error_rows(ctx)[0].message


def test_a_body_over_the_limit_gets_413_and_nothing_stored(ctx: SyncContext, url: str) -> None:
    big = event()
    big["padding"] = "x" * LIMIT
    answer = post(url, big)
    assert answer.request.headers["Content-Length"] == str(len(json.dumps(big)))
    assert answer.status_code == 413
    assert str(LIMIT) in answer.json()["error"]
    assert inbox(ctx) == []


def test_a_chunked_body_over_the_limit_gets_413_and_nothing_stored(ctx: SyncContext, url: str) -> None:
    chunks = (b"x" * 512 for _ in range(6))  # 3072 bytes, no Content-Length
    answer = post(url, chunks)
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 413
    assert inbox(ctx) == []


def _raw_exchange(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a request's head (and maybe part of a body) but never its end; read the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(4096)
            if not data:
                break
            received += data
        return received


def test_an_oversized_body_is_refused_before_it_is_read(ctx: SyncContext, url: str) -> None:
    """Declared too large: answered at once, no byte read. Chunked: cut off at the limit, the rest never
    sent (the request never ends, so an answer proves the server stopped reading)."""
    declared = f"POST {HOOK} HTTP/1.1\r\nHost: x\r\n{KEY_HEADER}: {KEY}\r\nContent-Length: 50000000\r\n\r\n"
    assert _raw_exchange(url, declared).startswith(b"HTTP/1.1 413")
    chunked = f"POST {HOOK} HTTP/1.1\r\nHost: x\r\n{KEY_HEADER}: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = b"%x\r\n%s\r\n" % (LIMIT + 1, b"x" * (LIMIT + 1))
    assert _raw_exchange(url, chunked, first).startswith(b"HTTP/1.1 413")
    assert inbox(ctx) == []


def test_malformed_json_gets_400_with_a_message_and_nothing_stored(ctx: SyncContext, url: str) -> None:
    answer = post(url, b'{"id": "e-1", "job": ')
    assert answer.status_code == 400
    assert "not JSON" in answer.json()["error"]
    assert inbox(ctx) == []
    [row] = error_rows(ctx)
    assert "not JSON" in row.message and (row.details or {})["excerpt"] == '{"id": "e-1", "job": '


def test_the_malformed_excerpt_is_short_and_storable(ctx: SyncContext, url: str) -> None:
    answer = post(url, b"\xff\xfe" + b"y" * 1000)
    assert answer.status_code == 400
    [row] = error_rows(ctx)
    assert (row.details or {})["excerpt"] == "\\xff\\xfe" + "y" * 192  # 200 characters, the bad bytes visible


# --- the dashboard token ------------------------------------------------------------------------------------
def test_the_dashboard_token_is_neither_required_nor_accepted_on_hooks(ctx: SyncContext) -> None:
    with running(ctx, token=DASHBOARD_TOKEN) as base:
        assert requests.get(base + "/", timeout=10).status_code == 401  # the dashboard is still guarded
        assert post(base, event()).status_code == 200  # no dashboard token needed
        bearer = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
        refused = post(base, event("e-2"), key=None, headers=bearer, params={"token": DASHBOARD_TOKEN})
        assert refused.status_code == 401 and refused.json() == {"error": "not authenticated"}
        assert "set-cookie" not in refused.headers  # a ?token= on a hook signs nobody in
    assert [r.message_id for r in inbox(ctx)] == ["testpush:e-1"]


# --- the store --------------------------------------------------------------------------------------------
def test_a_store_failure_gets_503_with_retry_after_and_nothing_stored(
    ctx: SyncContext, url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = store_delivery
    calls: list[str] = []

    def second_fails(session: Session, delivery: Any) -> bool:
        calls.append(delivery.id)
        if len(calls) == 2:
            raise RuntimeError("database is locked")
        return real(session, delivery)

    monkeypatch.setattr("sync.inbound.push.store_delivery", second_fails)
    answer = post(url, [event("s-1"), event("s-2", "WO-2")])
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "5")
    assert inbox(ctx) == []  # the first was stored in the same transaction: rolled back with it
    assert "not stored, answered 503: RuntimeError: database is locked" in caplog.text
    monkeypatch.setattr("sync.inbound.push.store_delivery", real)
    assert post(url, [event("s-1"), event("s-2", "WO-2")]).json() == {"stored": 2, "duplicates": 0}


# --- mounting ---------------------------------------------------------------------------------------------
def _two_instances(tmp_path: Path, **blocks: dict[str, Any]) -> SyncContext:
    settings = load_settings(
        backends={name: {"type": "testpush", **block} for name, block in blocks.items()},
        database_url=f"sqlite:///{tmp_path}/mount.db",
        **{f"{name}_shared_key": KEY for name in blocks},
    )
    return SyncContext(settings=settings, engine=make_engine(settings.database_url), mapping=load_mapping())


def test_two_channels_on_one_path_fail_at_mount_naming_both(tmp_path: Path) -> None:
    ctx = _two_instances(tmp_path, east={"path": "/hooks/shared"}, west={"path": "/hooks/shared"})
    app = FastAPI()
    with pytest.raises(SettingsError, match=r"/hooks/shared is served by two back ends, 'east' and 'west'"):
        push.mount_push_channels(app, ctx, max_body_bytes=LIMIT)
    assert not [r for r in app.routes if getattr(r, "path", "").startswith("/hooks")]


@pytest.mark.parametrize(
    "path",
    ["/log", "/records/x", "/hooks", "/hooks/", "/hooks/../log", "/hooks/a//b", "/hooks/{x}", "hooks/a"],
)
def test_a_path_outside_the_push_prefix_rule_fails_at_mount(tmp_path: Path, path: str) -> None:
    ctx = _two_instances(tmp_path, east={"path": path})
    with pytest.raises(SettingsError, match="must start with /hooks/"):
        push.mount_push_channels(FastAPI(), ctx, max_body_bytes=LIMIT)


def test_the_dashboard_has_no_route_a_push_path_could_shadow(tmp_path: Path) -> None:
    ctx = _two_instances(tmp_path, east={}, west={})
    app = create_dashboard_app(ctx.engine)
    assert push.mount_push_channels(app, ctx, max_body_bytes=LIMIT) == ["/hooks/east", "/hooks/west"]
    with pytest.raises(SettingsError, match="routes already under /hooks/"):
        push.mount_push_channels(app, ctx, max_body_bytes=LIMIT)  # a second mount would shadow the first


def test_only_receiving_roles_serve_push_channels_and_say_which(
    ctx: SyncContext, caplog: pytest.LogCaptureFixture
) -> None:
    def hooks(app: FastAPI) -> list[str]:
        return [p for r in app.routes if (p := getattr(r, "path", "")).startswith("/hooks/")]

    with caplog.at_level(logging.INFO, logger="dispatch_connector.daemon"):
        assert hooks(build_app(Daemon(ctx, role="all"))) == [HOOK]
    assert f"push channels served (body limit {LIMIT} bytes): {HOOK}" in caplog.text
    assert hooks(build_app(Daemon(ctx, role="processor"))) == []

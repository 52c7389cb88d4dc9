"""No secret ever leaves the process: the whole loop runs with distinctive secrets (daemon subprocess against
both emulators, an error case, a failing period, a wrong password), then every output is scanned."""

from __future__ import annotations

import html
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests
import yaml
from click.testing import CliRunner
from sqlmodel import Session, select

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.service.cli import cli
from sync.store.db import make_engine, upgrade
from sync.store.models import InboxMessage, OutboxBatch, SyncLog, TrackedRecord, WriteBack

FIXTURE = Path(__file__).parent.parent / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
PUBLIC_KEY = "organization|31337|secret-scan"
DISPATCH_SECRET = "5ec7e7c0ffee" + "d15a7c4ab1e" * 4 + "9e1f0a5b"  # 64 hex digits
USERNAME = "scanner@fieldservice.example"
PASSWORD = "Pw-Zq8!x7Kd%2F/s3cr3t+"
TOKEN = "TkN93jfQ0zzSecTok"
DASHBOARD_TOKEN = "dash-Tok-7781aa/Q+z"
SECRETS = {
    "DISPATCH_SECRET": DISPATCH_SECRET,
    "password": PASSWORD,
    "token": TOKEN,
    "dashboard": DASHBOARD_TOKEN,
}


def _forms(secret: str) -> set[str]:
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        html.escape(secret),
        json.dumps(secret)[1:-1],
    }
    if secret == DISPATCH_SECRET:
        forms |= {secret.upper(), bytes.fromhex(secret).decode("latin-1")}
    if secret == PASSWORD:
        forms |= {PASSWORD + TOKEN, quote(PASSWORD + TOKEN, safe="")}  # the SOAP login sends them joined
    return forms


def assert_no_secret(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        raw = text
        if bytes.fromhex(DISPATCH_SECRET) in raw:
            raise AssertionError(f"{where}: raw DISPATCH_SECRET bytes")
        text = raw.decode("utf-8", "replace")
    for name, secret in SECRETS.items():
        for form in _forms(secret):
            assert form not in text, f"{where} contains the {name} (as {form!r})"


class Outputs:
    """Every line the daemon writes, collected by reader threads."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout, self.stdout), daemon=True).start()
        threading.Thread(target=self._read, args=(proc.stderr, self.stderr), daemon=True).start()

    def _read(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            self.lines.put(line)


@pytest.fixture
def org() -> Iterator[tuple[SalesforceEmulator, DispatchEmulator]]:
    fixture = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))
    fixture["auth"]["users"] = {USERNAME: {"password": PASSWORD, "security_token": TOKEN}}
    with SalesforceEmulator(fixture) as sf, DispatchEmulator(PUBLIC_KEY, DISPATCH_SECRET) as dispatch:
        yield sf, dispatch


def _env(sf: SalesforceEmulator, dispatch: DispatchEmulator, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_"))}
    env.update(
        DATABASE_URL=db_url,
        DISPATCH_BASE_URL=dispatch.base_url,
        DISPATCH_PUBLIC_KEY=PUBLIC_KEY,
        DISPATCH_SECRET=DISPATCH_SECRET,
        SALESFORCE_INSTANCE_URL=sf.base_url,
        SALESFORCE_USERNAME=USERNAME,
        SALESFORCE_PASSWORD=PASSWORD,
        SALESFORCE_SECURITY_TOKEN=TOKEN,
        SALESFORCE_CA_BUNDLE=str(sf.ca_path),
        DASHBOARD_TOKEN=DASHBOARD_TOKEN,
        DASHBOARD_PORT="0",
        PUBLISH_INTERVAL_S="0.3",
        POLL_INTERVAL_S="0.3",
        PROCESS_INTERVAL_S="0.3",
        WRITEBACK_INTERVAL_S="0.3",
        DISPATCH_TIMEOUT_S="5",
    )
    env.update(extra)
    return env


def _wait(predicate: Callable[[], Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the daemon"
        time.sleep(0.1)


def _seed(sf: SalesforceEmulator) -> tuple[str, str, str]:
    provider = sf.insert(
        "Account",
        {"Name": "Spark Electric", "Phone": "+15550111", "Dispatch_Me__c": True, "BillingState": "IL"},
    )
    contact = sf.insert("Contact", {"FirstName": "Jane", "LastName": "Doe", "Email": "jane@example.com"})
    common = {"Status": "New", "ContactId": contact, "Dispatch_Service_Provider__c": provider}
    flag = {"Dispatch_Send__c": "2026-11-25T09:00:00Z"}
    good = sf.insert(
        "WorkOrder",
        {**common, **flag, "Subject": "Good", "Street": "1 Main St", "City": "Springfield", "State": "IL",
         "PostalCode": "62701"},
    )  # fmt: skip
    bad = sf.insert("WorkOrder", {**common, **flag, "Subject": "No address", "Street": "Somewhere"})
    return provider, good, bad


def _start(env: dict[str, str], cwd: Path) -> tuple[Outputs, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync.service.cli", "run"],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out = Outputs(proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = out.lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if "dashboard and health on" in line:
            return out, line.split(" on ")[1].split()[0]
    proc.kill()
    raise AssertionError(f"daemon did not start: {''.join(out.stderr)[-2000:]}")


def _dashboard(url: str, record_ids: list[str]) -> list[tuple[str, requests.Response]]:
    pages: list[tuple[str, requests.Response]] = []
    session = requests.Session()
    first = session.get(f"{url}/?token={quote(DASHBOARD_TOKEN, safe='')}", timeout=10)
    assert first.status_code == 200 and "Authorization" not in first.text
    pages.append(("/ (token sign-in)", first))
    paths = ["/", "/log", "/log?level=error", "/machines", "/metrics", "/healthz", "/readyz"]
    paths += [f"/records/{rid}" for rid in record_ids]
    for path in paths:
        response = session.get(url + path, timeout=10)
        assert response.status_code == 200, (path, response.status_code)
        pages.append((path, response))
    bearer = requests.get(f"{url}/log", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}, timeout=10)
    assert bearer.status_code == 200
    pages.append(("/log (bearer)", bearer))
    refused = requests.get(f"{url}/log", timeout=10, allow_redirects=False)
    assert refused.status_code == 401
    pages.append(("/log (no token)", refused))
    return pages


def test_no_secret_in_any_output(org: tuple[SalesforceEmulator, DispatchEmulator], tmp_path: Path) -> None:
    sf, dispatch = org
    db_url = f"sqlite:///{tmp_path}/store.db"
    upgrade(make_engine(db_url))
    _provider, good, bad = _seed(sf)
    env = _env(sf, dispatch, db_url)
    out, url = _start(env, tmp_path)
    try:
        _wait(lambda: sf.get("WorkOrder", good)["Dispatch_Last_Synced__c"])
        _wait(lambda: sf.get("WorkOrder", bad)["Dispatch_Error__c"])  # the err case
        dispatch.accept_job(good)
        _wait(lambda: sf.get("WorkOrder", good)["Dispatch_Status__c"] == "unscheduled")
        # a failing period: Dispatch refuses pushes and polls, Salesforce sessions expire (re-login)
        dispatch.set_faults("agent/in", error_rate=1.0, error_status=400)
        dispatch.set_faults("agent/out", error_rate=1.0, error_status=401)
        sf.expire_sessions()
        late = sf.insert(
            "WorkOrder",
            {"Subject": "During outage", "Status": "New", "Street": "2 Main St", "City": "Springfield",
             "State": "IL", "PostalCode": "62701", "Dispatch_Send__c": "2026-11-25T10:00:00Z",
             "Dispatch_Service_Provider__c": _provider},
        )  # fmt: skip
        engine = make_engine(db_url)

        def errors() -> int:
            with Session(engine) as session:
                return len(session.exec(select(SyncLog).where(SyncLog.level == "error")).all())

        before = errors()
        _wait(lambda: errors() >= before + 2)
        dispatch.set_faults(clear=True)
        _wait(lambda: sf.get("WorkOrder", late)["Dispatch_Last_Synced__c"])
        pages = _dashboard(url, [good, bad, late])
    finally:
        out.proc.send_signal(signal.SIGTERM)
        out.proc.wait(timeout=30)
    time.sleep(0.2)  # let the reader threads drain the pipes
    assert_no_secret("daemon stdout", "".join(out.stdout))
    assert_no_secret("daemon stderr", "".join(out.stderr))
    for path, response in pages:
        assert_no_secret(f"dashboard {path}", response.content)
        assert_no_secret(f"dashboard {path} headers", json.dumps(dict(response.headers)))
    with Session(engine) as session:
        logs = session.exec(select(SyncLog)).all()
        assert any(r.level == "error" for r in logs)
        for row in logs:
            assert_no_secret(f"sync_log {row.id}", row.message + json.dumps(row.details, default=str))
        for model in (OutboxBatch, InboxMessage, WriteBack, TrackedRecord):
            for item in session.exec(select(model)).all():
                assert_no_secret(f"{model.__name__} row", item.model_dump_json())
    runner = CliRunner()
    for args in (
        ["config", "show"],
        ["config", "show", "--json"],
        ["log", "--json"],
        ["log", "--level", "error"],
        ["status", good],
        ["status", bad],
        ["inbox"],
    ):
        result = runner.invoke(cli, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        assert_no_secret(f"cli {' '.join(args)}", result.output)


def test_wrong_password_fails_clearly_without_secrets(
    org: tuple[SalesforceEmulator, DispatchEmulator], tmp_path: Path
) -> None:
    sf, dispatch = org
    db_url = f"sqlite:///{tmp_path}/store.db"
    upgrade(make_engine(db_url))
    _seed(sf)
    wrong = "Wr0ng-Pw!" + PASSWORD[::-1]
    env = _env(sf, dispatch, db_url, SALESFORCE_PASSWORD=wrong)
    result = subprocess.run(
        [sys.executable, "-m", "sync.service.cli", "run", "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "SALESFORCE_PASSWORD" in output or "login" in output.lower(), output
    assert_no_secret("wrong-password run", output)
    for form in _forms(wrong):
        assert form not in output, f"the wrong password leaked as {form!r}"
    with Session(make_engine(db_url)) as session:
        for row in session.exec(select(SyncLog)).all():
            assert_no_secret(f"sync_log {row.id}", row.message + json.dumps(row.details, default=str))
            assert wrong not in row.message


def test_daemon_start_with_wrong_password_stops_clearly(
    org: tuple[SalesforceEmulator, DispatchEmulator], tmp_path: Path
) -> None:
    sf, dispatch = org
    db_url = f"sqlite:///{tmp_path}/store.db"
    upgrade(make_engine(db_url))
    _seed(sf)
    env = _env(sf, dispatch, db_url, SALESFORCE_PASSWORD="Wr0ng-Pw!")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync.service.cli", "run"], env=env, cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"daemon kept running; {sf.counts.get('login')} login attempts") from None
    assert proc.returncode == 2 and "SALESFORCE_PASSWORD" in err
    assert sf.counts.get("login", 0) <= 2
    assert_no_secret("wrong-password daemon", err)

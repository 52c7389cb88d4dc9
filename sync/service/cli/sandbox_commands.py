"""`demo` and `sandbox ...`: the offline loop, the local emulators, their settings and the field technician.

The sandbox is deterministic so that the README's by-hand cycle can be typed as it is written: fixed ports
(Salesforce 8743, Dispatch Connect 8780; `SANDBOX_SALESFORCE_PORT` / `SANDBOX_DISPATCH_PORT` move both the
emulator and every command that reaches it), the Salesforce CA written to `./salesforce-emulator-ca.pem`, the
default org's throwaway login, and a throwaway Dispatch key and secret unless DISPATCH_PUBLIC_KEY /
DISPATCH_SECRET are already set (then the emulator checks signatures with those; `sandbox env` keeps them).
"""

from __future__ import annotations

import errno
import shlex
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from sync.errors import NeedsAttention, SyncError, UsageError
from sync.service.cli.common import _Ctx, console, pass_ctx

SALESFORCE_PORT, DISPATCH_PORT = 8743, 8780
SALESFORCE_PORT_ENV, DISPATCH_PORT_ENV = "SANDBOX_SALESFORCE_PORT", "SANDBOX_DISPATCH_PORT"
CA_FILE = "salesforce-emulator-ca.pem"
# Throwaway values for the local Dispatch Connect emulator (printed on purpose; never a real account's).
SANDBOX_PUBLIC_KEY = "organization|1|sandbox"
SANDBOX_SECRET = "5a4d" * 16
HOST = "127.0.0.1"
HTTP_TIMEOUT_S = 10.0

salesforce_port_option = click.option(
    "--salesforce-port",
    default=SALESFORCE_PORT,
    show_default=True,
    envvar=SALESFORCE_PORT_ENV,
    show_envvar=True,
)
dispatch_port_option = click.option(
    "--dispatch-port", default=DISPATCH_PORT, show_default=True, envvar=DISPATCH_PORT_ENV, show_envvar=True
)


@click.command()
@click.option("--work-orders", default=50, show_default=True, help="Work orders to seed.")
@click.option("--flagged", default=12, show_default=True, help="How many of them the admin flags.")
@click.option("--serve", is_flag=True, help="Keep running afterwards and serve the dashboard.")
@click.option("--port", default=8765, show_default=True, help="Dashboard port with --serve.")
def demo(work_orders: int, flagged: int, serve: bool, port: int) -> None:
    """Run the whole loop offline against the local emulators and show the result."""
    from sync.service.demo import run_demo

    sys.exit(run_demo(work_orders, flagged, console, serve_port=port if serve else None))


@click.group()
def sandbox() -> None:
    """Run the local emulators, print the settings that reach them, play the field technician."""


# -- the emulators -------------------------------------------------------------------------------------


def dispatch_credentials(ctx: _Ctx) -> tuple[str, str, bool]:
    """(public key, secret, whether the secret is someone's own): the emulator and `sandbox env` decide the
    same way, so the connector signs with what the emulator checks. The sandbox's own secret, exported by an
    earlier `eval`, is still the throwaway one: `sandbox env` prints the same lines the second time."""
    try:
        key, secret = ctx.settings.value("dispatch_public_key"), ctx.settings.secret("dispatch_secret")
    except KeyError:  # a `backends:` block without a dispatch_connect instance
        key, secret = None, ""
    return str(key or SANDBOX_PUBLIC_KEY), secret or SANDBOX_SECRET, secret not in ("", SANDBOX_SECRET)


def check_port_free(what: str, port: int, env: str) -> None:
    """A port already taken is the one start-up failure an admin meets; say what to do about it (the
    server's own message would not name the option and variable that move every sandbox command)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise SyncError(
                f"port {port} is in use, so the {what} cannot start there: stop whatever holds it "
                f"(another sandbox?) or pick another port with --port or {env} (for every sandbox command)"
            ) from exc


@sandbox.command("dispatch")
@click.option("--port", default=DISPATCH_PORT, show_default=True, envvar=DISPATCH_PORT_ENV, show_envvar=True)
@click.option("--visibility-timeout", default=30.0, show_default=True)
@pass_ctx
def sandbox_dispatch(ctx: _Ctx, port: int, visibility_timeout: float) -> None:
    """Serve a Dispatch Connect emulator (HTTP on 127.0.0.1) until Ctrl-C.

    It checks signatures with DISPATCH_PUBLIC_KEY / DISPATCH_SECRET when they are set, else with the
    sandbox's throwaway pair (`sandbox env` prints it)."""
    from connector.sandbox.dispatch_connect.emulator import serve

    key, secret, from_env = dispatch_credentials(ctx)
    source = (
        "  secret: the DISPATCH_SECRET of your environment (not shown)"
        if from_env
        else f"  secret (DISPATCH_SECRET): {secret}  (the sandbox's throwaway secret)"
    )
    notes = [
        source,
        "  play the technician: dispatch-connector sandbox field accept|schedule|start|complete|cancel JOB",
        '  settings for the connector: eval "$(dispatch-connector sandbox env)"',
    ]
    check_port_free("Dispatch Connect emulator", port, DISPATCH_PORT_ENV)
    serve(HOST, port, public_key=key, secret_hex=secret, notes=notes, visibility_timeout=visibility_timeout)


@sandbox.command("salesforce")
@click.option(
    "--port", default=SALESFORCE_PORT, show_default=True, envvar=SALESFORCE_PORT_ENV, show_envvar=True
)
@click.option("--fixture", type=click.Path(exists=True, dir_okay=False), help="Org fixture (YAML/JSON).")
@click.option("--ca-out", default=CA_FILE, show_default=True, help="Where to write the emulator's CA.")
def sandbox_salesforce(port: int, fixture: str | None, ca_out: str) -> None:
    """Serve a Salesforce REST emulator (HTTPS on 127.0.0.1, a throwaway CA written to --ca-out) until Ctrl-C.

    The default org (connector/sandbox/fixtures/demo_org.yaml) fits the bundled mappings and holds three
    Boston work orders and two service providers."""
    from connector.sandbox.salesforce.emulator import DEMO_FIXTURE, serve

    notes = ['  settings for the connector: eval "$(dispatch-connector sandbox env)"']
    check_port_free("Salesforce emulator", port, SALESFORCE_PORT_ENV)
    serve(HOST, port, Path(fixture) if fixture else DEMO_FIXTURE, ca_path=ca_out, notes=notes)


# -- sandbox env ---------------------------------------------------------------------------------------


def fixture_login(fixture: str | None) -> tuple[str, str, str]:
    """The fixture's first user: (username, password, security token)."""
    from connector.sandbox.salesforce.emulator import DEMO_FIXTURE
    from connector.sandbox.salesforce.store import read_fixture

    users = (read_fixture(Path(fixture) if fixture else DEMO_FIXTURE).get("auth") or {}).get("users") or {}
    if not users:
        raise UsageError(f"the fixture {fixture} declares no user under auth.users: nobody can log in")
    username, cred = next(iter(users.items()))
    cred = cred or {}
    return str(username), str(cred.get("password", "")), str(cred.get("security_token", ""))


@sandbox.command("env")
@salesforce_port_option
@dispatch_port_option
@click.option("--ca", default=CA_FILE, show_default=True, help="The CA file `sandbox salesforce` wrote.")
@click.option("--fixture", type=click.Path(exists=True, dir_okay=False), help="The org fixture it runs.")
@click.option(
    "--wait",
    default=0.0,
    show_default=True,
    help="Seconds to wait for both emulators to answer (TLS checked with the CA) before printing.",
)
@pass_ctx
def sandbox_env(
    ctx: _Ctx, salesforce_port: int, dispatch_port: int, ca: str, fixture: str | None, wait: float
) -> None:
    """Print `export` lines pointing the connector at the sandbox: eval "$(dispatch-connector sandbox env)".

    The same ports, CA path and credentials the emulator commands use by default, so the output only
    depends on the options, SANDBOX_*_PORT and an already set DISPATCH_PUBLIC_KEY / DISPATCH_SECRET (kept,
    never printed)."""
    salesforce_url, dispatch_url = f"https://{HOST}:{salesforce_port}", f"http://{HOST}:{dispatch_port}"
    ca_path = Path(ca).resolve()
    if wait > 0:
        wait_until_up(salesforce_url, dispatch_url, ca_path, wait)
    username, password, token = fixture_login(fixture)
    key, secret, from_env = dispatch_credentials(ctx)
    values = {
        "SALESFORCE_INSTANCE_URL": salesforce_url,
        "SALESFORCE_USERNAME": username,
        "SALESFORCE_PASSWORD": password,
        "SALESFORCE_SECURITY_TOKEN": token,
        "SALESFORCE_CA_BUNDLE": str(ca_path),
        "DISPATCH_BASE_URL": dispatch_url,
        "DISPATCH_PUBLIC_KEY": key,
    }
    for name, value in values.items():
        click.echo(f"export {name}={shlex.quote(value)}")
    if from_env:
        click.echo("# DISPATCH_SECRET: kept from your environment (the emulator checks with it too)")
    else:
        click.echo(f"export DISPATCH_SECRET={shlex.quote(secret)}")


def wait_until_up(salesforce_url: str, dispatch_url: str, ca_path: Path, timeout_s: float) -> None:
    """Poll both emulators until each answers an HTTP request (Salesforce's with its TLS verified by the CA
    file, so a CA left over from an earlier run does not count); a SyncError naming the silent one."""
    import requests

    deadline = time.monotonic() + timeout_s
    checks: list[tuple[str, str, Callable[[requests.Session], None]]] = [
        ("Salesforce emulator", "sandbox salesforce", lambda s: _get(s, salesforce_url, ca_path)),
        ("Dispatch Connect emulator", "sandbox dispatch", lambda s: _get(s, f"{dispatch_url}/control/state")),
    ]
    with requests.Session() as session:
        session.trust_env = False
        for what, command, check in checks:
            problem = ""
            while True:
                try:
                    check(session)
                    break
                except (requests.RequestException, OSError) as exc:
                    problem = type(exc).__name__
                if time.monotonic() >= deadline:
                    raise SyncError(
                        f"the {what} did not answer within {timeout_s:g} s ({problem}): "
                        f"start it with `dispatch-connector {command}` in this directory"
                    )
                time.sleep(0.1)  # between connection attempts, not for timing logic


def _get(session: Any, url: str, ca_path: Path | None = None) -> None:
    """Any HTTP answer will do: the server is up (and, with a CA, its certificate is the one in the file)."""
    if ca_path is not None and not ca_path.is_file():
        raise FileNotFoundError(ca_path)
    session.get(url, timeout=2, verify=str(ca_path) if ca_path else True)


# -- sandbox field -------------------------------------------------------------------------------------


class FieldClient:
    """The Dispatch Connect emulator's control API (`POST /control/<method>`), as the technician uses it."""

    def __init__(self, base_url: str) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False  # loopback: no proxy

    def call(self, method: str, payload: dict[str, Any] | None = None) -> Any:
        import requests

        url = f"{self.base_url}/control/{method}"
        try:
            if payload is None:
                response = self.http.get(url, timeout=HTTP_TIMEOUT_S)
            else:
                response = self.http.post(url, json=payload, timeout=HTTP_TIMEOUT_S)
        except requests.ConnectionError as exc:
            raise SyncError(
                f"no Dispatch Connect emulator answers at {self.base_url}: start one with "
                "`dispatch-connector sandbox dispatch` (on another port: set SANDBOX_DISPATCH_PORT)"
            ) from exc
        except requests.RequestException as exc:
            raise SyncError(f"the Dispatch Connect emulator at {self.base_url} failed: {exc}") from exc
        body = _json_or_text(response)
        message = body.get("error") if isinstance(body, dict) else str(body)
        if response.status_code == 404:
            raise NeedsAttention(f"the Dispatch Connect emulator at {self.base_url} knows {message}")
        if response.status_code == 400:
            raise UsageError(f"the Dispatch Connect emulator refused the arguments: {message}")
        if response.status_code >= 300:
            raise SyncError(f"the Dispatch Connect emulator answered {response.status_code}: {message}")
        return body

    def job_key(self, ref: str) -> str:
        """The emulator's key for a job named by external id (the CRM record id), work order number
        (`friendly_external_id`) or Dispatch id."""
        jobs = self.call("records/job")
        if ref in jobs:
            return ref
        for key, job in jobs.items():
            if ref in (str(job.get("friendly_external_id")), str(job.get("id"))):
                return str(key)
        raise NeedsAttention(
            f"no job {ref!r} in the Dispatch Connect emulator at {self.base_url}: give the work order's "
            "number or record id after `dispatch-connector publish` has sent it"
        )


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text.strip()[:200]


def _iso(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r}: use an ISO 8601 time, e.g. 2026-12-01T09:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _wire_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@sandbox.group("field")
@dispatch_port_option
@click.pass_context
def field(click_ctx: click.Context, dispatch_port: int) -> None:
    """Play the field technician on the running Dispatch Connect emulator (then `poll` and `process`).

    JOB is the work order's number (e.g. 00000101), its CRM record id or its Dispatch job id."""
    click_ctx.obj = FieldClient(f"http://{HOST}:{dispatch_port}")


pass_field = click.make_pass_decorator(FieldClient)
job_argument = click.argument("job")
reason_option = click.option("--reason", default="", help="Status reason sent with the event.")


def _done(what: str, job: str, key: str) -> None:
    click.echo(f"{what} {job}" + ("" if key == job else f" (job {key})") + "; now `dispatch-connector poll`")


@field.command("accept")
@job_argument
@pass_field
def field_accept(client: FieldClient, job: str) -> None:
    """The provider accepts the offered job (status unscheduled)."""
    key = client.job_key(job)
    client.call("accept_job", {"external_id": key})
    _done("accepted", job, key)


@field.command("reject")
@job_argument
@reason_option
@pass_field
def field_reject(client: FieldClient, job: str, reason: str) -> None:
    """The provider turns the job down."""
    key = client.job_key(job)
    client.call("reject_job", {"external_id": key, "reason": reason})
    _done("rejected", job, key)


@field.command("schedule")
@job_argument
@click.option("--start", help="Appointment start, ISO 8601 (default: tomorrow 09:00 UTC).")
@click.option("--end", help="Appointment end, ISO 8601 (default: two hours after the start).")
@pass_field
def field_schedule(client: FieldClient, job: str, start: str | None, end: str | None) -> None:
    """Book (or move) the job's appointment (status scheduled)."""
    begins = _iso(start, "--start")
    if begins is None:
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        begins = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, tzinfo=UTC)
    ends = _iso(end, "--end") or begins + timedelta(hours=2)
    if ends <= begins:
        raise UsageError(f"--end {_wire_time(ends)} must be after --start {_wire_time(begins)}")
    key = client.job_key(job)
    client.call(
        "schedule_appointment",
        {"job_external_id": key, "start": _wire_time(begins), "end": _wire_time(ends)},
    )
    _done(f"scheduled {_wire_time(begins)}..{_wire_time(ends)}:", job, key)


@field.command("enroute")
@job_argument
@pass_field
def field_enroute(client: FieldClient, job: str) -> None:
    """The technician is on the way to the job's appointment."""
    key = client.job_key(job)
    client.call("enroute_appointment", {"external_id": _appointment(client, job, key)})
    _done("en route to", job, key)


@field.command("start")
@job_argument
@pass_field
def field_start(client: FieldClient, job: str) -> None:
    """The technician starts the job's appointment."""
    key = client.job_key(job)
    client.call("start_appointment", {"external_id": _appointment(client, job, key)})
    _done("started", job, key)


@field.command("complete")
@job_argument
@click.option(
    "--reason",
    default="ready_for_billing",
    show_default=True,
    help="ready_for_billing completes the job; no_show, waiting_for_parts, waiting_on_authorization pause.",
)
@pass_field
def field_complete(client: FieldClient, job: str, reason: str) -> None:
    """Complete the job's appointment (and with it the job), or the job itself when it has none."""
    key = client.job_key(job)
    appointment = _appointment(client, job, key, required=False)
    if appointment is None:
        client.call("complete_job", {"external_id": key, "reason": reason})
    else:
        client.call("complete_appointment", {"external_id": appointment, "reason": reason})
    _done("completed", job, key)


@field.command("cancel")
@job_argument
@reason_option
@pass_field
def field_cancel(client: FieldClient, job: str, reason: str) -> None:
    """Dispatch cancels the job."""
    key = client.job_key(job)
    client.call("cancel_job", {"external_id": key, "reason": reason})
    _done("canceled", job, key)


def _appointment(client: FieldClient, job: str, key: str, *, required: bool = True) -> str | None:
    """The job's open appointment (the emulator keys one per job by the job's key unless told otherwise)."""
    appointments = client.call("records/appointment")
    for appt_key, appt in appointments.items():
        if appt.get("external_job_id") == key and appt.get("status") not in ("complete", "canceled"):
            return str(appt_key)
    if required:
        raise NeedsAttention(
            f"job {job} has no open appointment: book one first with `dispatch-connector sandbox field "
            f"schedule {job}`"
        )
    return None

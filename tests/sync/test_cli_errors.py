"""Every expected error leaves the CLI as one line on stderr and a documented exit code, never a traceback.

Real subprocesses (`python -m sync.service.cli`); an engine function is replaced inside the child process when
a test needs an error that a healthy store and no network cannot produce.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from sync.service.cli.exits import exit_for
from sync.store.db import head_revision, make_engine, upgrade

WHERE = ["flag", "WorkOrder", "--where", "Status = 'New'"]
# Replaces `module.name` in the child, then runs the CLI: the error is raised from the engine function the
# command calls, as if the engine had raised it.
PATCHED_RUN = """
import importlib, sys
from sync.service.cli import main
module = importlib.import_module(sys.argv.pop(1))
name = sys.argv.pop(1)
code = sys.argv.pop(1)
def replaced(*args, **kwargs):
    exec(code)
setattr(module, name, replaced)
main()
"""


def run(args: list[str], cwd: Path, patch: tuple[str, str, str] | None = None, **env: str) -> Result:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_URL", "MAPPING_FILE"))
    }
    command = (
        [sys.executable, "-c", PATCHED_RUN, *patch] if patch else [sys.executable, "-m", "sync.service.cli"]
    )
    done = subprocess.run(
        [*command, *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    return Result(done.returncode, done.stdout, done.stderr)


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def line(self) -> str:
        """The one line an expected error prints (asserts there is exactly one and no traceback)."""
        lines = self.stderr.splitlines()
        assert "Traceback" not in self.stderr and len(lines) == 1, self.stderr
        return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A migrated SQLite store in tmp_path; its URL."""
    url = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_database_url_of_unknown_kind_exits_2_naming_the_setting(tmp_path: Path) -> None:
    result = run(["log"], tmp_path, DATABASE_URL="foo://bar")
    assert result.code == 2
    assert result.line.startswith("error: DATABASE_URL names a database this program has no driver for")


def test_unreadable_database_url_is_not_echoed(tmp_path: Path) -> None:
    result = run(["log"], tmp_path, DATABASE_URL="postgresql://user:pw-123@host:notaport/db")
    assert result.code == 2
    assert "DATABASE_URL cannot be read as a database URL" in result.line and "pw-123" not in result.stderr


def test_database_under_a_missing_folder_exits_2(tmp_path: Path) -> None:
    result = run(["db", "upgrade"], tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/missing/store.db")
    assert result.code == 2
    assert "DATABASE_URL cannot be used (unable to open database file)" in result.line
    assert "SELECT" not in result.stderr and "[SQL" not in result.stderr


def test_database_where_a_file_is_not_a_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a folder")
    result = run(["log"], tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/plain-file/store.db")
    assert result.code == 2 and "check that its folder exists and is writable" in result.line


def test_read_only_database_exits_2(tmp_path: Path, store: str) -> None:
    path = store.removeprefix("sqlite:///")
    result = run(
        ["db", "downgrade", "base"], tmp_path, DATABASE_URL=f"sqlite:///file:{path}?mode=ro&uri=true"
    )
    assert result.code == 2 and "(attempt to write a readonly database)" in result.line


def test_unmigrated_store_exits_2_with_the_upgrade_hint(tmp_path: Path) -> None:
    result = run(["status", "0WO1"], tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/empty.db")
    assert result.code == 2 and result.line.endswith("run `dispatch-connector db upgrade`")


def test_store_missing_a_table_exits_2_with_the_upgrade_hint(tmp_path: Path, store: str) -> None:
    with sqlite3.connect(store.removeprefix("sqlite:///")) as connection:
        connection.execute("DROP TABLE sync_log")
    result = run(["log"], tmp_path, DATABASE_URL=store)
    assert result.code == 2
    assert result.line == (
        "error: the database in DATABASE_URL lacks connector tables (no such table: sync_log); "
        "run `dispatch-connector db upgrade`"
    )


def test_broken_mapping_file_exits_2_naming_the_file(tmp_path: Path, store: str) -> None:
    broken = tmp_path / "broken-mapping.yaml"
    broken.write_text("objects:\n  WorkOrder: [unclosed\n")
    result = run(["status", "0WO1"], tmp_path, DATABASE_URL=store, MAPPING_FILE=str(broken))
    assert result.code == 2 and "Traceback" not in result.stderr
    # the YAML parser's own lines (where in the file, a caret under the column) follow the first
    assert result.stderr.startswith(f"error: mapping file {broken}: not valid YAML")


def test_unknown_revision_exits_2(tmp_path: Path, store: str) -> None:
    result = run(["db", "downgrade", "nonsense"], tmp_path, DATABASE_URL=store)
    assert result.code == 2 and "nonsense" in result.line


def test_usage_errors_stay_clicks(tmp_path: Path) -> None:
    result = run(["publish", "--nope"], tmp_path)
    assert result.code == 2 and "Error: No such option '--nope'" in result.stderr
    assert "Usage:" in result.stderr and "Traceback" not in result.stderr


def test_transient_connector_error_exits_1_and_says_retrying_can_help(tmp_path: Path, store: str) -> None:
    raise_it = "from connector.crm import CrmUnavailable; raise CrmUnavailable('Salesforce query: HTTP 503')"
    patch = ("sync.service.admin", "flag_records", raise_it)
    result = run(WHERE, tmp_path, patch, DATABASE_URL=store)
    assert result.code == 1
    assert result.line == "error: Salesforce query: HTTP 503 (temporary: running it again later may succeed)"


def test_refused_connector_error_exits_1_and_says_retrying_will_not_help(tmp_path: Path, store: str) -> None:
    raise_it = "from connector.crm import CrmRejected; raise CrmRejected('Salesforce query: MALFORMED_QUERY')"
    result = run(WHERE, tmp_path, ("sync.service.admin", "flag_records", raise_it), DATABASE_URL=store)
    assert result.code == 1 and result.line.endswith("(retrying will not help until the cause is fixed)")


def test_connector_configuration_error_exits_2(tmp_path: Path, store: str) -> None:
    raise_it = (
        "from connector.crm import CrmAuthenticationError; raise CrmAuthenticationError('login refused')"
    )
    result = run(WHERE, tmp_path, ("sync.service.admin", "flag_records", raise_it), DATABASE_URL=store)
    assert result.code == 2 and result.line == "error: login refused"


def test_state_machine_refusal_exits_1(tmp_path: Path, store: str) -> None:
    raise_it = (
        "from statemachines.errors import TransitionRefused; raise TransitionRefused('job', 'new', 'x', [])"
    )
    result = run(
        ["status", "0WO1"], tmp_path, ("sync.service.admin", "record_status", raise_it), DATABASE_URL=store
    )
    assert result.code == 1 and result.line.startswith("error: job cannot go from new to x")


def test_status_of_an_unknown_record_exits_3(tmp_path: Path, store: str) -> None:
    result = run(["status", "0WO-unknown"], tmp_path, DATABASE_URL=store)
    assert result.code == 3 and result.stdout == ""
    assert result.line.startswith("attention: no record '0WO-unknown'")
    as_json = run(["status", "0WO-unknown", "--json"], tmp_path, DATABASE_URL=store)
    assert as_json.code == 3 and '"known": false' in as_json.stdout


def test_unexpected_error_exits_1_as_internal_error_without_traceback(tmp_path: Path, store: str) -> None:
    patch = ("sync.service.admin", "record_status", "raise RuntimeError('wires crossed')")
    result = run(["status", "0WO1"], tmp_path, patch, DATABASE_URL=store)
    assert result.code == 1
    assert result.line == (
        "internal error: RuntimeError: wires crossed "
        "(run with DISPATCH_CONNECTOR_DEBUG=1 to see the traceback)"
    )


def test_unexpected_error_with_debug_shows_the_traceback(tmp_path: Path, store: str) -> None:
    patch = ("sync.service.admin", "record_status", "raise RuntimeError('wires crossed')")
    result = run(["status", "0WO1"], tmp_path, patch, DATABASE_URL=store, DISPATCH_CONNECTOR_DEBUG="1")
    assert result.code == 1
    assert result.stderr.startswith("internal error: RuntimeError: wires crossed\nTraceback")
    assert result.stderr.rstrip().endswith("RuntimeError: wires crossed")


def test_database_errors_never_show_the_statement() -> None:
    locked = sa_exc.OperationalError(
        "UPDATE lease SET holder = ?", ("secret-holder",), sqlite3.OperationalError("database is locked")
    )
    message, code = exit_for(locked)
    assert code == 1 and "database is locked" in message
    assert "UPDATE" not in message and "secret-holder" not in message
    clash = sa_exc.IntegrityError("INSERT INTO t VALUES (?)", ("x",), sqlite3.IntegrityError("UNIQUE failed"))
    message, code = exit_for(clash)
    assert code == 1 and message.startswith("internal error: IntegrityError: UNIQUE failed")
    assert "INSERT" not in message


@pytest.mark.parametrize("where", ["", "Status = 'New'; DELETE", "Status = 'New' -- all"])
def test_unusable_where_condition_exits_2_saying_how_to_write_it(
    tmp_path: Path, store: str, where: str
) -> None:
    env = {
        "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:9",
        "SALESFORCE_USERNAME": "u",
        "SALESFORCE_PASSWORD": "p",
    }
    result = run(["flag", "WorkOrder", "--where", where], tmp_path, DATABASE_URL=store, **env)
    assert result.code == 2
    assert result.line.startswith("error: --where must be one SOQL condition without ';' or comments")


def test_route_to_an_unconfigured_back_end_exits_2_naming_file_and_key(tmp_path: Path, store: str) -> None:
    import yaml

    from connector.mapping import DEFAULT_MAPPING

    raw = yaml.safe_load(DEFAULT_MAPPING.read_text())
    raw["objects"]["WorkOrder"]["route"] = {"field": "Priority", "map": {"High": "dispatch_euu"}}
    mapping = tmp_path / "routed.yaml"
    mapping.write_text(yaml.safe_dump(raw))
    result = run(["publish", "--dry-run"], tmp_path, DATABASE_URL=store, MAPPING_FILE=str(mapping))
    assert result.code == 2
    assert result.line == (
        f"error: mapping file {mapping}: objects.WorkOrder.route.map.High: back end 'dispatch_euu' is not "
        "configured (configured: dispatch_connect)"
    )


# --- issue 17: expected mistakes seen as tracebacks or wrong answers ------------------------------------

FIXTURE = (
    Path(__file__).resolve().parents[2] / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
)
SALESFORCE = {
    "SALESFORCE_INSTANCE_URL": "https://127.0.0.1:9",
    "SALESFORCE_USERNAME": "u",
    "SALESFORCE_PASSWORD": "p",
}


@pytest.fixture
def salesforce() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(FIXTURE) as emulator:
        yield emulator


def login(sf: SalesforceEmulator, *, trusted: bool = True) -> dict[str, str]:
    """The environment that logs the CLI in to the emulator (trusting its CA unless told not to)."""
    env = {
        "SALESFORCE_INSTANCE_URL": sf.base_url,
        "SALESFORCE_USERNAME": "integration@fieldservice.example",
        "SALESFORCE_PASSWORD": "demo-password",
        "SALESFORCE_SECURITY_TOKEN": "demo-token",
    }
    return {**env, "SALESFORCE_CA_BUNDLE": str(sf.ca_path)} if trusted else env


@pytest.mark.parametrize("command", [["status", "0WO1"], ["inbox"], ["db", "current"], ["retry", "--dead"]])
def test_database_url_of_unknown_kind_exits_2_for_every_command(tmp_path: Path, command: list[str]) -> None:
    result = run(command, tmp_path, DATABASE_URL="foo://bar")
    assert result.code == 2 and result.line.startswith("error: DATABASE_URL names a database")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
@pytest.mark.parametrize("command", [["log"], ["status", "0WO1"], ["db", "upgrade"]])
def test_database_in_a_read_only_folder_exits_2(tmp_path: Path, store: str, command: list[str]) -> None:
    folder = Path(store.removeprefix("sqlite:///")).parent
    for leftover in folder.glob("store.db-*"):
        leftover.unlink()
    folder.chmod(0o555)
    try:
        result = run(command, tmp_path, DATABASE_URL=store)
    finally:
        folder.chmod(0o755)
    assert result.code == 2 and "the database in DATABASE_URL cannot be used" in result.line


def test_read_only_database_is_still_read_by_log_and_status(tmp_path: Path, store: str) -> None:
    read_only = f"sqlite:///file:{store.removeprefix('sqlite:///')}?mode=ro&uri=true"
    assert run(["log"], tmp_path, DATABASE_URL=read_only).code == 0
    result = run(["status", "0WO1"], tmp_path, DATABASE_URL=read_only)
    assert result.code == 3 and result.line.startswith("attention: no record '0WO1'")


def test_missing_ca_bundle_exits_2_naming_the_setting_and_the_path(tmp_path: Path, store: str) -> None:
    env = {**SALESFORCE, "SALESFORCE_CA_BUNDLE": "/nonexistent.pem"}
    result = run(WHERE, tmp_path, DATABASE_URL=store, **env)
    assert result.code == 2 and result.line == "error: SALESFORCE_CA_BUNDLE: no such file: /nonexistent.pem"


def test_ca_bundle_that_is_not_a_certificate_exits_2(tmp_path: Path, store: str) -> None:
    (tmp_path / "notes.pem").write_text("not a certificate\n")
    env = {**SALESFORCE, "SALESFORCE_CA_BUNDLE": str(tmp_path / "notes.pem")}
    result = run(WHERE, tmp_path, DATABASE_URL=store, **env)
    assert result.code == 2
    assert result.line.startswith(
        f"error: SALESFORCE_CA_BUNDLE: {tmp_path / 'notes.pem'} holds no usable PEM"
    )


def test_self_signed_endpoint_without_ca_bundle_exits_2_saying_to_set_it(
    tmp_path: Path, store: str, salesforce: SalesforceEmulator
) -> None:
    result = run(WHERE, tmp_path, DATABASE_URL=store, **login(salesforce, trusted=False))
    assert result.code == 2
    assert result.line.startswith(f"error: the certificate of {salesforce.base_url} is not trusted (")
    assert "set SALESFORCE_CA_BUNDLE to the CA file" in result.line and "SSLError" not in result.line
    assert "temporary" not in result.line  # a settings error, not an outage to retry


def test_flag_with_the_emulator_ca_works(tmp_path: Path, store: str, salesforce: SalesforceEmulator) -> None:
    salesforce.insert("WorkOrder", {"Subject": "a", "Status": "New", "City": "O'Brien"})
    args = ["flag", "WorkOrder", "--where", "City = {city}", "--param", "city=O'Brien"]
    result = run(args, tmp_path, DATABASE_URL=store, **login(salesforce))
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "flagged 1 WorkOrder record(s)"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--where", "City = {city}", "--param", "town=Boston"],
            "error: --where uses {city} but no value was given: add --param city=VALUE (given: town)",
        ),
        (
            ["--where", "City = {city}"],
            "error: --where uses {city} but no value was given: add --param city=VALUE (given: none)",
        ),
        (
            ["--where", "City = 'Boston'", "--param", "town"],
            "error: --param 'town': write it as NAME=VALUE, e.g. --param city=Boston",
        ),
        (
            ["--where", "City = 'Boston'", "--param", "town=Boston"],
            "error: --param town is not used: --where has no {town} (its placeholders: none)",
        ),
        (
            ["--where", "City = {}", "--param", "city=Boston"],
            'error: --where placeholders must be named, e.g. "City = {city}" with --param city=Boston',
        ),
        (
            ["--where", "City = {city", "--param", "city=Boston"],
            "error: --where: expected '}' before end of string; write a literal brace twice ({{ or }})",
        ),
    ],
)
def test_flag_placeholders_and_params_are_checked_before_anything_is_sent(
    tmp_path: Path, args: list[str], line: str
) -> None:
    # no store and no Salesforce: the condition is refused first
    result = run(
        ["flag", "WorkOrder", *args], tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/none.db", **SALESFORCE
    )
    assert result.code == 2 and result.line == line
    assert not (tmp_path / "none.db").exists()


def _hold_port() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_run_on_a_port_in_use_exits_2_before_any_job_runs(tmp_path: Path, store: str) -> None:
    holder = _hold_port()
    port = str(holder.getsockname()[1])
    try:
        result = run(["run", "--role", "poller"], tmp_path, DATABASE_URL=store, DASHBOARD_PORT=port)
    finally:
        holder.close()
    assert result.code == 2
    assert result.line == (
        f"error: port {port} on 127.0.0.1 is already in use (another daemon or demo?); stop what holds it or "
        "choose another port with DASHBOARD_PORT"
    )
    with sqlite3.connect(store.removeprefix("sqlite:///")) as connection:  # a poll job would log its failure
        assert connection.execute("SELECT count(*) FROM sync_log").fetchone() == (0,)


def test_demo_serve_on_a_port_in_use_exits_2_before_the_demo_runs(tmp_path: Path) -> None:
    holder = _hold_port()
    port = str(holder.getsockname()[1])
    try:
        result = run(["demo", "--serve", "--port", port], tmp_path)
    finally:
        holder.close()
    assert result.code == 2 and result.line.endswith("choose another port with --port")
    assert result.stdout == ""  # no emulator started, nothing published


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--work-orders", "5", "--flagged", "10"],
            "error: --flagged must be between 0 and --work-orders (5), got 10: the admin flags some of the "
            "seeded work orders",
        ),
        (
            ["--flagged", "-3"],
            "error: --flagged must be between 0 and --work-orders (50), got -3: the admin flags some of the "
            "seeded work orders",
        ),
        (["--work-orders", "0"], "error: --work-orders must be at least 1, got 0"),
    ],
)
def test_demo_counts_are_checked(tmp_path: Path, args: list[str], line: str) -> None:
    result = run(["demo", *args], tmp_path)
    assert result.code == 2 and result.line == line and result.stdout == ""


def test_dispatch_signature_refusal_names_dispatch_public_key(tmp_path: Path, store: str) -> None:
    with DispatchEmulator("organization|1|x", "ab" * 32) as dispatch:
        env = {"DISPATCH_BASE_URL": dispatch.base_url, "DISPATCH_PUBLIC_KEY": "organization|1|x"}
        result = run(["poll"], tmp_path, DATABASE_URL=store, DISPATCH_SECRET="cd" * 32, **env)
    assert result.code == 1
    assert (
        "check DISPATCH_SECRET and that DISPATCH_PUBLIC_KEY 'organization|1|x' belongs to it" in result.line
    )
    assert "cd" * 32 not in result.stderr


def test_db_current_of_a_store_that_needs_an_upgrade_exits_3(tmp_path: Path, store: str) -> None:
    with sqlite3.connect(store.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0003'")
    result = run(["db", "current"], tmp_path, DATABASE_URL=store)
    assert result.code == 3
    assert result.stdout.startswith("schema 0003 (program needs ")
    assert result.line.startswith("attention: database ") and result.line.endswith(
        f"is at schema 0003, this program needs {head_revision()}; run `dispatch-connector db upgrade`"
    )


def test_db_current_of_an_empty_database_exits_3(tmp_path: Path) -> None:
    result = run(["db", "current"], tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/empty.db")
    assert result.code == 3 and result.line.endswith(
        "has no connector tables; run `dispatch-connector db upgrade`"
    )


def test_db_current_up_to_date_exits_0(tmp_path: Path, store: str) -> None:
    result = run(["db", "current"], tmp_path, DATABASE_URL=store)
    assert result.code == 0 and "up to date" in result.stdout and result.stderr == ""


def test_process_whose_write_backs_all_failed_exits_3(
    tmp_path: Path, store: str, salesforce: SalesforceEmulator
) -> None:
    from sync.store.db import session_scope
    from sync.writeback.queue import enqueue_update

    wo = salesforce.insert("WorkOrder", {"Subject": "a", "Status": "New"})
    engine = make_engine(store)
    with session_scope(engine) as session:
        enqueue_update(session, "WorkOrder", wo, {"No_Such_Field__c": "x"}, source="test")
    engine.dispose()
    result = run(["process"], tmp_path, DATABASE_URL=store, **login(salesforce))
    assert result.code == 3
    assert "CRM records written 0 in 1 call(s), failed 1" in result.stdout
    assert result.line.startswith(
        f"attention: 1 CRM write-back(s) failed, the first: WorkOrder {wo}: INVALID_FIELD"
    )
    assert result.line.endswith("see `dispatch-connector log --level error`")


def test_process_with_nothing_to_do_exits_0(
    tmp_path: Path, store: str, salesforce: SalesforceEmulator
) -> None:
    result = run(["process"], tmp_path, DATABASE_URL=store, **login(salesforce))
    assert result.code == 0 and result.stderr == ""


def test_retry_without_a_flag_explains_itself(tmp_path: Path, store: str) -> None:
    result = run(["retry"], tmp_path, DATABASE_URL=store)
    assert result.code == 2
    assert result.line == (
        "error: retry what? --dead requeues dead inbox messages, --writebacks queues failed CRM write-backs "
        "again (both may be given)"
    )


@pytest.mark.parametrize("command", [["log"], ["inbox"]])
def test_limit_below_one_is_refused(tmp_path: Path, store: str, command: list[str]) -> None:
    result = run([*command, "--limit", "-1"], tmp_path, DATABASE_URL=store)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert "Error: Invalid value for '--limit': -1 is not in the range x>=1." in result.stderr


def test_demo_serve_on_an_impossible_port_exits_2(tmp_path: Path) -> None:
    result = run(["demo", "--serve", "--port", "70000"], tmp_path)
    assert (
        result.code == 2 and result.line == "error: --port must be a port number from 0 to 65535, got 70000"
    )

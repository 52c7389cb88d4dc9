"""Every expected error leaves the CLI as one line on stderr and a documented exit code, never a traceback.

Real subprocesses (`python -m sync.service.cli`); an engine function is replaced inside the child process when
a test needs an error that a healthy store and no network cannot produce.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from sync.service.cli.exits import exit_for
from sync.store.db import make_engine, upgrade

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
    assert result.code == 3
    assert '"known": false' in result.stdout and result.line.startswith("attention: no record '0WO-unknown'")


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

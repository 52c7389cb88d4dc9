"""The README's "Running one cycle by hand" works as written, against both emulators, in a fresh folder.

The fenced block under that heading is read from README.md and run line by line in a temp dir that holds
only `.venv` (a link to this virtualenv, as a clone has it after `make install`). Lines ending in `&` are
started as the README starts them (bash, same text) and stopped at the end; every other line runs in bash
with the environment the lines before it left (so `. .venv/bin/activate`, `eval` and `export` carry over),
must exit 0 within its timeout without an `error:` line, and the lines the README explains must print what
it says. Nothing in a command is replaced: the ports come in through SANDBOX_SALESFORCE_PORT /
SANDBOX_DISPATCH_PORT, which the README documents, so the test runs beside a sandbox someone left running.
The other tests hold the promises the README makes about the sandbox commands (deterministic `sandbox env`,
one-line errors).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HEADING = "## Running one cycle by hand"
LINE_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15
BACKGROUND = re.compile(r"^(?P<command>.*?)\s&\s*(#.*)?$")
WORK_ORDER_ID = "0WO5g0BOSTON101G4D"
# What the README says some lines do, by the start of the line; every key must be in the block.
EXPECTED_OUTPUT = {
    "dispatch-connector flag WorkOrder": ["flagged 2 WorkOrder record(s)"],
    "dispatch-connector publish --dry-run": ["00000101", "00000102", "Boston", "Spark Electric Co"],
    "dispatch-connector sandbox field accept 00000101": ["accepted 00000101"],
    "dispatch-connector sandbox field schedule 00000101": ["scheduled"],
    f"dispatch-connector status {WORK_ORDER_ID}": ["scheduled"],
    f"dispatch-connector log --record {WORK_ORDER_ID}": ["scheduled"],
}
REQUIRED_COMMANDS = ("db upgrade", "publish", "poll", "process")
SCRUBBED_PREFIXES = ("SALESFORCE_", "DISPATCH_", "SANDBOX_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SCRUBBED = {"DATABASE_URL", "MAPPING_FILE", "VIRTUAL_ENV", "PYTHONPATH"}


def by_hand_block(text: str) -> list[str]:
    """The commands of the fenced block under HEADING, comment-only and blank lines left out."""
    assert f"\n{HEADING}\n" in text, f"README.md has no '{HEADING}' section"
    section = text.split(f"\n{HEADING}\n", 1)[1].split("\n## ", 1)[0]
    assert section.count("```") >= 2, f"'{HEADING}' has no fenced code block"
    block = section.split("```", 2)[1]
    lines = [line.strip() for line in block.splitlines()[1:]]  # [0] is the fence's info string
    return [line for line in lines if line and not line.startswith("#")]


def background_command(line: str) -> str | None:
    """The command of a line the README runs in the background (`... &  # comment`), else None."""
    tokens = shlex.split(line, comments=True)
    match = BACKGROUND.match(line)
    assert (tokens[-1:] == ["&"]) == bool(match), f"cannot tell whether this runs in the background: {line}"
    return match.group("command").strip() if match else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def venv_dir() -> Path:
    """The virtualenv running this test (what `make install` builds), or a skip saying why there is none."""
    prefix = Path(sys.prefix)
    if (prefix / "bin" / "activate").is_file() and (prefix / "bin" / "dispatch-connector").is_file():
        return prefix
    pytest.skip(
        f"not run from a virtualenv with dispatch-connector installed ({prefix}): `make install` first"
    )


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """This environment without any connector setting and without the virtualenv on PATH (a new shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES) and k not in SCRUBBED}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != venv / "bin"]
    env["PATH"] = os.pathsep.join(path or ["/usr/bin", "/bin"])
    env["COLUMNS"] = "250"  # tables of record ids and log messages unwrapped, as on a wide terminal
    return {**env, **extra}


@dataclass
class Shell:
    """Runs README lines one at a time in `cwd`, carrying the environment from line to line."""

    cwd: Path
    env: dict[str, str]
    background: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    def start(self, command: str) -> None:
        log = self.cwd / f"background-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one at the end
            )
        self.background.append((command, process, log))

    def run(self, line: str) -> str:
        dump = self.cwd / ".env-after-line"
        script = f'{line}\nstatus=$?\nenv -0 > {shlex.quote(str(dump))}\nexit "$status"\n'
        try:
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=LINE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"README line did not finish within {LINE_TIMEOUT_S} s: {line}\n{self.report()}")
        self.transcript.append(f"$ {line}\n{done.stdout}{done.stderr}")
        errors = [
            x
            for x in done.stderr.splitlines()
            if x.startswith(("error:", "internal error:")) or "command not found" in x
        ]
        if done.returncode != 0 or errors:
            pytest.fail(f"README line failed (exit {done.returncode}): {line}\n{self.report()}")
        self.env = dict(
            item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item
        )  # what `activate`, `eval` and `export` left
        return done.stdout + done.stderr

    def report(self) -> str:
        logs = [
            f"--- background: {cmd}\n{log.read_text(errors='replace')}" for cmd, _, log in self.background
        ]
        return "\n".join([*self.transcript[-4:], *logs])

    def stop(self) -> list[int | None]:
        """Ctrl-C for each background process group (as `kill %1 %2` or Ctrl-C in its terminal), then KILL."""
        codes: list[int | None] = []
        for _, process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
            try:
                codes.append(process.wait(timeout=STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)
                codes.append(None)
        return codes


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    venv = venv_dir()
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    ports = {"SANDBOX_SALESFORCE_PORT": str(free_port()), "SANDBOX_DISPATCH_PORT": str(free_port())}
    runner = Shell(tmp_path, clean_env(venv, **ports))
    try:
        yield runner
    finally:
        runner.stop()


def test_block_has_the_steps_the_readme_explains() -> None:
    lines = by_hand_block(README.read_text())
    background = [c for c in map(background_command, lines) if c]
    assert background == ["dispatch-connector sandbox salesforce", "dispatch-connector sandbox dispatch"]
    for start in [*EXPECTED_OUTPUT, *(f"dispatch-connector {c}" for c in REQUIRED_COMMANDS)]:
        assert any(line.startswith(start) for line in lines), f"the by-hand block lost `{start}`"
    assert any(line.startswith('eval "$(dispatch-connector sandbox env') for line in lines)


def test_readme_by_hand_cycle_runs_as_written(shell: Shell) -> None:
    for line in by_hand_block(README.read_text()):
        command = background_command(line)
        if command is not None:
            shell.start(command)
            continue
        output = shell.run(line)
        for start, expected in EXPECTED_OUTPUT.items():
            if line.startswith(start):
                missing = [text for text in expected if text not in output]
                assert not missing, f"`{line}` did not print {missing}:\n{output}"
    for command, process, log in shell.background:
        assert process.poll() is None, f"`{command}` exited early:\n{log.read_text()}"
    # The write-back reached the CRM: ask the Salesforce emulator the README started, with the CA it wrote.
    http = requests.Session()
    http.trust_env = False
    url = f"{shell.env['SALESFORCE_INSTANCE_URL']}/control/records/WorkOrder/{WORK_ORDER_ID}"
    record = http.get(url, verify=shell.env["SALESFORCE_CA_BUNDLE"], timeout=10).json()
    assert record["Dispatch_Status__c"] == "scheduled", record
    assert record["Dispatch_Appointment_Start__c"].startswith("2026-12-01T09:00:00"), record
    assert all(code is not None for code in shell.stop()), shell.report()


# -- the sandbox commands' promises ------------------------------------------------------------------------


def cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = clean_env(Path(sys.prefix))
    return subprocess.run(
        [sys.executable, "-m", "sync.service.cli", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    return lines[0]


def test_sandbox_env_prints_the_same_exports_every_time(tmp_path: Path) -> None:
    first = cli(["sandbox", "env"], tmp_path, SANDBOX_SALESFORCE_PORT="9443")
    again = cli(["sandbox", "env"], tmp_path, SANDBOX_SALESFORCE_PORT="9443")
    assert first.returncode == 0 and first.stdout == again.stdout, first.stderr
    assert first.stdout.splitlines() == [
        "export SALESFORCE_INSTANCE_URL=https://127.0.0.1:9443",
        "export SALESFORCE_USERNAME=integration@demo.example",
        "export SALESFORCE_PASSWORD=demo-password",
        "export SALESFORCE_SECURITY_TOKEN=demo-token",
        f"export SALESFORCE_CA_BUNDLE={tmp_path.resolve() / 'salesforce-emulator-ca.pem'}",
        "export DISPATCH_BASE_URL=http://127.0.0.1:8780",
        "export DISPATCH_PUBLIC_KEY='organization|1|sandbox'",
        "export DISPATCH_SECRET=" + "5a4d" * 16,
    ]


def test_sandbox_env_prints_the_same_after_its_own_eval(tmp_path: Path) -> None:
    first = cli(["sandbox", "env"], tmp_path)
    exported = dict(line.removeprefix("export ").split("=", 1) for line in first.stdout.splitlines())
    again = cli(["sandbox", "env"], tmp_path, **{k: shlex.split(v)[0] for k, v in exported.items()})
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr


def test_sandbox_env_keeps_a_secret_already_set_without_printing_it(tmp_path: Path) -> None:
    done = cli(
        ["sandbox", "env"], tmp_path, DISPATCH_SECRET="c0ffee" * 8, DISPATCH_PUBLIC_KEY="organization|7|x"
    )
    assert done.returncode == 0, done.stderr
    assert "c0ffee" not in done.stdout and "export DISPATCH_SECRET" not in done.stdout
    assert "export DISPATCH_PUBLIC_KEY='organization|7|x'" in done.stdout


def test_sandbox_env_wait_names_the_emulator_that_does_not_answer(tmp_path: Path) -> None:
    done = cli(["sandbox", "env", "--wait", "0.5", "--salesforce-port", str(free_port())], tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "Salesforce emulator did not answer" in one_line(done)


def test_field_without_a_running_emulator_is_one_line(tmp_path: Path) -> None:
    done = cli(["sandbox", "field", "--dispatch-port", str(free_port()), "accept", "00000101"], tmp_path)
    assert done.returncode == 1
    assert one_line(done).startswith("error: no Dispatch Connect emulator answers at http://127.0.0.1:")


def test_field_on_an_unknown_job_is_one_line_and_needs_attention(tmp_path: Path) -> None:
    with DispatchEmulator("organization|1|sandbox", "5a4d" * 16) as emulator:
        port = emulator.base_url.rsplit(":", 1)[1]
        done = cli(["sandbox", "field", "--dispatch-port", port, "accept", "00000999"], tmp_path)
    assert done.returncode == 3
    assert one_line(done).startswith("attention: no job '00000999' in the Dispatch Connect emulator")


def test_field_start_before_schedule_says_to_schedule(tmp_path: Path) -> None:
    with DispatchEmulator("organization|1|sandbox", "5a4d" * 16) as emulator:
        emulator.create_job(title="Fix", address={"city": "Boston"}, customer={}, external_id="0WOX")
        port = emulator.base_url.rsplit(":", 1)[1]
        done = cli(["sandbox", "field", "--dispatch-port", port, "start", "0WOX"], tmp_path)
    assert done.returncode == 3
    assert "sandbox field schedule 0WOX" in one_line(done)


def test_emulator_on_a_taken_port_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = cli(["sandbox", "dispatch"], tmp_path, SANDBOX_DISPATCH_PORT=port)
    assert done.returncode == 1
    assert f"port {port} is in use" in one_line(done) and "SANDBOX_DISPATCH_PORT" in done.stderr

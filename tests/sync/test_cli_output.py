"""What the CLI prints for people is readable at 80 and 120 columns: ids whole (never cut with '…', never
folded), text wrapped, never wider than the terminal; `--json` gives the raw records.

Real subprocesses with COLUMNS set, on a store filled with long ids and messages quoting JSON."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from sync.store.db import make_engine, session_scope, upgrade
from sync.store.dbtypes import utcnow
from sync.store.models import EntityStateRow, InboxMessage, OutboxBatch, SyncLog, TrackedRecord, WriteBack

CRM_ID = "0WO5g000000000AGAQ"
EXTERNAL_ID = "dispatch_connect:job:0WO5g000000000AGAQ:2026"
BATCH_ID = "fa03d951-1eee-4aef-9ffa-0db6171aaccc"
MSG_ID = "dispatch_v3:appointment:1006:2026-11-28T23:10:18Z:scheduled"
DEAD_ID = "dispatch_v3:job:1003:2026-11-28T23:11:53Z:unscheduled-dead"
NEW_ID = "93a49077-2e2e-49db-b1a5-9ff38539dc87"
ERROR = (
    'Dispatch rejected job 0WO5g000000000AGAQ: Problem writing job ({"errors":{"address":["is not complete: '
    'both state and zip are missing"]}})'
)
WIDTHS = [80, 120]


def run(args: list[str], cwd: Path, columns: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "sync.service.cli", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": str(columns), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store holding one tracked work order with its job, a pending write-back, log rows and three inbox
    messages (new, processed, dead), all with long ids."""
    url = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(url)
    upgrade(engine)
    now = utcnow()
    with session_scope(engine) as session:
        session.add(
            OutboxBatch(message_id=BATCH_ID, system="dispatch_connect", status="confirmed", created_at=now)
        )
        session.add(
            TrackedRecord(
                system="dispatch_connect",
                crm_object="WorkOrder",
                crm_id=CRM_ID,
                external_id=EXTERNAL_ID,
                remote_id="10007",
                last_message_id=BATCH_ID,
                published_at=now,
                confirmed_at=now,
            )
        )
        session.add(
            EntityStateRow(
                system="dispatch_connect",
                kind="job",
                external_id=EXTERNAL_ID,
                state="scheduled",
                status_message="Waiting for parts",
                milestones={
                    "accepted": "2026-11-28T23:08:53+00:00",
                    "scheduled": "2026-11-28T23:10:53+00:00",
                },
            )
        )
        session.add(
            WriteBack(
                crm_object="WorkOrder",
                crm_id=CRM_ID,
                fields={"Dispatch_Status__c": "scheduled"},
                attempts=2,
                created_at=now,
                last_error=f"WorkOrder {CRM_ID}: UNABLE_TO_LOCK_ROW: unable to obtain exclusive access",
            )
        )
        for n, (message_id, status) in enumerate([(DEAD_ID, "dead"), (MSG_ID, "processed"), (NEW_ID, "new")]):
            session.add(
                InboxMessage(
                    message_id=message_id,
                    status=status,
                    type="job_status_changed",
                    system="dispatch_connect",
                    attempts=5 if status == "dead" else 1,
                    received_at=now + timedelta(seconds=n),
                    last_error=ERROR if status == "dead" else None,
                )
            )
        session.add(
            SyncLog(
                at=now,
                level="error",
                direction="out",
                entity="job",
                crm_record_id=CRM_ID,
                external_id=EXTERNAL_ID,
                msg_id=MSG_ID,
                message=ERROR,
            )
        )
    engine.dispose()
    return url


def assert_readable(text: str, columns: int, *whole: str) -> None:
    """Every id in `whole` appears unbroken, nothing is cut with an ellipsis, no line is wider than the
    terminal."""
    for value in whole:
        assert value in text, f"{value!r} not printed whole:\n{text}"
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= columns


def unwrapped(text: str) -> str:
    """The words of `text` in order (table borders and wrapping removed), to find a wrapped message."""
    return " ".join(word for word in text.split() if word not in ("│", "┃"))


@pytest.mark.parametrize("columns", WIDTHS)
def test_log_prints_every_id_whole(tmp_path: Path, store: str, columns: int) -> None:
    result = run(["log"], tmp_path, columns, DATABASE_URL=store)
    assert result.returncode == 0, result.stderr
    assert_readable(result.stdout, columns, CRM_ID, EXTERNAL_ID, MSG_ID)
    assert ERROR in unwrapped(result.stdout)  # the whole message, wrapped


def test_log_on_a_wide_terminal_is_a_table(tmp_path: Path, store: str) -> None:
    result = run(["log"], tmp_path, 250, DATABASE_URL=store)
    assert result.returncode == 0, result.stderr
    assert "┃ time" in result.stdout and "┃ msg id" in result.stdout
    assert_readable(result.stdout, 250, CRM_ID, EXTERNAL_ID, MSG_ID)
    assert ERROR in unwrapped(result.stdout)


def test_log_json_is_the_raw_rows(tmp_path: Path, store: str) -> None:
    result = run(["log", "--json"], tmp_path, 80, DATABASE_URL=store)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["crm_record_id"], row["msg_id"], row["message"]) for row in rows] == [
        (CRM_ID, MSG_ID, ERROR)
    ]


@pytest.mark.parametrize("columns", WIDTHS)
def test_status_is_a_readable_summary(tmp_path: Path, store: str, columns: int) -> None:
    result = run(["status", CRM_ID], tmp_path, columns, DATABASE_URL=store)
    assert result.returncode == 0, result.stderr
    assert_readable(result.stdout, columns, CRM_ID, EXTERNAL_ID, BATCH_ID)
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[0] == f"WorkOrder {CRM_ID}"
    for expected in (
        "back end dispatch_connect",
        "remote id 10007",
        "flagged yes",
        f"last batch {BATCH_ID} (confirmed)",
        "job state scheduled (Waiting for parts)",
        "milestones accepted 2026-11-28T23:08:53+00:00",
        "scheduled 2026-11-28T23:10:53+00:00",
        "last error none",
        "write-backs 1 pending or failed",
    ):
        assert expected in lines, f"{expected!r} missing:\n{result.stdout}"
    assert "#1 pending update Dispatch_Status__c; 2 attempt(s), last error: WorkOrder" in unwrapped(
        result.stdout
    )


def test_status_json_is_the_raw_record(tmp_path: Path, store: str) -> None:
    result = run(["status", EXTERNAL_ID, "--json"], tmp_path, 80, DATABASE_URL=store)
    assert result.returncode == 0, result.stderr
    known = json.loads(result.stdout)
    assert (known["known"], known["record"], known["external_id"]) == (True, CRM_ID, EXTERNAL_ID)
    assert known["state"] == "scheduled" and known["batch_status"] == "confirmed"
    assert [wb["fields"] for wb in known["writebacks"]] == [["Dispatch_Status__c"]]


@pytest.mark.parametrize("columns", WIDTHS)
def test_inbox_lists_messages_under_the_depth_summary(tmp_path: Path, store: str, columns: int) -> None:
    result = run(["inbox"], tmp_path, columns, DATABASE_URL=store)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("new        1\nprocessed  1\ndead       1\n")
    assert_readable(result.stdout, columns, NEW_ID, MSG_ID, DEAD_ID, "job_status_changed", "dispatch_connect")
    assert ERROR in unwrapped(result.stdout)  # the dead one's last error, wrapped
    newest_first = [result.stdout.index(message_id) for message_id in (NEW_ID, MSG_ID, DEAD_ID)]
    assert newest_first == sorted(newest_first)


def test_inbox_on_a_wide_terminal_is_a_table(tmp_path: Path, store: str) -> None:
    result = run(["inbox"], tmp_path, 250, DATABASE_URL=store)
    assert "┃ message id" in result.stdout and "┃ attempts" in result.stdout
    assert_readable(result.stdout, 250, NEW_ID, MSG_ID, DEAD_ID)
    assert ERROR in unwrapped(result.stdout)


def test_inbox_filters_by_status_and_limits(tmp_path: Path, store: str) -> None:
    dead = run(["inbox", "--status", "dead"], tmp_path, 120, DATABASE_URL=store)
    assert DEAD_ID in dead.stdout and MSG_ID not in dead.stdout and NEW_ID not in dead.stdout
    newest = run(["inbox", "--limit", "1"], tmp_path, 120, DATABASE_URL=store)
    assert NEW_ID in newest.stdout and MSG_ID not in newest.stdout
    assert newest.stdout.rstrip().endswith("showing the newest 1 of 3; see --status and --limit")
    refused = run(["inbox", "--status", "stuck"], tmp_path, 120, DATABASE_URL=store)
    assert refused.returncode == 2 and "Invalid value for '--status'" in refused.stderr


def test_inbox_json_holds_the_depth_and_the_messages(tmp_path: Path, store: str) -> None:
    result = run(["inbox", "--json", "--status", "dead"], tmp_path, 80, DATABASE_URL=store)
    shown = json.loads(result.stdout)
    assert shown["depth"] == {"new": 1, "processed": 1, "dead": 1}
    assert [(m["message_id"], m["status"], m["attempts"], m["last_error"]) for m in shown["messages"]] == [
        (DEAD_ID, "dead", 5, ERROR)
    ]


@pytest.mark.parametrize("columns", WIDTHS)
def test_config_show_keeps_setting_names_and_values_whole(tmp_path: Path, columns: int) -> None:
    url = "sqlite:///" + "/".join(["a-rather-long-folder-name"] * 4) + "/store.db"
    result = run(["config", "show"], tmp_path, columns, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert_readable(result.stdout, columns, "DISPATCH_PUBLIC_KEY", "SALESFORCE_SECURITY_TOKEN")
    assert "".join(unwrapped(result.stdout).split()).count(url) == 1  # folded, never cut


@pytest.mark.parametrize("columns", WIDTHS)
def test_demo_prints_the_whole_error(columns: int) -> None:
    from sync.service.demo import run_demo

    out = io.StringIO()
    assert run_demo(work_orders=3, flagged=1, console=Console(file=out, width=columns)) == 0
    text = out.getvalue()
    assert_readable(text, columns, "WO-1000", "WO-BAD")
    assert "..." not in text
    assert unwrapped(text).count('both state and zip are missing"]}})') == 2  # the record and the log row

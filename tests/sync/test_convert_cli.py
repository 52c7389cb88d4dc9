"""`dispatch-connector convert job-offer` through a real process (`python -m sync.service.cli`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.connector.dispatch_v3_seed import json_block_after, new_work_order

SEED_WARNINGS = [
    "warning: {file}: duration: dropped: expiration is no longer supported",
    "warning: {file}: entities[0].type: dropped ('organization'): "
    "work orders can only be sent to service providers",
]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "sync.service.cli", "convert", "job-offer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def documents(stdout: str) -> list[Any]:
    """The JSON documents printed one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while stdout[at:].strip():
        at += len(stdout[at:]) - len(stdout[at:].lstrip())
        document, at = decoder.raw_decode(stdout, at)
        found.append(document)
    return found


@pytest.fixture
def offer(tmp_path: Path) -> Path:
    """The guide's Job Offer example, as its text stands."""
    path = tmp_path / "offer.json"
    path.write_text(json_block_after("> Old Job Offer"), encoding="utf-8")
    return path


def expected_work_order() -> dict[str, Any]:
    return {**new_work_order(), "description": "The sink needs fixing."}  # see test_dispatch_v3_convert.py


def test_the_guides_example_prints_its_work_order(offer: Path) -> None:
    done = run(offer.parent, "offer.json")
    assert done.returncode == 0, done.stderr
    assert documents(done.stdout) == [expected_work_order()]


def test_dropped_attributes_are_warnings_naming_file_and_path(offer: Path) -> None:
    done = run(offer.parent, "offer.json")
    assert done.stderr.splitlines() == [w.format(file="offer.json") for w in SEED_WARNINGS]


def test_what_dispatch_would_refuse_is_a_warning_and_the_work_order_is_still_printed(tmp_path: Path) -> None:
    (tmp_path / "bare.json").write_text('{"job": {"title": "Fix the Sink"}}', encoding="utf-8")
    done = run(tmp_path, "bare.json")
    assert done.returncode == 0
    assert "warning: bare.json: location: Dispatch would refuse this: required" in done.stderr
    assert documents(done.stdout) == [
        {"workflow": "service", "orchestration": "direct", "title": "Fix the Sink"}
    ]


def test_out_writes_stem_dot_workorder_json(offer: Path, tmp_path: Path) -> None:
    done = run(tmp_path, "offer.json", "--out", "converted/orders")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "converted" / "orders" / "offer.workorder.json"
    assert json.loads(written.read_text(encoding="utf-8")) == expected_work_order()
    assert done.stdout.strip() == str(Path("converted/orders/offer.workorder.json"))


def test_a_bad_file_among_good_ones_is_an_error_the_others_are_written_exit_1(
    offer: Path, tmp_path: Path
) -> None:
    (tmp_path / "broken.json").write_text('{"job": {', encoding="utf-8")
    (tmp_path / "second.json").write_text(offer.read_text(encoding="utf-8"), encoding="utf-8")
    done = run(tmp_path, "offer.json", "broken.json", "second.json", "--out", "out")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: broken.json: not valid JSON: "
        "Expecting property name enclosed in double quotes at line 1 column 10"
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "offer.workorder.json",
        "second.workorder.json",
    ]
    assert "Traceback" not in done.stderr


def test_a_json_file_that_is_not_a_job_offer_is_an_error(offer: Path, tmp_path: Path) -> None:
    (tmp_path / "customer.json").write_text('{"customer": {"first_name": "Joe"}}', encoding="utf-8")
    done = run(tmp_path, "customer.json", "offer.json")
    assert done.returncode == 1
    assert 'error: customer.json: not a job offer: no "job" object' in done.stderr.splitlines()
    assert documents(done.stdout) == [expected_work_order()]


def test_a_missing_file_is_an_error_the_others_are_printed(offer: Path) -> None:
    done = run(offer.parent, "missing.json", "offer.json")
    assert done.returncode == 1
    assert "error: missing.json: cannot be read (No such file or directory)" in done.stderr.splitlines()
    assert len(documents(done.stdout)) == 1


def test_two_inputs_with_one_stem_do_not_overwrite_each_other(offer: Path, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "offer.json").write_text(offer.read_text(encoding="utf-8"), encoding="utf-8")
    done = run(tmp_path, "offer.json", "other/offer.json", "--out", "out")
    assert done.returncode == 1
    assert "error: other/offer.json: " in done.stderr and "already written for offer.json" in done.stderr


def test_every_file_printed_in_order_without_out(offer: Path, tmp_path: Path) -> None:
    (tmp_path / "small.json").write_text('{"job": {"title": "Second"}}', encoding="utf-8")
    done = run(tmp_path, "offer.json", "small.json")
    assert done.returncode == 0
    assert [d["title"] for d in documents(done.stdout)] == ["Fix the Sink", "Second"]


def test_no_file_is_a_usage_error(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 2
    assert "Missing argument 'FILES...'" in done.stderr

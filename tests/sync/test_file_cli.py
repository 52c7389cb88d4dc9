"""`file get` and `billing-docs` as support runs them: real subprocesses against the Dispatch Connect
emulator (files-api and billing PDFs on its socket). Bad input is one line and a non-zero exit, nothing
written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.dispatch_connect.files import pdf, png

KEY, SECRET = "organization|7|files", "ab" * 32
TOKEN = "37f3cf22-f1c5-437c-a078-8608e25a0b2b"
ADDRESS = {"street_1": "1 Main St", "city": "Boston", "state": "MA", "postal_code": "02118"}


@pytest.fixture
def dispatch() -> Iterator[DispatchEmulator]:
    with DispatchEmulator(KEY, SECRET) as emulator:
        yield emulator


def run(args: list[str], cwd: Path, dispatch: DispatchEmulator) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "SALESFORCE_", "DATABASE"))
    }
    env = {
        **clean,
        "DISPATCH_BASE_URL": dispatch.base_url,
        "DISPATCH_FILES_URL": dispatch.base_url,
        "DISPATCH_PUBLIC_KEY": KEY,
        "DISPATCH_SECRET": SECRET,
        "DATABASE_URL": f"sqlite:///{cwd}/none.db",
    }
    command = [sys.executable, "-m", "sync.service.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_file_get_writes_the_file_named_by_its_type(tmp_path: Path, dispatch: DispatchEmulator) -> None:
    dispatch.put_file(TOKEN)
    done = run(["file", "get", TOKEN], tmp_path, dispatch)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"{TOKEN}.png").read_bytes() == png(64, 48)
    assert done.stdout.strip() == f"wrote {TOKEN}.png ({len(png(64, 48))} bytes, image/png)"


def test_file_get_a_format_to_a_path(tmp_path: Path, dispatch: DispatchEmulator) -> None:
    dispatch.put_file(TOKEN)
    done = run(["file", "get", TOKEN, "--format", "square_250", "-o", "thumb.png"], tmp_path, dispatch)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thumb.png").read_bytes() == png(250, 250)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("unknown", f"file {TOKEN}: the token is unknown to Dispatch (HTTP 404)"),
        ("expired", f"file {TOKEN}: the token has expired (HTTP 410)"),
        ("big", f"file {TOKEN}: 5000 bytes, over the limit of 1000 bytes"),
    ],
)
def test_file_get_of_a_bad_token_is_one_line_and_exit_1(
    tmp_path: Path, dispatch: DispatchEmulator, setup: str, words: str
) -> None:
    if setup != "unknown":
        dispatch.put_file(TOKEN, size=5000)
    if setup == "expired":
        dispatch.expire_file(TOKEN)
    done = run(["file", "get", TOKEN, "--max-bytes", "1000"], tmp_path, dispatch)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert words in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_file_get_of_an_unknown_format_is_a_usage_error(tmp_path: Path, dispatch: DispatchEmulator) -> None:
    done = run(["file", "get", TOKEN, "--format", "huge"], tmp_path, dispatch)
    assert done.returncode == 2 and "huge" in done.stderr
    assert dispatch.counts.get("files", 0) == 0


def test_billing_docs_writes_one_pdf_per_document(tmp_path: Path, dispatch: DispatchEmulator) -> None:
    job = dispatch.create_job(
        title="Leak", address=ADDRESS, customer={"first_name": "Ann"}, external_id="WO-1"
    )
    estimate = dispatch.create_estimate("WO-1")
    invoice = dispatch.create_invoice("WO-1")
    done = run(["billing-docs", str(job), "-o", "pdfs"], tmp_path, dispatch)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "pdfs"
    assert (folder / f"billing-document-{estimate}.pdf").read_bytes() == pdf(f"Estimate {estimate}")
    assert (folder / f"billing-document-{invoice}.pdf").read_bytes() == pdf(f"Invoice {invoice}")
    assert len(done.stdout.splitlines()) == 2


def test_billing_docs_of_a_job_without_documents_exits_3(tmp_path: Path, dispatch: DispatchEmulator) -> None:
    done = run(["billing-docs", "999"], tmp_path, dispatch)
    assert done.returncode == 3 and "job 999 has no billing documents" in done.stderr
    assert list(tmp_path.iterdir()) == []

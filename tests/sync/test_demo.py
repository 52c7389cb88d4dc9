"""`make demo` runs the whole loop offline: records flow both ways and the expected error shows."""

from __future__ import annotations

import io

from rich.console import Console

from sync.service.demo import run_demo


def test_demo_runs_the_loop_and_shows_records_and_error() -> None:
    out = io.StringIO()
    assert run_demo(work_orders=9, flagged=8, console=Console(file=out, width=250)) == 0
    text = out.getvalue()
    assert "Dispatch now holds 6 jobs, Dispatch v3 2 work orders" in text  # every third to Dispatch v3
    assert "complete" in text and "paused" in text and "Waiting for parts" in text
    assert "Dispatch rejected job" in text and "address" in text
    assert "Dispatch v3" in text  # the routed work orders show their back end

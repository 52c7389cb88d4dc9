"""`convert job-offer`: Job Offer files (the deprecated v1 entity) as v3 Work Orders, for a migration.

One file's problem never stops the others: an unreadable file is one `error: FILE: ...` line and the run goes
on, ending with exit 1. What the conversion left behind, and what Dispatch would refuse in the result, are
`warning: FILE: path: message` lines; the work order is written all the same, for a person to finish.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from connector.dispatch_v3.convert import NotAJobOffer, convert_job_offer
from connector.dispatch_v3.validation import validate_work_order
from sync.errors import EXIT_FAILURE

SUFFIX = ".workorder.json"


@click.group("convert")
def convert() -> None:
    """Turn documents of older Dispatch APIs into their v3 form."""


@convert.command("job-offer")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Write each work order to DIR/<stem>{SUFFIX} instead of printing it.",
)
@click.pass_context
def job_offer(ctx: click.Context, files: tuple[Path, ...], out_dir: Path | None) -> None:
    """Convert Job Offer JSON FILEs to Work Orders by the migration guide's attribute table."""
    failed = 0
    written: dict[Path, Path] = {}
    for file in files:
        try:
            order = _convert(file)
            if out_dir is None:
                click.echo(json.dumps(order, indent=2, ensure_ascii=False))
            else:
                click.echo(_write(order, file, out_dir, written))
        except _FileFailed as exc:
            click.echo(f"error: {file}: {exc}", err=True)
            failed += 1
    if failed:
        ctx.exit(EXIT_FAILURE)


class _FileFailed(Exception):
    """This file cannot be converted or written; the message says why, without the file name."""


def _convert(file: Path) -> dict[str, Any]:
    try:
        offer = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _FileFailed(f"cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise _FileFailed(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise _FileFailed(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    try:
        order, warnings = convert_job_offer(offer, source=str(file))
    except NotAJobOffer as exc:
        raise _FileFailed(str(exc)) from exc
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    for violation in validate_work_order(order):
        click.echo(
            f"warning: {file}: {violation.path}: Dispatch would refuse this: {violation.message}", err=True
        )
    return order


def _write(order: dict[str, Any], file: Path, out_dir: Path, written: dict[Path, Path]) -> Path:
    """Writes DIR/<stem>.workorder.json and returns its path; two inputs with one stem are an error."""
    target = out_dir / f"{file.stem}{SUFFIX}"
    if target in written:
        raise _FileFailed(f"{target} was already written for {written[target]}; rename one of them")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(order, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise _FileFailed(f"cannot write {target} ({exc.strerror or exc})") from exc
    written[target] = file
    return target

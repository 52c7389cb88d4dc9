"""`file get TOKEN` and `billing-docs JOB_ID`: files from the field, fetched for support through a configured
back end's files (connector.ports.FileSource), written to disk and never to the CRM.

Needs the back end's settings only, not the store. Exit codes as docs/cli.md: a token the back end does not
know or that expired, a file over `--max-bytes`, an outage: 1 (the line names the token); a back end without
files or a bad option: 2; a job without billing documents: 3.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import click

from connector.dispatch_connect.files import FORMATS
from connector.ports import FileSource, file_source
from sync.errors import NeedsAttention, UsageError
from sync.service.cli.common import _Ctx, console, pass_ctx
from sync.writeback.files import DEFAULT_MAX_BYTES


def _files(ctx: _Ctx, backend: str | None) -> FileSource:
    """The named (else the default, first configured) back end's files, built without the store."""
    settings = ctx.settings
    blocks = settings.backend_blocks
    name = backend or next(iter(blocks), None)
    block = blocks.get(name) if name else None
    if name is None or block is None:
        known = ", ".join(blocks) or "none"
        raise UsageError(f"no back end named {backend!r} is configured (configured: {known})")
    settings.require(*(missing.lower() for missing in block.missing()))
    source = file_source(block.entry.factory(name, block.values, ()))
    if source is None:
        raise UsageError(f"back end {name!r} ({block.entry.label}) holds no files")
    return source


_backend = click.option("--backend", help="Configured back end to ask (default: the first one).")
_max_bytes = click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Refuse a file larger than this.",
)


@click.group("file")
def file_group() -> None:
    """Files from the field (photos, attachments) by their file token."""


@file_group.command("get")
@click.argument("token")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    default="original",
    show_default=True,
    help="How the back end renders the file.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Where to write it.")
@_backend
@_max_bytes
@pass_ctx
def file_get(
    ctx: _Ctx, token: str, file_format: str, output: Path | None, backend: str | None, max_bytes: int
) -> None:
    """Download the file TOKEN names (default: TOKEN plus its type's extension, here)."""
    fetched = _files(ctx, backend).fetch_file(token, file_format, max_bytes=max_bytes)
    path = output or Path(token + (mimetypes.guess_extension(fetched.mime_type, strict=False) or ""))
    path.write_bytes(fetched.content)
    console.print(f"wrote {path} ({len(fetched.content)} bytes, {fetched.mime_type})", highlight=False)


@click.command("billing-docs")
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Folder to write the PDFs into (default: here).",
)
@_backend
@_max_bytes
@pass_ctx
def billing_docs(ctx: _Ctx, job_id: str, output: Path, backend: str | None, max_bytes: int) -> None:
    """Every billing document (estimate, invoice) of the back end's job JOB_ID as a PDF."""
    pdfs = _files(ctx, backend).billing_pdfs(job_id, max_bytes=max_bytes)
    if not pdfs:
        raise NeedsAttention(f"job {job_id} has no billing documents")
    output.mkdir(parents=True, exist_ok=True)
    for document, fetched in sorted(pdfs.items()):
        path = output / (fetched.name or f"billing-document-{document}.pdf")
        path.write_bytes(fetched.content)
        console.print(f"wrote {path} ({len(fetched.content)} bytes)", highlight=False)

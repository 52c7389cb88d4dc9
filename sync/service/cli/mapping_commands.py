"""`mapping check`: the mapping file against the Salesforce org (describe of each mapped object), before a
deployment or after an admin changed fields. Exit 0 when it matches; 2 with every problem named otherwise,
the same refusal the daemon and `publish` give at start."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sync.errors import EXIT_USAGE
from sync.service.cli.common import _Ctx, pass_ctx

if TYPE_CHECKING:
    from sync.context import SyncContext


@click.group("mapping")
def mapping() -> None:
    """Check the mapping file against the CRM org."""


@mapping.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (problems with their keys).")
@pass_ctx
@click.pass_context
def check(click_ctx: click.Context, ctx: _Ctx, as_json: bool) -> None:
    """Check every field the mapping reads or writes exists in the org, is writable and has a fitting type."""
    from sync.context import SyncContext
    from sync.errors import MappingMismatch
    from sync.service.mapping_check import check_mapping, mismatch_message

    sync_ctx = SyncContext.from_settings(ctx.settings, check=False)  # the store is not needed
    problems = check_mapping(sync_ctx)
    source = str(sync_ctx.mapping.source)
    if as_json:
        body = {
            "mapping_file": source,
            "ok": not problems,
            "objects": _objects(sync_ctx),
            "problems": [
                {"object": p.object, "field": p.field, "key": p.key, "message": p.message} for p in problems
            ],
        }
        click.echo(json.dumps(body, indent=2))
        if problems:
            click_ctx.exit(EXIT_USAGE)
        return
    if problems:
        raise MappingMismatch(mismatch_message(source, problems))
    click.echo(f"mapping file {source} matches the Salesforce org (checked: {', '.join(_objects(sync_ctx))})")


def _objects(sync_ctx: SyncContext) -> list[str]:
    """The org objects the mapping names: mapped objects, note objects, the log object."""
    spec = sync_ctx.mapping.spec
    names = list(spec.objects)
    names += [o.write_back.notes.object for o in spec.objects.values() if o.write_back.notes is not None]
    names += [spec.log_object.object] if spec.log_object is not None else []
    return list(dict.fromkeys(names))

"""The `dispatch-connector` command. Each command parses, calls one engine function, prints.

Commands never catch expected errors. Each package raises from its own root with an actionable message, and
`main` hands whatever escapes the click group to `exits.exit_for`, which prints one line (no traceback) and
picks the exit code:

    0  ok
    1  runtime failure: a service stayed down after its retries, a send was refused, a job failed; the line
       says whether running the command again later can help (a connector error's `retriable`)
    2  usage or settings: a bad option (click's own message), a bad setting or DATABASE_URL, a bad mapping
       file, a store not migrated ("run `dispatch-connector db upgrade`")
    3  needs attention: the command ran but its answer needs a person (`status` or `replay` of an id the
       store does not know, `db current` of a store that needs an upgrade, `process` with a failure)

Anything else is a bug: exit 1 with "internal error: <Type>: <message>"; set DISPATCH_CONNECTOR_DEBUG=1 to get
the traceback as well. The same table is in docs/cli.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from sync.service.cli.common import _Ctx
from sync.service.cli.config_commands import config, machines
from sync.service.cli.convert_commands import convert
from sync.service.cli.exits import debug_enabled, exit_for, internal_error_line
from sync.service.cli.file_commands import billing_docs, file_group
from sync.service.cli.lookup_commands import availability, match
from sync.service.cli.mapping_commands import mapping
from sync.service.cli.sandbox_commands import demo, sandbox
from sync.service.cli.store_commands import db
from sync.service.cli.support_commands import inbox, log_command, replay, retry, status
from sync.service.cli.sync_commands import flag, poll, process, publish, run

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="dispatch-connector", prog_name="dispatch-connector", message="%(prog)s %(version)s"
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="DISPATCH_CONNECTOR_CONFIG",
    help="YAML config file (secrets are refused there; use the environment).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Keep Salesforce and Dispatch Connect in sync."""
    ctx.obj = _Ctx(config_file)


COMMANDS = (
    config,
    db,
    machines,
    log_command,
    flag,
    publish,
    status,
    poll,
    process,
    inbox,
    replay,
    retry,
    run,
    convert,
    match,
    availability,
    mapping,
    file_group,
    billing_docs,
)
for _command in (*COMMANDS, demo, sandbox):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the group (on the command line's arguments unless given) and exit with `exit_for`'s code."""
    try:
        returned = cli.main(args=argv, standalone_mode=False)
    except Exception as exc:
        message, code = exit_for(exc)
        if message.startswith("internal error:") and debug_enabled():
            click.echo(internal_error_line(exc), err=True)
            raise
        click.echo(message, err=True)
        sys.exit(code)
    if isinstance(returned, int) and returned:  # `ctx.exit(n)` returns n when not standalone
        sys.exit(returned)

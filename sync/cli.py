"""The `dispatch-connector` command. Each command parses, calls one engine function, prints.

Errors of the engine and the edges carry actionable messages; they are printed without a traceback and map to
exit code 2 (fix the configuration) or 1 (anything else).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from sync.errors import SyncError
from sync.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err_console = Console(stderr=True)


class _Ctx:
    def __init__(self, config_file: str | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    def engine(self, *, check: bool = True) -> Any:
        from sync.db import check_schema, make_engine

        engine = make_engine(self.settings.database_url)
        if check:
            check_schema(engine)
        return engine


pass_ctx = click.make_pass_decorator(_Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


# --- config -------------------------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_show(ctx: _Ctx, as_json: bool) -> None:
    """Print the effective settings, secrets masked."""
    shown = ctx.settings.masked()
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    table = Table("setting (environment variable)", "value")
    for name, value in shown.items():
        table.add_row(name.upper(), "" if value is None else value)
    console.print(table)


# --- db -----------------------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Create and migrate the local store."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(ctx: _Ctx, revision: str) -> None:
    """Apply migrations (default: to the newest)."""
    from sync.db import current_revision, upgrade

    engine = ctx.engine(check=False)
    upgrade(engine, revision)
    click.echo(f"database at schema {current_revision(engine)}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: _Ctx, revision: str) -> None:
    """Revert migrations to REVISION ('base' removes every table)."""
    from sync.db import current_revision, downgrade

    engine = ctx.engine(check=False)
    downgrade(engine, revision)
    click.echo(f"database at schema {current_revision(engine) or 'base (empty)'}")


@db.command("current")
@pass_ctx
def db_current(ctx: _Ctx) -> None:
    """Show the database's schema revision and whether it is the one this program needs."""
    from sync.db import current_revision, head_revision

    engine = ctx.engine(check=False)
    current, head = current_revision(engine), head_revision()
    state = "up to date" if current == head else "needs `dispatch-connector db upgrade`"
    click.echo(f"schema {current or 'none'} (program needs {head}): {state}")


# --- machines -----------------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/diagrams"),
    show_default=True,
    help="Where to write one Mermaid diagram per entity kind.",
)
def machines(out_dir: Path) -> None:
    """Print every state machine's transition table and write Mermaid diagrams."""
    from statemachines import KINDS, mermaid, transition_table

    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        table = Table("trigger", "from", "to", title=f"{kind} machine")
        for trigger, source, dest in transition_table(kind):
            table.add_row(trigger, source, dest)
        console.print(table)
        (out_dir / f"{kind}.mmd").write_text(mermaid(kind), encoding="utf-8")
    click.echo(f"diagrams written to {out_dir}/<kind>.mmd")


# --- log ----------------------------------------------------------------------------------------------------
def parse_since(value: str | None) -> timedelta | None:
    """'90s', '15m', '2h', '3d' -> timedelta."""
    if not value:
        return None
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(f"{value!r}: use a number and a unit, e.g. 90s, 15m, 2h, 3d")
    return timedelta(**{units[unit]: int(number)})


@cli.command("log")
@click.option("--record", help="CRM record id or external id.")
@click.option("--entity", help="job, appointment, customer, organization, ...")
@click.option("--direction", type=click.Choice(["in", "out", "internal"]))
@click.option("--since", help="Only rows newer than this, e.g. 2h.")
@click.option(
    "--level", type=click.Choice(["debug", "info", "warning", "error"]), help="This level and worse."
)
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def log_command(
    ctx: _Ctx,
    record: str | None,
    entity: str | None,
    direction: str | None,
    since: str | None,
    level: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Read the sync log (newest first)."""
    from sync.db import session_scope
    from sync.dbtypes import utcnow
    from sync.synclog import query_log

    window = parse_since(since)
    with session_scope(ctx.engine()) as session:
        rows = query_log(
            session,
            record=record,
            entity=entity,
            direction=direction,
            level=level,
            since=utcnow() - window if window else None,
            limit=limit,
        )
    if as_json:
        for row in rows:
            click.echo(row.model_dump_json())
        return
    table = Table("time", "level", "dir", "entity", "CRM id", "external id", "msg id", "message")
    for row in rows:
        at = row.at.strftime("%Y-%m-%d %H:%M:%S") if row.at else ""
        table.add_row(
            at,
            row.level,
            row.direction,
            row.entity or "",
            row.crm_record_id or "",
            row.external_id or "",
            row.msg_id or "",
            row.message,
        )
    console.print(table)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SyncError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except Exception as exc:  # edges' errors carry actionable messages too
        from connector.errors import ConnectorError

        if not isinstance(exc, ConnectorError) and type(exc).__module__.split(".")[0] != "statemachines":
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""`config show` and `machines`: what the program is configured with and which transitions it allows."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from sync.service.cli.common import _Ctx, console, pass_ctx
from sync.service.cli.render import Field, print_records


@click.group()
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
    fields = (Field("setting (environment variable)", key=True, head=True), Field("value", min_width=24))
    rows = [(name.upper(), "" if value is None else str(value)) for name, value in shown.items()]
    print_records(console, fields, rows)


@click.command()
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

"""`db upgrade/downgrade/current`: the store's schema. These open the database without the schema check,
since fixing the schema is what they are for."""

from __future__ import annotations

import click

from sync.errors import NeedsAttention, StoreNotReady
from sync.service.cli.common import _Ctx, pass_ctx


@click.group()
def db() -> None:
    """Create and migrate the local store."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(ctx: _Ctx, revision: str) -> None:
    """Apply migrations (default: to the newest)."""
    from sync.store.db import current_revision, upgrade

    engine = ctx.engine(check=False)
    upgrade(engine, revision)
    click.echo(f"database at schema {current_revision(engine)}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: _Ctx, revision: str) -> None:
    """Revert migrations to REVISION ('base' removes every table)."""
    from sync.store.db import current_revision, downgrade

    engine = ctx.engine(check=False)
    downgrade(engine, revision)
    click.echo(f"database at schema {current_revision(engine) or 'base (empty)'}")


@db.command("current")
@pass_ctx
def db_current(ctx: _Ctx) -> None:
    """Show the database's schema revision and whether it is the one this program needs (exit 3 if not)."""
    from sync.store.db import check_schema, current_revision, head_revision

    engine = ctx.engine(check=False)
    current, head = current_revision(engine), head_revision()
    state = "up to date" if current == head else "needs `dispatch-connector db upgrade`"
    click.echo(f"schema {current or 'none'} (program needs {head}): {state}")
    try:
        check_schema(engine)
    except StoreNotReady as exc:  # the same words as every other command, but an answer, not a refusal
        raise NeedsAttention(str(exc)) from None

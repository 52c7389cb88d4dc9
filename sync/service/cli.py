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

from sync.errors import SettingsError, SyncError
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
        from sync.store.db import check_schema, make_engine

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
    """Show the database's schema revision and whether it is the one this program needs."""
    from sync.store.db import current_revision, head_revision

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
    from sync.store.db import session_scope
    from sync.store.dbtypes import utcnow
    from sync.store.synclog import query_log

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


# --- sync commands --------------------------------------------------------------------------------------
def _context(ctx: _Ctx) -> Any:
    from sync.context import SyncContext

    return SyncContext.from_settings(ctx.settings)


@cli.command()
@click.argument("crm_object")
@click.option(
    "--where",
    "where",
    required=True,
    help="SOQL condition selecting the records, e.g. \"Status = 'New' AND City = 'Boston'\".",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help='Value for a {NAME} placeholder in --where, quoted safely: --where "City = {city}" '
    '--param city="O\'Brien"',
)
@click.option("--unset", is_flag=True, help="Clear the flag instead of setting it.")
@pass_ctx
def flag(ctx: _Ctx, crm_object: str, where: str, params: tuple[str, ...], unset: bool) -> None:
    """Bulk-flag CRM records for Dispatch (sets the mapping's flag field)."""
    from sync.service.admin import flag_records

    values = dict(p.split("=", 1) for p in params if "=" in p)
    count = flag_records(_context(ctx), crm_object, where, params=values, unset=unset)
    click.echo(f"{'unflagged' if unset else 'flagged'} {count} {crm_object} record(s)")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print the exact payloads; send and store nothing.")
@click.option(
    "--all",
    "full",
    is_flag=True,
    help="First load: every flagged record, with a progress bar; safe to interrupt and rerun.",
)
@pass_ctx
def publish(ctx: _Ctx, dry_run: bool, full: bool) -> None:
    """Publish changed flagged records to Dispatch (one cycle)."""
    from sync.outbound.publisher import publish_changes

    sync_ctx = _context(ctx)
    if full and not dry_run:
        report = _backfill_with_progress(sync_ctx)
    else:
        report = publish_changes(sync_ctx, dry_run=dry_run, full=full)
    if dry_run:
        click.echo(json.dumps(report.payloads, indent=2))
    click.echo(
        f"read {report.read}, changed {report.changed}, refused {report.refused}, "
        f"canonical records {report.canonical_records}, batches {len(report.batches_created)}, "
        f"requests sent {report.requests_sent}",
        err=dry_run,
    )
    if report.send_errors:
        raise SyncError(f"sending failed (will retry next cycle): {report.send_errors[0]}")


def _backfill_with_progress(sync_ctx: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from sync.outbound.publisher import backfill_all, count_flagged

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed or 0:,.0f} rec/s")

    columns = (TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("records", total=count_flagged(sync_ctx))
        return backfill_all(sync_ctx, progress=lambda n: progress.advance(task, n))


@cli.command()
@click.argument("record_id")
@pass_ctx
def status(ctx: _Ctx, record_id: str) -> None:
    """Show what the connector knows of one CRM record (or external id)."""
    from sync.service.admin import record_status

    click.echo(json.dumps(record_status(_context(ctx), record_id), indent=2, default=str))


@cli.command()
@pass_ctx
def poll(ctx: _Ctx) -> None:
    """Drain agent/out once into the inbox (store, then ack)."""
    from sync.inbound.poller import drain_outbound_queue

    report = drain_outbound_queue(_context(ctx))
    click.echo(
        f"polls {report.polls}, received {report.received}, stored {report.stored}, "
        f"redelivered {report.redelivered}, acked {report.acked}"
    )
    if report.store_failures:
        raise SyncError(f"{len(report.store_failures)} message(s) could not be stored and were not acked")


@cli.command()
@pass_ctx
def process(ctx: _Ctx) -> None:
    """Apply stored inbox messages, then flush the CRM write-back queue."""
    from sync.inbound.processor import process_inbox
    from sync.writeback.queue import flush_writebacks

    sync_ctx = _context(ctx)
    report = process_inbox(sync_ctx)
    flushed = flush_writebacks(
        sync_ctx.engine,
        sync_ctx.crm,
        batch_size=sync_ctx.settings.writeback_batch_size,
        concurrency=sync_ctx.settings.writeback_concurrency,
    )
    click.echo(
        f"processed {report.processed}, failed {report.failed}, dead {report.dead}; "
        f"CRM records written {flushed.records_written} in {flushed.calls} call(s)"
    )


@cli.command()
@pass_ctx
def inbox(ctx: _Ctx) -> None:
    """Inbox depth by status."""
    from sync.inbound.processor import inbox_depth

    depth = inbox_depth(_context(ctx))
    for name in ("new", "processed", "dead"):
        click.echo(f"{name:10} {depth.get(name, 0)}")


@cli.command()
@click.argument("message_id")
@pass_ctx
def replay(ctx: _Ctx, message_id: str) -> None:
    """Process one stored message again."""
    from sync.inbound.processor import replay as replay_message

    if not replay_message(_context(ctx), message_id):
        raise SyncError(f"no inbox message {message_id!r}; see `dispatch-connector inbox`")
    click.echo(f"replayed {message_id}")


@cli.command()
@click.option("--dead", is_flag=True, required=True, help="Requeue every dead message.")
@pass_ctx
def retry(ctx: _Ctx, dead: bool) -> None:
    """Requeue dead inbox messages for processing."""
    from sync.inbound.processor import retry_dead

    click.echo(f"requeued {retry_dead(_context(ctx))} dead message(s)")


@cli.command()
@click.option(
    "--role",
    type=click.Choice(["all", "publisher", "poller", "processor"]),
    default="all",
    show_default=True,
    help="Which jobs this process runs (several processes may share one store).",
)
@click.option("--once", is_flag=True, help="Run each job once and exit (no scheduler, no HTTP server).")
@pass_ctx
def run(ctx: _Ctx, role: str, once: bool) -> None:
    """Run the sync daemon: scheduled jobs plus /healthz, /readyz, /metrics and the dashboard."""
    from sync.service.daemon import Daemon, freeze_startup_heap, serve
    from sync.service.logsetup import configure_logging

    settings = ctx.settings
    configure_logging(settings.log_json)
    sync_ctx = _context(ctx)
    if role != "poller":
        check_crm_login(sync_ctx)
    daemon = Daemon(sync_ctx, role=role)
    if once:
        daemon.run_once()
        failed = [s for s in daemon.health.snapshot().values() if s.last_result == "error"]
        if failed:
            raise SyncError(
                f"{len(failed)} job(s) failed: " + "; ".join(f"{s.name}: {s.last_error}" for s in failed)
            )
        return
    if settings.dashboard_host not in ("127.0.0.1", "localhost", "::1") and not settings.dashboard_token:
        raise SyncError(
            "DASHBOARD_HOST is not loopback: set DASHBOARD_TOKEN so the dashboard is not open to all"
        )
    freeze_startup_heap()
    serve(
        daemon,
        settings.dashboard_host,
        settings.dashboard_port,
        token=settings.secret("dashboard_token") or None,
        on_started=lambda url: err_console.print(f"dashboard and health on {url} (Ctrl-C to stop)"),
    )
    if daemon.fatal:
        raise SettingsError(daemon.fatal)


def check_crm_login(sync_ctx: Any) -> None:
    """Log in once before scheduling anything: a refused login stops here with exit 2 (naming the settings),
    instead of retrying every interval and locking the integration user."""
    from connector.crm import CrmAuthenticationError

    try:
        sync_ctx.crm  # noqa: B018  (builds the gateway, which logs in)
    except CrmAuthenticationError as exc:
        raise SettingsError(
            f"Salesforce refused the login ({exc}); check SALESFORCE_USERNAME, SALESFORCE_PASSWORD and "
            "SALESFORCE_SECURITY_TOKEN (or SALESFORCE_CLIENT_ID / SALESFORCE_CLIENT_SECRET)"
        ) from None


@cli.command()
@click.option("--work-orders", default=50, show_default=True, help="Work orders to seed.")
@click.option("--flagged", default=12, show_default=True, help="How many of them the admin flags.")
@click.option("--serve", is_flag=True, help="Keep running afterwards and serve the dashboard.")
@click.option("--port", default=8765, show_default=True, help="Dashboard port with --serve.")
def demo(work_orders: int, flagged: int, serve: bool, port: int) -> None:
    """Run the whole loop offline against the local emulators and show the result."""
    from sync.service.demo import run_demo

    sys.exit(run_demo(work_orders, flagged, console, serve_port=port if serve else None))


@cli.group()
def sandbox() -> None:
    """Run the local emulators (for trying a mapping offline)."""


@sandbox.command("dispatch")
@click.option("--port", default=8780, show_default=True)
@click.option("--visibility-timeout", default=30.0, show_default=True)
@pass_ctx
def sandbox_dispatch(ctx: _Ctx, port: int, visibility_timeout: float) -> None:
    """Serve a Dispatch Connect emulator that checks signatures with DISPATCH_PUBLIC_KEY/DISPATCH_SECRET."""
    from connector.sandbox.dispatch_connect.emulator import serve

    ctx.settings.require("dispatch_public_key", "dispatch_secret")
    serve(
        "127.0.0.1",
        port,
        public_key=str(ctx.settings.dispatch_public_key),
        secret_hex=ctx.settings.secret("dispatch_secret"),
        visibility_timeout=visibility_timeout,
    )


@sandbox.command("salesforce")
@click.option("--port", default=8743, show_default=True)
@click.option("--fixture", type=click.Path(exists=True, dir_okay=False), help="Org fixture (YAML/JSON).")
@click.option("--ca-out", default="salesforce-emulator-ca.pem", show_default=True)
def sandbox_salesforce(port: int, fixture: str | None, ca_out: str) -> None:
    """Serve a Salesforce REST emulator over HTTPS with a throwaway CA (written to --ca-out)."""
    from connector.sandbox.salesforce.emulator import DEMO_FIXTURE, serve

    serve("127.0.0.1", port, Path(fixture) if fixture else DEMO_FIXTURE, ca_path=ca_out)


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

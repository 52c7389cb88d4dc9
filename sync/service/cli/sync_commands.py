"""`flag`, `publish`, `poll`, `process` and `run`: the sync itself, one cycle at a time or as the daemon."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from sync.errors import NeedsAttention, SettingsError, SyncError, UsageError
from sync.service.cli.common import _context, _Ctx, err_console, pass_ctx

if TYPE_CHECKING:
    from sync.inbound.processor import ProcessReport
    from sync.writeback.queue import FlushReport


@click.command()
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
    '--param city="O\'Brien". Every placeholder needs one, and every one given must be used.',
)
@click.option("--unset", is_flag=True, help="Clear the flag instead of setting it.")
@pass_ctx
def flag(ctx: _Ctx, crm_object: str, where: str, params: tuple[str, ...], unset: bool) -> None:
    """Bulk-flag CRM records for Dispatch (sets the mapping's flag field)."""
    from sync.service.admin import flag_records, soql_condition

    values = parse_params(params)
    soql_condition(where, values)  # a bad condition stops here, before the store or Salesforce is opened
    count = flag_records(_context(ctx), crm_object, where, params=values, unset=unset)
    click.echo(f"{'unflagged' if unset else 'flagged'} {count} {crm_object} record(s)")


def parse_params(params: tuple[str, ...]) -> dict[str, str]:
    """`--param NAME=VALUE` options as a dict; anything else is refused rather than silently dropped."""
    values: dict[str, str] = {}
    for param in params:
        name, equals, value = param.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"--param {param!r}: write it as NAME=VALUE, e.g. --param city=Boston")
        if name in values:
            raise UsageError(f"--param {name} is given twice")
        values[name] = value
    return values


@click.command()
@click.option("--dry-run", is_flag=True, help="Print the exact payloads; send and store nothing.")
@click.option(
    "--all",
    "full",
    is_flag=True,
    help="First load: every flagged record, with a progress bar; safe to interrupt and rerun.",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="With --all: send the first load as the playbook's CSV (text/csv, dot-notation columns), "
    "one request per record type run. Only back ends that take CSV (Dispatch Connect).",
)
@pass_ctx
def publish(ctx: _Ctx, dry_run: bool, full: bool, as_csv: bool) -> None:
    """Publish changed flagged records to Dispatch (one cycle)."""
    from sync.outbound.publisher import publish_changes
    from sync.service.mapping_check import require_mapping_ok

    if as_csv and not full:
        raise UsageError("--csv is for a first load: use it with --all (publish --all --csv)")
    sync_ctx = _context(ctx)
    if as_csv:
        _require_csv(sync_ctx)
    require_mapping_ok(sync_ctx)  # the mapping against the org's describe, before anything is read or sent
    if full and not dry_run:
        report = _backfill_with_progress(sync_ctx, "csv" if as_csv else "json")
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


def _require_csv(sync_ctx: Any) -> None:
    """Every back end the mapping routes to must send CSV; name the ones that do not (exit 2)."""
    from connector.ports import destination_encodings

    routed = sorted(
        {
            name
            for spec in sync_ctx.mapping.objects.values()
            for name in spec.routed_backends(sync_ctx.default_backend)
        }
    )
    without = [
        f"{name} ({sync_ctx.backend(name).label})"
        for name in routed
        if "csv" not in destination_encodings(sync_ctx.backend(name).destination)
    ]
    if without:
        raise UsageError(
            f"--csv: back end {', '.join(without)} takes no CSV; publish --all without --csv for it "
            "(CSV first loads go to Dispatch Connect only)"
        )


def _backfill_with_progress(sync_ctx: Any, encoding: str = "json") -> Any:
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
        return backfill_all(sync_ctx, progress=lambda n: progress.advance(task, n), encoding=encoding)


@click.command()
@pass_ctx
def poll(ctx: _Ctx) -> None:
    """Drain agent/out once into the inbox (store, then ack)."""
    from sync.inbound.poller import drain_pull_channels

    report = drain_pull_channels(_context(ctx))
    click.echo(
        f"polls {report.polls}, received {report.received}, stored {report.stored}, "
        f"redelivered {report.redelivered}, acked {report.acked}"
    )
    if report.store_failures:
        raise SyncError(f"{len(report.store_failures)} message(s) could not be stored and were not acked")


@click.command()
@pass_ctx
def process(ctx: _Ctx) -> None:
    """Apply stored inbox messages, then flush the CRM write-back queue. Exit 3 when a message failed or went
    dead, or a write-back failed."""
    from sync.inbound.customers import link_field_customers
    from sync.inbound.processor import process_inbox
    from sync.service.mapping_check import require_mapping_ok
    from sync.writeback.files import flush_file_fetches
    from sync.writeback.logmirror import mirror_log
    from sync.writeback.queue import flush_writebacks

    sync_ctx = _context(ctx)
    require_mapping_ok(sync_ctx)
    report = process_inbox(sync_ctx)
    mirror_log(sync_ctx)  # sync-log errors into the CRM's log object, as the daemon's write-back job does
    flush_file_fetches(sync_ctx)  # files from the field into the CRM, as the daemon does
    flushed = flush_writebacks(
        sync_ctx.engine,
        sync_ctx.crm,
        batch_size=sync_ctx.settings.writeback_batch_size,
        concurrency=sync_ctx.settings.writeback_concurrency,
    )
    link_field_customers(sync_ctx)  # customers of jobs born in the field: linked on the next flush
    click.echo(
        f"processed {report.processed}, failed {report.failed}, dead {report.dead}; "
        f"CRM records written {flushed.records_written} in {flushed.calls} call(s), "
        f"failed {flushed.records_failed}"
    )
    problems = process_problems(report, flushed)
    if problems:
        raise NeedsAttention("; ".join(problems) + "; see `dispatch-connector log --level error`")


def process_problems(report: ProcessReport, flushed: FlushReport) -> list[str]:
    """What in a `process` run needs a person (exit 3): messages that failed or went dead, CRM write-backs
    that failed (retried later, or given up until `retry --writebacks`)."""
    problems = []
    if report.failed:
        problems.append(f"{report.failed} message(s) failed and will be retried")
    if report.dead:
        problems.append(f"{report.dead} message(s) went dead (`dispatch-connector retry --dead` after a fix)")
    if flushed.records_failed:
        gave_up = (
            f", {flushed.rows_failed} row(s) gave up (`dispatch-connector retry --writebacks` after a fix)"
            if flushed.rows_failed
            else ""
        )
        first = f", the first: {flushed.failures[0]}" if flushed.failures else ""
        problems.append(f"{flushed.records_failed} CRM write-back(s) failed{gave_up}{first}")
    return problems


@click.command()
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
        raise SettingsError(
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

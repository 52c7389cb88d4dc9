"""`demo` and `sandbox dispatch/salesforce`: the offline loop and the local emulators."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sync.service.cli.common import _Ctx, console, pass_ctx


@click.command()
@click.option("--work-orders", default=50, show_default=True, help="Work orders to seed.")
@click.option("--flagged", default=12, show_default=True, help="How many of them the admin flags.")
@click.option("--serve", is_flag=True, help="Keep running afterwards and serve the dashboard.")
@click.option("--port", default=8765, show_default=True, help="Dashboard port with --serve.")
def demo(work_orders: int, flagged: int, serve: bool, port: int) -> None:
    """Run the whole loop offline against the local emulators and show the result."""
    from sync.service.demo import run_demo

    sys.exit(run_demo(work_orders, flagged, console, serve_port=port if serve else None))


@click.group()
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

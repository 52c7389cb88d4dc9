"""`dispatch-connector demo`: the whole loop on the embedded default, offline, in one command.

Starts the emulators on loopback (Salesforce, Dispatch Connect, Dispatch v3), seeds a small field-service org,
flags work orders as an admin would and routes every third one to Dispatch v3 (the bundled two-back-end
mapping), publishes them, plays the technicians through each emulator's control API, and drains the events
back into the CRM. It ends by printing the CRM records and the sync log, then exits 0.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from connector.crm import connect_salesforce
from connector.mapping import DEFAULT_MAPPING, load_mapping
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from connector.sandbox.dispatch_v3 import DispatchV3Emulator
from connector.sandbox.salesforce.emulator import SalesforceEmulator
from statemachines import transition_table
from sync.context import SyncContext
from sync.errors import UsageError
from sync.inbound.poller import drain_pull_channels
from sync.inbound.processor import process_inbox
from sync.outbound.publisher import publish_changes
from sync.service.cli.render import MESSAGE_WIDTH, MIN_TEXT_WIDTH, Field, print_records
from sync.settings import load_settings
from sync.store.db import make_engine, session_scope, upgrade
from sync.store.synclog import query_log
from sync.writeback.queue import flush_writebacks

FIXTURE = (
    Path(__file__).resolve().parents[2] / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
)
DEMO_KEY, DEMO_SECRET = "organization|1|demo", "de30" * 16
V3_CLIENT_ID, V3_CLIENT_SECRET = "demo-connector", "demo-v3-secret"
MAPPING = DEFAULT_MAPPING.parent / "salesforce_dispatch_v3.yaml"
V3 = "Dispatch v3"  # the Dispatch_Backend__c value the mapping routes to dispatch_v3
SHOWN = [
    "WorkOrderNumber",
    "Dispatch_Backend__c",
    "Subject",
    "Dispatch_Status__c",
    "Dispatch_Status_Reason__c",
    "Dispatch_Accepted_At__c",
    "Dispatch_Completed_At__c",
    "Dispatch_Appointment_Start__c",
    "Dispatch_Last_Synced__c",
    "Dispatch_Error__c",
]
CITIES = [("Springfield", "IL", "62701"), ("Riverton", "WY", "82501"), ("Salem", "OR", "97301")]


def _seed(sf: SalesforceEmulator, count: int) -> tuple[list[str], str]:
    providers = [
        sf.insert("Account", {"Name": name, "Phone": phone, "Dispatch_Me__c": True})
        for name, phone in (("Spark Electric", "+15555550111"), ("FlowRight Plumbing", "+15555550122"))
    ]
    contacts = [
        sf.insert("Contact", {"FirstName": f, "LastName": last, "Email": f"{f.lower()}@example.com"})
        for f, last in (("Jane", "Doe"), ("Sam", "Lee"), ("Ana", "Ruiz"))
    ]
    orders = []
    for n in range(count):
        city, state, zip_code = CITIES[n % len(CITIES)]
        orders.append(
            sf.insert(
                "WorkOrder",
                {
                    "WorkOrderNumber": f"WO-{1000 + n}",
                    "Subject": f"Service call {n + 1}",
                    "Status": "New",
                    "Street": f"{n + 1} Main St",
                    "City": city,
                    "State": state,
                    "PostalCode": zip_code,
                    "ContactId": contacts[n % len(contacts)],
                    "Dispatch_Service_Provider__c": providers[n % 2],
                },
            )
        )
    bad = sf.insert(
        "WorkOrder",
        {
            "WorkOrderNumber": "WO-BAD",
            "Subject": "No usable address",
            "Status": "New",
            "Street": "Somewhere",
            "ContactId": contacts[0],
            "Dispatch_Service_Provider__c": providers[0],
        },
    )
    return orders, bad


def _cycle(ctx: SyncContext, dispatch: DispatchEmulator) -> None:
    publish_changes(ctx)
    dispatch.wait_idle(10)
    drain_pull_channels(ctx)
    process_inbox(ctx)
    flush_writebacks(ctx.engine, ctx.crm)


def _play_v3(v3: DispatchV3Emulator, orders: list[str], clock: list[float], step: str) -> None:
    """Dispatch v3's technicians, one step per sync (v3 is read by polling its lists, so a sync between
    steps shows each one): `accept` every work order; `book` all but the last; `finish` most of the booked
    ones and cancel the last."""
    for n, wo in enumerate(orders):
        clock[0] += 60
        if step == "accept":
            v3.accept(wo)
        elif step == "book" and n < len(orders) - 1:
            v3.schedule(wo, start_time=f"2026-12-1{n % 10}T14:00:00Z", duration_s=7200)
        elif step == "finish" and n < len(orders) - 2:
            v3.start(wo)
            v3.complete(wo)
    if step == "finish" and orders:
        clock[0] += 60
        v3.cancel(orders[-1], "Customer canceled")


def _play_field(dispatch: DispatchEmulator, orders: list[str], clock: list[float]) -> None:
    def tick() -> None:
        clock[0] += 60

    for wo in orders[:8]:
        tick()
        dispatch.accept_job(wo)
    for n, wo in enumerate(orders[:6]):
        tick()
        dispatch.schedule_appointment(wo, f"2026-12-0{n + 1}T15:00:00Z", f"2026-12-0{n + 1}T17:00:00Z")
    for wo in orders[:4]:
        tick()
        dispatch.enroute_appointment(wo)
        dispatch.start_appointment(wo)
    for wo in orders[:3]:
        tick()
        dispatch.complete_job(wo, "Work completed")
    # the rest of the story needs that many work orders; a smaller demo plays what it can
    if len(orders) > 4:
        tick()
        dispatch.pause_job(orders[4], "Waiting for parts")
    if len(orders) > 5:
        tick()
        dispatch.cancel_job(orders[-1], "Customer canceled")
    if orders:
        tick()
        dispatch.add_note(orders[0], "Replaced the breaker; customer happy")
    if len(orders) > 1:
        tick()
        estimate = dispatch.create_estimate(orders[1])
        dispatch.set_billing_status(estimate, "won")
        dispatch.create_invoice(orders[1])


def run_demo(
    work_orders: int = 50, flagged: int = 12, console: Console | None = None, *, serve_port: int | None = None
) -> int:
    check_arguments(work_orders, flagged, serve_port)
    console = console or Console()
    clock = [time.time()]
    workdir = Path(tempfile.mkdtemp(prefix="dispatch-demo-"))
    with (
        SalesforceEmulator(FIXTURE) as sf,
        DispatchEmulator(DEMO_KEY, DEMO_SECRET, clock=lambda: clock[0]) as dsp,
        DispatchV3Emulator(V3_CLIENT_ID, V3_CLIENT_SECRET, clock=lambda: clock[0]) as v3,
    ):
        console.print(
            f"[bold]Salesforce emulator[/] {sf.base_url}   [bold]Dispatch emulator[/] {dsp.base_url}   "
            f"[bold]Dispatch v3 emulator[/] {v3.base_url}"
        )
        orders, bad = _seed(sf, work_orders)
        settings = load_settings(
            database_url=f"sqlite:///{workdir}/demo.db",
            mapping_file=MAPPING,
            backends={"dispatch_connect": {}, "dispatch_v3": {}},
            dispatch_base_url=dsp.base_url,
            dispatch_files_url=dsp.base_url,  # the emulator serves the files-api too
            dispatch_public_key=DEMO_KEY,
            dispatch_secret=DEMO_SECRET,
            dispatch_v3_base_url=v3.base_url,
            dispatch_v3_client_id=V3_CLIENT_ID,
            dispatch_v3_client_secret=V3_CLIENT_SECRET,
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        ctx = SyncContext(
            settings=settings,
            engine=engine,
            mapping=load_mapping(MAPPING),
            crm_gateway=connect_salesforce(
                sf.base_url,
                username="integration@fieldservice.example",
                password="demo-password",
                security_token="demo-token",
                session=sf.session(),
            ),
        )
        ctx.check_routes()
        chosen = orders[:flagged]
        to_v3 = chosen[2::3]
        to_dc = [wo for wo in chosen if wo not in to_v3]
        with console.status("admin flags work orders, every third for Dispatch v3; publishing ..."):
            for wo in [*chosen, bad]:
                backend = V3 if wo in to_v3 else None
                sf.update(
                    "WorkOrder",
                    wo,
                    {"Dispatch_Send__c": "2026-11-25T09:00:00Z", "Dispatch_Backend__c": backend},
                )
            _cycle(ctx, dsp)
        console.print(
            f"published {len(chosen) + 1} flagged work orders of {work_orders + 1}; "
            f"Dispatch now holds {len(dsp.records('job'))} jobs, Dispatch v3 {len(v3.jobs())} work orders"
        )
        with console.status("technicians work the jobs in both systems; syncing back ..."):
            _play_field(dsp, to_dc, clock)
            for step in ("accept", "book", "finish"):
                _play_v3(v3, to_v3, clock, step)
                _cycle(ctx, dsp)
        _print_records(console, sf, [*chosen, bad])
        _print_log(console, ctx)
        if serve_port is not None:
            _serve(ctx, console, serve_port)
        console.print(
            f"job state machine: {len(transition_table('job'))} transitions "
            "(see `dispatch-connector machines`)"
        )
        console.print(
            "[green]demo finished[/]: records flowed both ways. Store kept at "
            f"{workdir}/demo.db; read its log with\n"
            f"  DATABASE_URL=sqlite:///{workdir}/demo.db .venv/bin/dispatch-connector log\n"
            "(from the repository folder; or `. .venv/bin/activate` first, then `dispatch-connector log`)"
        )
    return 0


def check_arguments(work_orders: int, flagged: int, serve_port: int | None) -> None:
    """Refuse what the demo cannot do before any emulator starts: flag more work orders than it seeds, or
    serve the dashboard on a port that is taken (checked now, not after the whole loop has run)."""
    if work_orders < 1:
        raise UsageError(f"--work-orders must be at least 1, got {work_orders}")
    if not 0 <= flagged <= work_orders:
        raise UsageError(
            f"--flagged must be between 0 and --work-orders ({work_orders}), got {flagged}: "
            "the admin flags some of the seeded work orders"
        )
    if serve_port is not None:
        from sync.service.daemon import bind_listener

        bind_listener("127.0.0.1", serve_port, setting="--port").close()


def _serve(ctx: SyncContext, console: Console, port: int) -> None:
    """Keep the emulators and a daemon running so the dashboard can be explored; Ctrl-C ends it."""
    from sync.service.daemon import Daemon, serve

    def started(url: str) -> None:
        console.print(f"[bold green]dashboard[/] {url}/   (daemon running on the emulators; Ctrl-C to stop)")

    serve(Daemon(ctx), "127.0.0.1", port, on_started=started, port_setting="--port")


def _print_records(console: Console, sf: SalesforceEmulator, ids: list[str]) -> None:
    """Whole values (an error quotes Dispatch's JSON answer): long ones wrap, the work order number is never
    cut; a terminal too narrow for the table gets one block per work order."""
    fields = [
        Field(
            name.replace("Dispatch_", "").replace("__c", ""),
            key=name == "WorkOrderNumber",
            head=n < 2,
            min_width=MESSAGE_WIDTH if name == "Dispatch_Error__c" else MIN_TEXT_WIDTH,
        )
        for n, name in enumerate(SHOWN)
    ]
    rows = [[_cell(sf.get("WorkOrder", wo).get(name)) for name in SHOWN] for wo in ids]
    print_records(console, fields, rows, title="CRM work orders")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value.strftime("%m-%d %H:%M") if hasattr(value, "strftime") else str(value)


LOG_FIELDS = (
    Field("level", head=True),
    Field("dir", head=True),
    Field("entity", head=True),
    Field("CRM id", key=True),
    Field("message", min_width=MESSAGE_WIDTH),
)


def _print_log(console: Console, ctx: SyncContext) -> None:
    with session_scope(ctx.engine) as session:
        rows = query_log(session, level="warning", limit=20)
    cells = [(row.level, row.direction, row.entity, row.crm_record_id, row.message) for row in rows]
    print_records(console, LOG_FIELDS, cells, title="sync log (warnings and errors)")

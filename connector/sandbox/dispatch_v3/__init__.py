"""The Dispatch v3 REST emulator: tokens, Work Order create, jobs, appointments, field control, look-ups.

Modules, imports pointing one way: store (records), tokens, listing <- lifecycle (status rules) <- control
(field actions) <- app (WSGI routes, sees the emulator through a Protocol) <- emulator (the class). The
look-ups (Match Orgs, Match Technicians, whitespace, block times): lookups (technicians, providers' service
areas, seeding) <- lookup_routes (their endpoints) <- app.
"""

from connector.sandbox.dispatch_v3.emulator import DispatchV3Emulator

__all__ = ["DispatchV3Emulator"]

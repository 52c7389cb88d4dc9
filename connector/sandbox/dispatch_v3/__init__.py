"""The Dispatch v3 REST emulator: tokens, Work Order create, jobs, appointments, field control.

Modules, imports pointing one way: store (records), tokens, listing <- lifecycle (status rules) <- control
(field actions) <- app (WSGI routes, sees the emulator through a Protocol) <- emulator (the class).
"""

from connector.sandbox.dispatch_v3.emulator import DispatchV3Emulator

__all__ = ["DispatchV3Emulator"]

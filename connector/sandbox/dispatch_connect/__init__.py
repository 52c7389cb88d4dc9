"""The Dispatch Connect emulator: signed `agent/in`, SQS-like `agent/out`, ack/err events, field control.

Modules, imports pointing one way: events, queue, store (state) <- control (technician actions), apply
(`agent/in` pipeline) <- app (WSGI routes, sees the emulator through a Protocol) <- emulator (the class).
"""

from connector.sandbox.dispatch_connect.emulator import DispatchEmulator

__all__ = ["DispatchEmulator"]

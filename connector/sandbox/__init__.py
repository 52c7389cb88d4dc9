"""Local emulators of Salesforce and Dispatch Connect, served over real sockets.

They are product, not test hacks: the demo, the tests and the benchmarks use them, and an integrator can
try a mapping offline. Where a vendor document is vague, the emulator and the client follow the same
documented reading (see docs/wire-formats.md).
"""

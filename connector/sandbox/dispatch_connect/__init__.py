"""The Dispatch Connect emulator: signed `agent/in`, SQS-like `agent/out`, ack/err events, field control."""

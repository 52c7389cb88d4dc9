"""Dispatch Connect: the first back end. Its wire words (`agent/in`, `agent/out`, receipts, procedure ids,
put-types, acks) live only in this package; the engine reaches it through `connector.registry`."""

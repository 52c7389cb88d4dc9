"""CRM -> field service: change detection, the outbox, sending to the routed destination, confirmation."""

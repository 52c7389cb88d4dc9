"""The Salesforce field types each value the connector writes fits (what `mapping check` compares describe
answers against), kept apart from the checker so the table reads on its own."""

from __future__ import annotations

DATETIME = frozenset({"datetime"})
TEXT = frozenset({"string", "textarea", "picklist", "combobox"})
LONG_TEXT = frozenset({"string", "textarea"})
NUMBER = frozenset({"double", "int", "percent"})
BOOLEAN = frozenset({"boolean"})
# What the connector writes into each write-back field (sync.outbound.confirmation, sync.inbound.events).
WRITE_BACK_TYPES: dict[str, tuple[frozenset[str], str]] = {
    "last_synced": (DATETIME, "a date and time"),
    "last_updated_from_dispatch": (DATETIME, "a date and time"),
    "appointment_start": (DATETIME, "a date and time"),
    "appointment_end": (DATETIME, "a date and time"),
    "status": (TEXT, "the job's status as text"),
    "status_reason": (TEXT, "the reason as text"),
    "error": (TEXT, "the error message as text"),
    "survey_rating": (NUMBER, "a number"),
    "survey_comments": (LONG_TEXT, "the comments as text"),
    "offer_status": (TEXT, "the offer's status as text"),
    "offer_status_reason": (TEXT, "the reason as text"),
}
REFERENCE = (frozenset({"reference"}), "a record id")
NOTE_ATTRIBUTE_TYPES = {
    "deleted": (BOOLEAN, "true or false"),
    "description": (TEXT, "text"),
    "name": (TEXT, "text"),
    "file_token": (TEXT, "text"),
}

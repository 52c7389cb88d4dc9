"""The mapping's CRM-side blocks: the fields the connector writes back, notes written as records, jobs born
in the field, the sync-log mirror. Split from connector.mapping (the publishing side); both share
`StrictModel`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """Every mapping block: unknown keys are errors (a typo is named, not ignored), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WriteBackSpec(StrictModel):
    """CRM field names the connector writes. None disables that write."""

    last_synced: str | None = "Dispatch_Last_Synced__c"
    error: str | None = "Dispatch_Error__c"
    last_updated_from_dispatch: str | None = "Last_Updated_from_Dispatch__c"
    status: str | None = "Dispatch_Status__c"
    status_reason: str | None = "Dispatch_Status_Reason__c"
    milestones: dict[str, str] = Field(default_factory=dict)
    appointment_start: str | None = None
    appointment_end: str | None = None
    survey_rating: str | None = None
    survey_comments: str | None = None
    notes: NotesSpec | None = None
    error_max_length: int = 255

    def all_fields(self) -> set[str]:
        names = {
            self.last_synced,
            self.error,
            self.last_updated_from_dispatch,
            self.status,
            self.status_reason,
            self.appointment_start,
            self.appointment_end,
            self.survey_rating,
            self.survey_comments,
            *self.milestones.values(),
        }
        return {name for name in names if name}


class NotesSpec(StrictModel):
    """Write Dispatch notes and attachments as CRM records (one per note), linked to the parent record."""

    object: str
    parent_field: str
    fields: dict[str, str] = Field(default_factory=dict)  # CRM field -> note attribute ("deleted" is a bool)


class InboundJobSpec(StrictModel):
    """Jobs born in Dispatch: create (or update) a CRM record from the job event's attributes."""

    enabled: bool = False
    fields: dict[str, str] = Field(default_factory=dict)  # CRM field -> job attribute path
    constants: dict[str, Any] = Field(default_factory=dict)


class LogObjectSpec(StrictModel):
    """Mirror sync-log rows into a CRM object shaped like the playbook's Dispatch_Log__c."""

    object: str
    levels: list[str] = Field(default_factory=lambda: ["error"])

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"debug", "info", "warning", "error"}
        if unknown:
            raise ValueError(f"unknown level(s) {sorted(unknown)}; use debug, info, warning, error")
        return value

    fields: dict[
        str, Literal["message", "crm_record_id", "external_id", "entity", "direction", "msg_id", "level"]
    ]


class InboxMessagesSpec(StrictModel):
    """Messages from Dispatch's inbox as CRM records (default: a Task on the customer's Contact and on the
    open work order of that customer and provider). `fields`: CRM field -> message attribute (`sender`,
    `message_content`, `subject`, `external_customer_id`, `external_organization_id`)."""

    object: str
    fields: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    record_field: str | None = None  # the lookup to the work order (Task.WhatId)
    contact_field: str | None = None  # the lookup to the contact (Task.WhoId)
    record_contact_field: str | None = (
        None  # the work order's field holding its contact (WorkOrder.ContactId)
    )

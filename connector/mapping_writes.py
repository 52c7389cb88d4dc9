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
    files: FilesSpec | None = None  # files from the field stored as Salesforce Files on the record
    billing_pdfs: bool = False  # estimates and invoices stored as PDF Files on the record (through `files`)
    # Offers (match) on this record: the offer's state and its milestones (complete, canceled).
    offer_status: str | None = None
    offer_status_reason: str | None = None
    offer_milestones: dict[str, str] = Field(default_factory=dict)
    # Records the field creates for this record's job: estimates and invoices, payments, custom forms.
    billing_documents: FieldRecordSpec | None = None
    payments: PaymentsSpec | None = None
    forms: FormsSpec | None = None
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
            self.offer_status,
            self.offer_status_reason,
            *self.milestones.values(),
            *self.offer_milestones.values(),
        }
        return {name for name in names if name}


class NotesSpec(StrictModel):
    """Write Dispatch notes and attachments as CRM records (one per note), linked to the parent record."""

    object: str
    parent_field: str
    fields: dict[str, str] = Field(default_factory=dict)  # CRM field -> note attribute ("deleted" is a bool)


class FieldRecordSpec(StrictModel):
    """Records born in the field (an estimate, an invoice, a payment, a submitted form) as CRM records linked
    to the job's record by `parent_field`. `fields`: CRM field -> event attribute path (`total.value`,
    `job.external_id`); a list or object value (an estimate's `lines`) is written as JSON text. A record is
    created the first time, then updated in place; an event older than the one written is ignored."""

    object: str
    parent_field: str
    fields: dict[str, str] = Field(default_factory=dict)


class PaymentsSpec(FieldRecordSpec):
    """Payments; `document_field` is the lookup to the invoice's (or estimate's) record, set when the
    document's CRM record exists when the payment arrives."""

    document_field: str | None = None


class FormsSpec(FieldRecordSpec):
    """Submitted custom forms: answers named in `fields` (`form_data.mileage`) land in their field, and
    every answer (of any form, named or not) lands in `answers_field` as JSON text."""

    answers_field: str | None = None


class CalendarEventsSpec(StrictModel):
    """Calendar events (lunch, load truck) as CRM records, by default Salesforce `Event`. `fields`: CRM field
    -> attribute (`title`, `started_at`, `completed_at`, `description`, `external_id`, `uuid`). `who_field`
    gets the CRM record the connector published as `who_attribute`'s value (the technician's Contact or
    User), left empty when none is known."""

    object: str = "Event"
    fields: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    who_field: str | None = None
    who_attribute: str = "external_user_id"


class FilesSpec(StrictModel):
    """Files from the field (the file token of a note or attachment) stored once as Salesforce Files
    (ContentVersion, first published on the record). `format` is the back end's rendering (Dispatch:
    original, square_250, ...); a file over `max_bytes` is not stored (a warning, tried again later)."""

    format: str = "original"
    max_bytes: int = Field(25 * 1024 * 1024, gt=0)


class InboundJobSpec(StrictModel):
    """Jobs born in Dispatch: create (or update) a CRM record from the job event's attributes."""

    enabled: bool = False
    fields: dict[str, str] = Field(default_factory=dict)  # CRM field -> job attribute path
    constants: dict[str, Any] = Field(default_factory=dict)
    # The job's customer as a CRM contact, matched or created after the record is (sync.inbound.customers).
    contact: InboundContactSpec | None = None


class InboundContactSpec(StrictModel):
    """The customer of a job born in the field as a CRM Contact: an existing one with the same email, else the
    same phone, else a new one from `fields` (Contact field -> job attribute path, `customer.email`); its id
    goes into the new record's `contact_field`. `match_email`/`match_phone` name the Contact fields compared
    (None: not matched on), `email`/`phone` the job attributes compared with them."""

    object: str = "Contact"
    contact_field: str = "ContactId"
    fields: dict[str, str] = Field(default_factory=dict)
    match_email: str | None = "Email"
    match_phone: str | None = "Phone"
    email: str = "customer.email"
    phone: str = "customer.phone_number"


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


class LookupSpec(StrictModel):
    """Where the look-ups (`match orgs|technicians`, `availability slots|schedule` with `--work-order`) read
    a record's place and needs, and the field `match orgs --assign` writes. Values are CRM field names (a
    related field as `Account.Name`); every key but `postal_code` may be left out (None: not read)."""

    postal_code: str
    street: str | None = None
    city: str | None = None
    state: str | None = None
    trades: str | None = None  # a multi-select picklist (`;`) or a list separated by `,` or `|`
    duration_minutes: str | None = None  # a number of minutes
    timezone: str | None = None  # an IANA name, e.g. America/Chicago
    provider_field: str | None = None  # a lookup to Account: set to the best match's Account by --assign

    @field_validator("postal_code", "street", "city", "state", "trades", "duration_minutes", "timezone")
    @classmethod
    def _field_path(cls, value: str | None) -> str | None:
        if value is not None and not all(part.isidentifier() for part in value.split(".")):
            raise ValueError(
                f"{value!r} is not a CRM field name (letters, digits, _; related fields with '.')"
            )
        return value

    @field_validator("provider_field")
    @classmethod
    def _own_field(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
            raise ValueError(
                f"{value!r} must be a field of the object itself (it is written), e.g. Provider__c"
            )
        return value

    def crm_fields(self) -> list[str]:
        """The fields read from the record (the provider field too: the current value is shown)."""
        names = (self.postal_code, self.street, self.city, self.state, self.trades, self.duration_minutes)
        return [n for n in (*names, self.timezone, self.provider_field) if n]

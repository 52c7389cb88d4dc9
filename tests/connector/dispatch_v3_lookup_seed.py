"""The playbook's availability samples ("Use Cases > From Dispatch > Availability": Whitespace, Block Times,
Match Orgs; ../shared/seeds/002_35a8d7f01e60c92a.readable.md), copied verbatim, and the emulator schedule
that reproduces them: two technicians working 08:00-17:00 New York time (12:00-21:00 UTC in October) on
weekdays, the first booked 13:00-17:30 UTC (an event: no data), the second 16:00-20:00 UTC (an appointment).
"""

from __future__ import annotations

from typing import Any

from connector.sandbox.dispatch_v3 import DispatchV3Emulator

TECH_A, TECH_B = "a013900001Zc9FkAAJ", "a013900001aPXO1AAO"
# The sample requests' window and duration (Whitespace and Block Times use the same query).
START, END, DURATION = "2022-10-24T04:00:00Z", "2022-10-25T03:59:59Z", 60
APPOINTMENT_DATA = {
    "job_id": 700040,
    "customer_id": 281712,
    "source_id": 54,
    "customer_full_name": "Ron Sher",
    "job_title": "06_29_22_18",
}

WHITESPACE_RESPONSE: dict[str, Any] = {
    "slots": [
        {
            "entity_type": "user",
            "entity_id": 3231,
            "external_id": "a013900001Zc9FkAAJ",
            "start_time": "2022-10-24T12:00:00Z",
            "end_time": "2022-10-24T13:00:00Z",
        },
        {
            "entity_type": "user",
            "entity_id": 3231,
            "external_id": "a013900001Zc9FkAAJ",
            "start_time": "2022-10-24T17:30:00Z",
            "end_time": "2022-10-24T21:00:00Z",
        },
        {
            "entity_type": "user",
            "entity_id": 5298,
            "external_id": "a013900001aPXO1AAO",
            "start_time": "2022-10-24T12:00:00Z",
            "end_time": "2022-10-24T16:00:00Z",
        },
        {
            "entity_type": "user",
            "entity_id": 5298,
            "external_id": "a013900001aPXO1AAO",
            "start_time": "2022-10-24T20:00:00Z",
            "end_time": "2022-10-24T21:00:00Z",
        },
    ]
}

BLOCK_TIME_RESPONSE: dict[str, Any] = {
    "days": [
        {
            "user_id": 3231,
            "external_id": "a013900001Zc9FkAAJ",
            "day_start": "2022-10-24T12:00:00Z",
            "day_end": "2022-10-24T21:00:00Z",
            "blocks": [{"start": "2022-10-24T13:00:00Z", "end": "2022-10-24T17:30:00Z"}],
        },
        {
            "user_id": 3231,
            "external_id": "a013900001Zc9FkAAJ",
            "day_start": "2022-10-25T12:00:00Z",
            "day_end": "2022-10-25T21:00:00Z",
            "blocks": [],
        },
        {
            "user_id": 5298,
            "external_id": "a013900001aPXO1AAO",
            "day_start": "2022-10-24T12:00:00Z",
            "day_end": "2022-10-24T21:00:00Z",
            "blocks": [
                {
                    "start": "2022-10-24T16:00:00Z",
                    "end": "2022-10-24T20:00:00Z",
                    "data": {
                        "job_id": 700040,
                        "customer_id": 281712,
                        "source_id": 54,
                        "customer_full_name": "Ron Sher",
                        "job_title": "06_29_22_18",
                    },
                }
            ],
        },
        {
            "user_id": 5298,
            "external_id": "a013900001aPXO1AAO",
            "day_start": "2022-10-25T12:00:00Z",
            "day_end": "2022-10-25T21:00:00Z",
            "blocks": [],
        },
    ]
}

MATCH_ORGS_RESPONSE: dict[str, Any] = {
    "account_organizations": [{"organization_id": 200383, "external_ids": ["org_external_id"]}]
}


def seed_playbook_schedule(v3: DispatchV3Emulator, postal_code: str = "02446") -> None:
    """The two technicians of the whitespace sample, with the sample's Dispatch ids."""
    v3.add_technician(
        TECH_A,
        "Tech A",
        postal_codes=[postal_code],
        timezone="America/New_York",
        id=3231,
        booked=[{"start": "2022-10-24T13:00:00Z", "end": "2022-10-24T17:30:00Z"}],
    )
    v3.add_technician(TECH_B, "Tech B", postal_codes=[postal_code], timezone="America/New_York", id=5298)
    v3.book_technician(TECH_B, "2022-10-24T16:00:00Z", "2022-10-24T20:00:00Z", APPOINTMENT_DATA)

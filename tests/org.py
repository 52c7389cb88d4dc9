"""The demo org every end-to-end suite seeds: one flagged provider account (Dispatch_Me__c)."""

from __future__ import annotations

from typing import Any

PROVIDER_ACCOUNT: dict[str, Any] = {
    "Name": "Spark Electric",
    "Phone": "+15550111",
    "Dispatch_Me__c": True,
    "BillingStreet": "9 Volt Rd",
    "BillingCity": "Springfield",
    "BillingState": "IL",
    "BillingPostalCode": "62702",
}

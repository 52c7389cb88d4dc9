"""The Salesforce REST emulator: HTTPS with a throwaway CA, SOQL subset, CRUD, Collections, faults."""

from connector.sandbox.salesforce.emulator import SalesforceEmulator

__all__ = ["SalesforceEmulator"]

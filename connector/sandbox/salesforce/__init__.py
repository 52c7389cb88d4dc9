"""The Salesforce REST emulator: HTTPS with a throwaway CA, SOQL subset, CRUD, Collections, faults."""

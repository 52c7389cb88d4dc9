"""Dispatch v3 REST: work orders over OAuth2 and a status reconciler; registered as `dispatch_v3`."""

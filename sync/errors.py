"""One exception hierarchy for the engine.

Each error carries a message a support person can act on; `exit_code` lets the CLI map it to a process status
without a table of special cases (2 = fix the configuration, 1 = anything else).
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error raised by `sync`."""

    exit_code = 1
    retriable = False


class SettingsError(SyncError):
    """A setting is missing or invalid; the message names the setting and what is wrong."""

    exit_code = 2


class StoreNotReady(SyncError):
    """The database is missing tables or is at another schema revision than this program."""

    exit_code = 2


class MappingError(SyncError):
    """The mapping file is unreadable or invalid; the message names the file, the key and the problem."""

    exit_code = 2

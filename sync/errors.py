"""One exception hierarchy for the engine, and the process exit codes the CLI maps errors to.

Each error carries a message a support person can act on; `exit_code` lets the CLI map it to a process status
without a table of special cases. The codes (documented in docs/cli.md):

    0  ok
    1  runtime failure: a service stayed down after retries, a send was refused, a job failed
    2  usage or settings: a bad setting or mapping file, a store that needs `dispatch-connector db upgrade`
    3  needs attention: the command ran, but what it found needs a person (an unknown record, ...)

Mapping files are read by `connector.mapping`, whose `MappingFileError` (a
`connector.errors.ConfigurationError`) already names the file and maps to 2; the engine has no mapping error
of its own.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ATTENTION = 3


class SyncError(Exception):
    """Root of every error raised by `sync`."""

    exit_code = EXIT_FAILURE
    retriable = False


class SettingsError(SyncError):
    """A setting is missing or invalid; the message names the setting and what is wrong."""

    exit_code = EXIT_USAGE


class UsageError(SyncError):
    """A command was given arguments it cannot use; the message says which and how to write them."""

    exit_code = EXIT_USAGE


class StoreNotReady(SyncError):
    """The database is missing tables or is at another schema revision than this program."""

    exit_code = EXIT_USAGE


class NeedsAttention(SyncError):
    """The command did what it could, but its answer needs a person (e.g. the record id is not known)."""

    exit_code = EXIT_ATTENTION


class MappingMismatch(SyncError):
    """The mapping names fields the org lacks, cannot write, or types the written values do not fit
    (sync.service.mapping_check); the message lists every problem, one per line."""

    exit_code = EXIT_USAGE

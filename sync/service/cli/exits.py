"""The one place that turns an exception escaping a command into the line the user reads and an exit code.

Commands do not catch expected errors: each package raises from its own root (`sync.errors.SyncError`,
`connector.errors.ConnectorError`, `statemachines.errors.StateMachineError`) with a message a support person
can act on, and `exit_for` decides the code from the root. A store that cannot be opened (a bad
DATABASE_URL, a missing folder, a read-only file) fails inside SQLAlchemy, before any engine code could say
which setting is wrong; those errors are recognised here and described by the setting to fix, never by SQL
text. Anything else is a bug: one line saying so, and the traceback only when DISPATCH_CONNECTOR_DEBUG is set.
"""

from __future__ import annotations

import io
import os

import click
from alembic.util import CommandError as MigrationCommandError
from sqlalchemy import exc as sa_exc

from connector.errors import ConfigurationError, ConnectorError
from statemachines.errors import StateMachineError
from sync.errors import EXIT_ATTENTION, EXIT_FAILURE, EXIT_USAGE, SyncError

DEBUG_ENV = "DISPATCH_CONNECTOR_DEBUG"
EXIT_ABORTED = 130  # what a shell reports for Ctrl-C
URL_EXAMPLES = "e.g. sqlite:///dispatch_connector.db or postgresql+psycopg://user@host/db"
UPGRADE_HINT = "run `dispatch-connector db upgrade`"

# Driver messages that mean the store is misconfigured (fix a setting or a folder), not busy or down.
_UNUSABLE_STORE = (
    ("unable to open database file", "check that its folder exists and is writable"),
    ("readonly database", "the file and its folder must be writable, and the URL must not say mode=ro"),
    ("file is not a database", "point DATABASE_URL at a connector database"),
    ("password authentication failed", "check the user and password in DATABASE_URL"),
    ("could not translate host name", "check the host in DATABASE_URL"),
    ("does not exist", "check the database and user names in DATABASE_URL"),
)
_MISSING_TABLES = ("no such table", "undefinedtable")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def exit_for(exc: BaseException) -> tuple[str, int]:
    """The text to print on stderr for `exc` and the process exit code (see the table in docs/cli.md)."""
    if isinstance(exc, click.exceptions.Abort):
        return "aborted", EXIT_ABORTED
    if isinstance(exc, click.ClickException):
        shown = io.StringIO()
        exc.show(file=shown)  # click's own rendering: usage line, hint and message
        return shown.getvalue().rstrip("\n"), exc.exit_code
    if isinstance(exc, SyncError):
        prefix = "attention" if exc.exit_code == EXIT_ATTENTION else "error"
        return f"{prefix}: {exc}", exc.exit_code
    if isinstance(exc, ConfigurationError):
        return f"error: {exc}", EXIT_USAGE
    if isinstance(exc, ConnectorError):
        hint = (
            "temporary: running it again later may succeed"
            if exc.retriable
            else "retrying will not help until the cause is fixed"
        )
        return f"error: {exc} ({hint})", EXIT_FAILURE
    if isinstance(exc, StateMachineError):
        return f"error: {exc}", EXIT_FAILURE
    if isinstance(
        exc, MigrationCommandError
    ):  # `db upgrade/downgrade` given a revision alembic does not know
        return f"error: {exc}", EXIT_USAGE
    database = _database_problem(exc)
    if database is not None:
        return database
    return f"internal error: {_describe(exc)} (run with {DEBUG_ENV}=1 to see the traceback)", EXIT_FAILURE


def internal_error_line(exc: BaseException) -> str:
    """What the debug run prints above the traceback."""
    return f"internal error: {_describe(exc)}"


def _database_problem(exc: BaseException) -> tuple[str, int] | None:
    if isinstance(exc, sa_exc.NoSuchModuleError):
        # "Can't load plugin: sqlalchemy.dialects:foo" names the URL's scheme only, never its password
        return (
            f"error: DATABASE_URL names a database this program has no driver for ({exc}); {URL_EXAMPLES}",
            EXIT_USAGE,
        )
    if _raised_in(exc, "sqlalchemy.engine.url"):
        # ArgumentError, or a ValueError for a port that is not a number: the message may quote the URL,
        # password included, so name the setting, not what it holds
        return f"error: DATABASE_URL cannot be read as a database URL; {URL_EXAMPLES}", EXIT_USAGE
    if isinstance(exc, ImportError) and _passed_through(exc, "sqlalchemy.engine.create"):
        return f"error: DATABASE_URL names a driver that is not installed ({exc}); {URL_EXAMPLES}", EXIT_USAGE
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    driver_error = exc.orig if exc.orig is not None else exc
    reason = _first_line(driver_error)
    lowered = f"{type(driver_error).__name__} {reason}".lower()
    if any(sign in lowered for sign in _MISSING_TABLES):
        return (
            f"error: the database in DATABASE_URL lacks connector tables ({reason}); {UPGRADE_HINT}",
            EXIT_USAGE,
        )
    # ProgrammingError and IntegrityError come from our statements (bugs), not from the store's setup
    connecting = isinstance(exc, sa_exc.OperationalError) or type(exc) is sa_exc.DatabaseError
    for sign, fix in _UNUSABLE_STORE:
        if connecting and sign in lowered:
            return f"error: the database in DATABASE_URL cannot be used ({reason}); {fix}", EXIT_USAGE
    if isinstance(exc, sa_exc.OperationalError):
        return (
            f"error: the database in DATABASE_URL failed ({reason}); "
            "temporary: running it again later may succeed",
            EXIT_FAILURE,
        )
    return None


def _frames(exc: BaseException) -> list[str]:
    """The module of each frame `exc` passed through, outermost first."""
    modules = []
    tb = exc.__traceback__
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__")))
        tb = tb.tb_next
    return modules


def _raised_in(exc: BaseException, module: str) -> bool:
    return _frames(exc)[-1:] == [module]


def _passed_through(exc: BaseException, module: str) -> bool:
    return module in _frames(exc)


def _first_line(exc: BaseException) -> str:
    """An exception's first line. For a driver's error that is its own message: SQLAlchemy's str() of the
    wrapper appends the statement and its parameters, and a PostgreSQL error quotes the statement below."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _describe(exc: BaseException) -> str:
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        return f"{type(exc).__name__}: {_first_line(exc.orig)}"
    return f"{type(exc).__name__}: {_first_line(exc)}" if str(exc).strip() else type(exc).__name__

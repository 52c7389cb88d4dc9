"""SQLite WAL checkpoints off the writers' path.

In WAL mode SQLite copies the log back into the database file (a checkpoint, with an fsync) inside the
commit that pushes the log past `wal_autocheckpoint` pages. A publish cycle of 1,000 changed records
writes more than that, so nearly every cycle's commit paid for a checkpoint: measured, a cycle's commits
took ~50 ms with it and ~15 ms without. SQLite's own advice for latency-sensitive writers is to checkpoint
from a separate thread (https://sqlite.org/wal.html#application_initiated_checkpoints); this module does
that, and keeps a higher automatic threshold only as a backstop should the thread fall behind. Durability
is unchanged: commits still go to the log with `synchronous=NORMAL`, and a checkpoint never loses a
committed frame.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from urllib.parse import quote

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 0.5
AUTOCHECKPOINT_PAGES = 10_000  # about 40 MB of log: only reached when the thread cannot keep up
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # the log file is cut back to this after a checkpoint
_RUNNING: weakref.WeakKeyDictionary[Engine, WalCheckpointer] = weakref.WeakKeyDictionary()


class WalCheckpointer:
    """A daemon thread running `PRAGMA wal_checkpoint(PASSIVE)` every `interval_s` on its own connection.

    PASSIVE never waits for readers or writers: it copies what it can and leaves the rest to its next
    turn, so it cannot stall the engine. A failed turn (the file is busy with another process's
    checkpoint, the disk is full) is logged and retried at the next one."""

    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path, self.interval_s = path, interval_s
        self.turns = 0
        self.last_result: tuple[int, int, int] | None = None  # (busy, log frames, frames checkpointed)
        self.turned = threading.Event()  # set after every turn, failed or not: lets a test wait for one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int, int]:
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.turns += 1
        self.last_result = (int(row[0]), int(row[1]), int(row[2]))
        return self.last_result

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    connection = connection or self._connect()
                    if connection is not None:
                        self.checkpoint(connection)
                except sqlite3.Error as exc:
                    log.warning("SQLite WAL checkpoint failed, retrying in %.1f s: %s", self.interval_s, exc)
                self.turned.set()
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        """None until the engine has created the file: the checkpointer never creates a database itself."""
        if not os.path.exists(self.path):
            return None
        uri = f"file:{quote(self.path)}?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=1.0, check_same_thread=False)


def attach_checkpointer(
    engine: Engine, path: str, interval_s: float = CHECKPOINT_INTERVAL_S
) -> WalCheckpointer:
    """Start a checkpointer for this engine's database file; it stops when the engine is disposed or
    garbage-collected (a test's throwaway engine does not leave a thread behind)."""
    checkpointer = _RUNNING[engine] = WalCheckpointer(path, interval_s).start()
    event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())
    weakref.finalize(engine, checkpointer.stop)
    return checkpointer


def connection_pragmas() -> list[str]:
    """The pragmas every engine connection gets so the checkpoint thread, not commits, moves the log."""
    return [
        f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}",
        f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}",
    ]


def checkpointer_of(engine: Engine) -> WalCheckpointer | None:
    return _RUNNING.get(engine)

"""Run-now requests for the daemon's jobs: a field event should not wait for the next interval.

Each job of a running daemon has one `JobRunner`, a thread that runs the job whenever a run is due. The
scheduler's interval tick (the idle cadence, unchanged) and a wake-up from another job both only *ask* for
a run; the runner does the running. So:

- a job never runs twice at once (one thread per job);
- wake-ups collapse: any number of requests made before a run starts are served by that one run;
- a request made while the job runs gets exactly one more run right after it (the work it announces may
  have come after the running one looked);
- a delayed request (`wake(name, delay_s)`) keeps the earliest time asked for.

Job code asks through `wake(name)`, which reaches the daemon whose job is running in this thread (a context
variable the daemon sets around each run); outside a running daemon (`run --once`, the CLI, tests calling
the engine directly) it does nothing. Wake-ups stay inside one process: with the roles in separate processes
(ROLES), each process keeps its intervals, and the other process notices new work on its next tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Waker = Callable[[str, float], None]
_current: ContextVar[Waker | None] = ContextVar("dispatch_connector_waker", default=None)


def wake(name: str, delay_s: float = 0.0) -> None:
    """Ask the running daemon for a run of job `name` in `delay_s` seconds; a no-op outside one."""
    waker = _current.get()
    if waker is not None:
        waker(name, delay_s)


def waking() -> bool:
    """True inside a job of a running daemon: its wake-ups will be heard."""
    return _current.get() is not None


@contextmanager
def waking_through(waker: Waker | None) -> Iterator[None]:
    """Route `wake()` calls made in this thread (while the block runs) to `waker` (None: nowhere)."""
    token = _current.set(waker)
    try:
        yield
    finally:
        _current.reset(token)


class JobRunner:
    """One job's thread: runs `run` when a run is due, one run at a time, until stopped.

    `clock` is monotonic seconds (injectable for tests); a test that moves a fake clock calls `kick()` so the
    runner looks at its due time again."""

    def __init__(self, name: str, run: Callable[[], None], *, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._run = run
        self._clock = clock
        self._cond = threading.Condition()
        self._due: float | None = None  # earliest time a run was asked for; None: nothing asked
        self._running = False
        self._stopped = False
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, name=f"job-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self, delay_s: float = 0.0) -> None:
        at = self._clock() + max(0.0, delay_s)
        with self._cond:
            if self._due is None or at < self._due:
                self._due = at
                self._cond.notify_all()

    def kick(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        with self._cond:
            return self._running

    def due_in(self) -> float | None:
        """Seconds until the requested run (0 when overdue); None when none is asked for."""
        with self._cond:
            return None if self._due is None else max(0.0, self._due - self._clock())

    def stop(self, timeout: float | None = None) -> None:
        """No new run starts; waits for the run in hand to finish (its current unit of work)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _next(self) -> bool:
        """Wait until a run is due (True) or the runner is stopped (False)."""
        with self._cond:
            while not self._stopped:
                if self._due is not None and self._due <= self._clock():
                    self._due, self._running = None, True
                    return True
                wait = None if self._due is None else max(0.001, self._due - self._clock())
                self._cond.wait(wait)
            return False

    def _loop(self) -> None:
        while self._next():
            try:
                self._run()
            finally:
                with self._cond:
                    self._running = False
                    self.runs += 1
                    self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """For tests: True once no run is in hand and none is due now (or the runner is stopped)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running or (self._due is not None and self._due <= self._clock()):
                if self._stopped and not self._running:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

"""The Dispatch v3 REST emulator: OAuth client-credentials tokens, Work Order create, jobs and appointments.

Built to docs/wire-formats.md, "Dispatch v3 REST (work orders)". Time comes from an injectable clock (token
expiry, `created_at`/`updated_at`), so tests move time by hand; faults and `latency_s` are real waits. This
module holds the lifecycle, the counters, inspection and configuration; the field actions are in `control.py`
(mixed in), the rules of status changes in `lifecycle.py` and the routes in `app.py`.
"""

from __future__ import annotations

import copy
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, overload

from connector.sandbox.dispatch_v3.app import ENDPOINTS, DispatchV3App
from connector.sandbox.dispatch_v3.control import FieldControl
from connector.sandbox.dispatch_v3.lookups import LookupBook, LookupControl
from connector.sandbox.dispatch_v3.store import Record, V3Store
from connector.sandbox.dispatch_v3.tokens import TokenBook
from connector.sandbox.server import EmulatorServer, Faults

__all__ = ["DispatchV3Emulator", "serve"]


class DispatchV3Emulator(FieldControl, LookupControl):
    """A local Dispatch v3 account on plain HTTP (TLS when given a context). Use as a context manager or
    `start()`/`stop()`."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.time,
        token_ttl_s: float = 10800,
        latency_s: float = 0.0,
        token_path: str = "/oauth/token",
        workorder_path: str = "/v3/workorder",
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.clock = clock
        self.latency_s = latency_s
        self.token_path = "/" + token_path.strip("/")
        self.workorder_path = "/" + workorder_path.strip("/")
        self.faults = faults or Faults()
        self.store = V3Store(clock)
        self.lookups = LookupBook(self.store)
        self.tokens = TokenBook(client_id, client_secret, clock, token_ttl_s)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._server = EmulatorServer(DispatchV3App(self), host=host, port=port, ssl_context=ssl_context)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @overload
    def start(self) -> str: ...

    @overload
    def start(self, job: int | str) -> Record: ...

    def start(self, job: int | str | None = None) -> str | Record:
        """Without a job: start the server, return its base URL. With one: the field action (work starts on
        the job's booked appointment; appointment and job `started`), as `POST /control/start` does."""
        if job is None:
            return self._server.start()
        return self.start_work(job)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> DispatchV3Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- accounting and inspection ---------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[name] += n

    @property
    def counts(self) -> dict[str, int]:
        """Requests per endpoint ("token", "workorder", "jobs.get", "jobs.patch", "jobs.list",
        "appointments.post", "appointments.get", "appointments.patch", "appointments.list", and the look-ups'
        "search.oms", "search.contractors", "availability.slots", "availability.schedule"), counted before
        faults and authentication; also "unauthorized" (401s on a bearer token) and "control"."""
        with self._counts_lock:
            return dict(self._counts)

    def jobs(self) -> list[Record]:
        """Every job as `GET /v3/jobs/:id` shows it, oldest first."""
        return self.store.snapshot(self.store.jobs)

    def job(self, ref: int | str) -> Record:
        """One job by Dispatch id or external id (the newest holding it); KeyError when absent."""
        with self.store.lock:
            return copy.deepcopy(self.store.job(ref))

    def appointments(self, job: int | str | None = None) -> list[Record]:
        """Every appointment (or one job's), oldest first."""
        with self.store.lock:
            if job is None:
                return self.store.snapshot(self.store.appointments)
            return copy.deepcopy(self.store.job_appointments(self.store.job(job)["id"]))

    def customers(self) -> list[Record]:
        return self.store.snapshot(self.store.customers)

    def service_providers(self) -> list[Record]:
        return self.store.snapshot(self.store.providers)

    @property
    def work_orders(self) -> list[Record]:
        """The accepted Work Order documents as validation normalized them, oldest first."""
        with self.store.lock:
            return copy.deepcopy([received["document"] for received in self.store.work_orders])

    def state(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "faults": {name: vars(plan) for name, plan in self.faults.plans.items()},
            "token_ttl_s": self.tokens.ttl_s,
            "latency_s": self.latency_s,
        }

    # -- configuration ---------------------------------------------------------------------------

    def set_faults(self, endpoint: str = "*", clear: bool = False, **plan: Any) -> dict[str, Any]:
        """Plan faults for an endpoint name ('*' for all): latency_s, error_rate, error_status, drop_rate,
        throttle_rate (429 with Retry-After: retry_after_s); `clear=True` removes every plan."""
        if clear:
            self.faults.clear()
        elif endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"no endpoint {endpoint!r}; use '*' or one of {', '.join(ENDPOINTS)}")
        else:
            self.faults.set(endpoint, **plan)
        return self.state()

    def set_token_ttl(self, seconds: float) -> dict[str, Any]:
        """The lifetime of tokens issued from now on, in seconds of the emulator's clock."""
        self.tokens.set_ttl(seconds)
        return self.state()

    def expire_tokens(self) -> dict[str, Any]:
        """Expire every token issued so far: the client's next call meets a 401."""
        return {"expired": self.tokens.expire_all()}


def serve(
    host: str = "127.0.0.1",
    port: int = 8766,
    *,
    client_id: str,
    client_secret: str,
    **kwargs: Any,
) -> None:
    """Run the emulator in the foreground until interrupted."""
    emulator = DispatchV3Emulator(client_id, client_secret, host=host, port=port, **kwargs)
    print(f"Dispatch v3 emulator on {emulator.base_url} (client {client_id})", flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()

"""Single-instance locks (one poller, one publisher) that hold across processes.

PostgreSQL: a session advisory lock on a dedicated connection, released when the holder's connection
dies, so another machine takes over at once. SQLite: a lease row with an expiry in the shared database
file; a holder that dies stops renewing and the lease lapses after `ttl`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, text
from sqlmodel import Session, col, delete, select

from sync.errors import SyncError
from sync.store.dbtypes import utcnow
from sync.store.models import Lease

HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LockHeld(SyncError):
    """Another instance holds this role; this run does nothing (not an error worth retrying at once)."""

    retriable = True


def _advisory_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def single_instance(engine: Engine, name: str, *, ttl: timedelta = timedelta(minutes=5)) -> Iterator[None]:
    """Run the body only if no other process holds `name`; raise LockHeld otherwise."""
    if engine.dialect.name == "postgresql":
        with _advisory(engine, name):
            yield
    else:
        with _lease(engine, name, ttl):
            yield


@contextmanager
def _advisory(engine: Engine, name: str) -> Iterator[None]:
    key = _advisory_key(name)
    with engine.connect() as connection:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        connection.commit()
        if not got:
            raise LockHeld(f"another instance is running {name}")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()


@contextmanager
def _lease(engine: Engine, name: str, ttl: timedelta) -> Iterator[None]:
    if not take_lease(engine, name, ttl):
        raise LockHeld(f"another instance is running {name}")
    try:
        yield
    finally:
        with Session(engine) as session:
            session.exec(delete(Lease).where(col(Lease.name) == name, col(Lease.holder) == HOLDER))  # type: ignore[call-overload]
            session.commit()


def holder_is_dead(holder: str) -> bool:
    """A holder on this machine whose process is gone (kill -9 leaves its lease behind)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only the lease's expiry can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def take_lease(engine: Engine, name: str, ttl: timedelta, holder: str = HOLDER) -> bool:
    now = utcnow()
    with Session(engine) as session:
        lease = session.exec(select(Lease).where(col(Lease.name) == name)).first()
        live = lease is not None and lease.expires_at is not None and lease.expires_at > now
        if lease and lease.holder != holder and live and not holder_is_dead(lease.holder):
            session.rollback()
            return False
        if lease is None:
            lease = Lease(name=name, holder=holder, expires_at=now + ttl)
        lease.holder, lease.expires_at = holder, now + ttl
        session.add(lease)
        session.commit()
        return True

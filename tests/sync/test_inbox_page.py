"""sync.inbound.inbox.store_page: a page stored set-based has store_delivery's effects, message by message,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from connector.ports import Delivery
from connector.text import storable
from sync.inbound.inbox import store_delivery, store_page
from sync.store.db import make_engine, session_scope, upgrade
from sync.store.models import InboxMessage, SyncLog


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated store, once on SQLite and once on PostgreSQL (the page's INSERT is Core, typed by hand)."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def delivery(ident: str, payload: Any = None, **kwargs: Any) -> Delivery:
    return Delivery(
        "dispatch_connect", ident, "job", payload or {"id": ident}, entity_key=f"job:{ident}", **kwargs
    )


def rows(engine: Engine) -> dict[str, InboxMessage]:
    with session_scope(engine) as session:
        return {row.message_id: row for row in session.exec(select(InboxMessage))}


def test_new_messages_are_stored_in_page_order(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert store_page(session, [delivery("b"), delivery("a"), delivery("c")]) == [True, True, True]
    stored = rows(engine)
    assert sorted(stored, key=lambda i: (stored[i].received_at, i)) == ["b", "a", "c"]
    row = stored["a"]
    assert (row.system, row.type, row.entity_key, row.payload) == (
        "dispatch_connect",
        "job",
        "job:a",
        {"id": "a"},
    )
    assert (row.status, row.attempts, row.deliveries, row.last_error) == ("new", 0, 1, None)


def test_a_redelivery_is_counted_not_stored_again(engine: Engine) -> None:
    with session_scope(engine) as session:
        store_delivery(session, delivery("a", {"first": True}))
    with session_scope(engine) as session:
        assert store_page(session, [delivery("a", {"second": True}), delivery("b")]) == [False, True]
    stored = rows(engine)
    assert (stored["a"].deliveries, stored["a"].payload) == (2, {"first": True})
    assert stored["b"].deliveries == 1


def test_an_id_twice_in_one_page_is_one_row_delivered_twice(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert store_page(session, [delivery("a"), delivery("a"), delivery("b")]) == [True, False, True]
    stored = rows(engine)
    assert (len(stored), stored["a"].deliveries) == (2, 2)


def test_text_the_databases_refuse_is_escaped_as_storable_does(engine: Engine) -> None:
    nasty = {"note": "lone \ud800 and nul \x00", "list": ["\udfff"], "\ud801key": 1}
    clean = {"note": "caf\u00e9 \u2713", "n": 2**40, "nested": {"ok": [1, None, True]}}
    with session_scope(engine) as session:
        store_page(
            session, [delivery("nasty", nasty), delivery("clean", clean), delivery("big", {"n": 2**70})]
        )
    stored = rows(engine)
    assert stored["nasty"].payload == storable(nasty)
    assert stored["nasty"].payload["note"] == "lone \\ud800 and nul \\x00"
    assert stored["clean"].payload == clean
    assert stored["big"].payload == {"n": 2**70}


def test_an_unreadable_delivery_is_stored_dead_and_logged_once(engine: Engine) -> None:
    bad = delivery("u", {"raw": 1}, problem="entry has no 'Message'")
    with session_scope(engine) as session:
        assert store_page(session, [bad, delivery("ok")]) == [True, True]
    with session_scope(engine) as session:
        assert store_page(session, [bad]) == [False]
    stored = rows(engine)
    assert (stored["u"].status, stored["u"].last_error) == ("dead", "unreadable: entry has no 'Message'")
    assert stored["ok"].status == "new"
    with session_scope(engine) as session:
        logged = session.exec(select(SyncLog.message).where(col(SyncLog.msg_id) == "u")).all()
    assert len(logged) == 1
    assert logged[0].startswith("message u from dispatch_connect cannot be read (entry has no 'Message')")

"""Acks and errs of records the outbox keyed by another identity than the external id Dispatch echoes.

A user's tags share the user's id as `external_id` (the playbook's sample); the outbox keys each by its own
identity (user and tag). Dispatch applies a batch in order and acks each record naming the id it carries,
so the n-th ack for that id confirms the n-th such record of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from connector.mapping import load_mapping
from connector.ports import RecordResult
from sync.outbound.confirmation import apply_result
from sync.store.db import make_engine, upgrade
from sync.store.dbtypes import utcnow
from sync.store.models import OutboxBatch, OutboxItem, SyncLog

MSG = "m-tags"
PAYLOAD = [
    {"record_type": "user", "record": {"external_id": "u-1"}},
    {"record_type": "user_tag", "record": {"external_id": "u-1", "key": "rank"}, "identity": "u-1/rank"},
    {"record_type": "user_tag", "record": {"external_id": "u-1", "key": "level"}, "identity": "u-1/level"},
    {"record_type": "job_trade", "record": {"external_job_id": "wo-1", "trades": ["T"]}, "identity": "wo-1"},
]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(engine)
    with Session(engine) as session:
        session.add(
            OutboxBatch(message_id=MSG, system="dispatch_connect", payload=PAYLOAD, created_at=utcnow())
        )
        for position, item in enumerate(PAYLOAD):
            identity = item.get("identity") or item["record"]["external_id"]  # type: ignore[index]
            session.add(
                OutboxItem(
                    message_id=MSG,
                    position=position,
                    record_type=str(item["record_type"]),
                    external_id=str(identity),
                    crm_object="Contact",
                    crm_id=f"003{position}",
                )
            )
        session.commit()
        yield session
    engine.dispose()


def result(record_type: str, external_id: str, ok: bool = True) -> RecordResult:
    return RecordResult(MSG, record_type, external_id, ok, error=None if ok else "Problem writing user_tag")


def statuses(session: Session) -> dict[int, str]:
    return {i.position: i.status for i in session.exec(select(OutboxItem)).all()}


def test_acks_naming_a_shared_id_confirm_the_tags_in_batch_order(session: Session) -> None:
    mapping = load_mapping()
    assert apply_result(session, mapping, result("user_tag", "u-1"), source="t", label="Dispatch")
    assert statuses(session) == {0: "pending", 1: "acked", 2: "pending", 3: "pending"}
    assert apply_result(session, mapping, result("user_tag", "u-1"), source="t", label="Dispatch")
    assert statuses(session) == {0: "pending", 1: "acked", 2: "acked", 3: "pending"}


def test_an_err_naming_a_shared_id_marks_the_first_waiting_tag(session: Session) -> None:
    mapping = load_mapping()
    apply_result(session, mapping, result("user_tag", "u-1"), source="t", label="Dispatch")
    assert apply_result(session, mapping, result("user_tag", "u-1", ok=False), source="t", label="Dispatch")
    assert statuses(session)[2] == "error"


def test_an_ack_naming_the_job_of_a_job_trade_confirms_it(session: Session) -> None:
    assert apply_result(session, load_mapping(), result("job_trade", "wo-1"), source="t", label="Dispatch")
    assert statuses(session)[3] == "acked"


def test_an_ack_naming_nothing_in_the_batch_is_logged_not_applied(session: Session) -> None:
    assert not apply_result(session, load_mapping(), result("user_tag", "u-9"), source="t", label="Dispatch")
    assert set(statuses(session).values()) == {"pending"}
    (row,) = session.exec(select(SyncLog).where(SyncLog.level == "warning")).all()
    assert "ack for user_tag u-9 matches no published batch" in row.message

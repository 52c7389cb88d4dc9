"""agent/out and agent/ack of the emulator: FIFO, receipts, visibility timeout, page cap, queue faults."""

from __future__ import annotations

import json

import pytest

from connector.dispatch_connect.client import DispatchConnectClient, ReceiptRefused
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from tests.connector.conftest import DispatchFakeClock
from tests.connector.dispatch_helpers import post_signed


def fill(emulator: DispatchEmulator, n: int) -> list[str]:
    return [emulator.emit("job", {"id": i, "status": "unscheduled"}) for i in range(n)]


def test_empty_queue_polls_empty_array(dispatch_client: DispatchConnectClient) -> None:
    assert dispatch_client.poll() == []


def test_poll_is_fifo(dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient) -> None:
    ids = fill(dispatch_emulator, 3)
    assert [m.id for m in dispatch_client.poll()] == ids


def test_poll_page_is_capped_at_ten(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    fill(dispatch_emulator, 15)
    response = post_signed(dispatch_emulator.base_url, "/agent/out", b'{"maxNumberOfMessages": 50}')
    assert len(response.json()) == 10
    assert len(dispatch_client.poll(10)) == 5


def test_poll_respects_smaller_max(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    fill(dispatch_emulator, 5)
    assert len(dispatch_client.poll(2)) == 2


def test_polled_message_is_invisible_until_timeout(
    dispatch_emulator: DispatchEmulator,
    dispatch_client: DispatchConnectClient,
    dispatch_clock: DispatchFakeClock,
) -> None:
    fill(dispatch_emulator, 1)
    assert len(dispatch_client.poll()) == 1
    dispatch_clock.advance(29)
    assert dispatch_client.poll() == []


def test_unacked_message_comes_back_with_new_receipt(
    dispatch_emulator: DispatchEmulator,
    dispatch_client: DispatchConnectClient,
    dispatch_clock: DispatchFakeClock,
) -> None:
    fill(dispatch_emulator, 1)
    (first,) = dispatch_client.poll()
    dispatch_clock.advance(31)
    (again,) = dispatch_client.poll()
    assert again.id == first.id
    assert again.procedure_id == first.procedure_id
    assert again.receipt != first.receipt


def test_ack_deletes_message(
    dispatch_emulator: DispatchEmulator,
    dispatch_client: DispatchConnectClient,
    dispatch_clock: DispatchFakeClock,
) -> None:
    fill(dispatch_emulator, 1)
    (message,) = dispatch_client.poll()
    dispatch_client.ack(message.receipt, message.procedure_id)
    dispatch_clock.advance(60)
    assert dispatch_client.poll() == []
    assert dispatch_emulator.queue_depth() == 0


def test_expired_receipt_is_refused_and_message_stays(
    dispatch_emulator: DispatchEmulator,
    dispatch_client: DispatchConnectClient,
    dispatch_clock: DispatchFakeClock,
) -> None:
    fill(dispatch_emulator, 1)
    (message,) = dispatch_client.poll()
    dispatch_clock.advance(31)
    with pytest.raises(ReceiptRefused) as info:
        dispatch_client.ack(message.receipt, message.procedure_id)
    assert info.value.status == 400
    assert "expired" in str(info.value)
    assert dispatch_emulator.queue_depth() == 1


def test_old_receipt_refused_after_redelivery(
    dispatch_emulator: DispatchEmulator,
    dispatch_client: DispatchConnectClient,
    dispatch_clock: DispatchFakeClock,
) -> None:
    fill(dispatch_emulator, 1)
    (first,) = dispatch_client.poll()
    dispatch_clock.advance(31)
    (again,) = dispatch_client.poll()
    with pytest.raises(ReceiptRefused):
        dispatch_client.ack(first.receipt, first.procedure_id)
    dispatch_client.ack(again.receipt, again.procedure_id)
    assert dispatch_emulator.queue_depth() == 0


def test_unknown_receipt_is_refused_with_json_error(dispatch_emulator: DispatchEmulator) -> None:
    body = json.dumps({"Receipt": "nope", "ProcedureID": "p", "Result": "success"}).encode()
    response = post_signed(dispatch_emulator.base_url, "/agent/ack", body)
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_receipt"


def test_ack_with_wrong_procedure_id_is_refused(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    fill(dispatch_emulator, 1)
    (message,) = dispatch_client.poll()
    with pytest.raises(ReceiptRefused):
        dispatch_client.ack(message.receipt, "another-procedure")
    assert dispatch_emulator.queue_depth() == 1


def test_error_result_ack_also_deletes(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    fill(dispatch_emulator, 1)
    (message,) = dispatch_client.poll()
    dispatch_client.ack(message.receipt, message.procedure_id, error="could not store")
    assert dispatch_emulator.queue_depth() == 0
    assert dispatch_emulator.counts["acks_error"] == 1


@pytest.mark.parametrize("path", ["/agent/out", "/agent/ack"])
def test_unsigned_poll_and_ack_are_401(dispatch_emulator: DispatchEmulator, path: str) -> None:
    fill(dispatch_emulator, 1)
    response = post_signed(dispatch_emulator.base_url, path, b"{}", signature="bad")
    assert response.status_code == 401
    assert dispatch_emulator.queue_depth() == 1


def test_duplicate_delivery_in_one_page(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_emulator.queue_faults.set(duplicate_rate=1.0)
    fill(dispatch_emulator, 1)
    page = dispatch_client.poll()
    assert [m.id for m in page] == [page[0].id, page[0].id]
    assert page[0].receipt != page[1].receipt
    dispatch_client.ack(page[0].receipt, page[0].procedure_id)
    dispatch_client.ack(page[1].receipt, page[1].procedure_id)  # already deleted: accepted
    assert dispatch_emulator.queue_depth() == 0


def test_duplicate_delivery_in_consecutive_polls(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_emulator.queue_faults.set(duplicate_rate=1.0)
    fill(dispatch_emulator, 1)
    (first,) = dispatch_client.poll(1)
    (second,) = dispatch_client.poll(1)
    assert second.id == first.id
    assert second.receipt != first.receipt


def test_out_of_order_delivery_shuffles_page(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    dispatch_emulator.queue_faults.set(shuffle_rate=1.0)
    ids = fill(dispatch_emulator, 6)
    page = [m.id for m in dispatch_client.poll()]
    assert page != ids
    assert sorted(page) == sorted(ids)


def test_queue_faults_over_http_control(
    dispatch_emulator: DispatchEmulator, dispatch_client: DispatchConnectClient
) -> None:
    import requests

    requests.post(
        dispatch_emulator.base_url + "/control/queue_faults", json={"duplicate_rate": 1.0}, timeout=5
    ).raise_for_status()
    fill(dispatch_emulator, 1)
    assert len(dispatch_client.poll()) == 2

"""Helpers shared by the Dispatch tests (raw signed requests, draining the queue, shape comparison)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import requests

from connector.dispatch_connect.client import DispatchConnectClient, OutboundMessage
from connector.dispatch_connect.signing import sign
from tests.connector.conftest import DISPATCH_KEY, DISPATCH_SECRET


def post_signed(
    base_url: str,
    path: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    key: str = DISPATCH_KEY,
    secret: str = DISPATCH_SECRET,
    signature: str | None = None,
) -> requests.Response:
    all_headers = {
        "Content-Type": "application/json",
        "X-Dispatch-Key": key,
        "X-Dispatch-Signature": signature if signature is not None else sign(secret, body),
    }
    all_headers.update(headers or {})
    return requests.post(base_url + path, data=body, headers=all_headers, timeout=5)


def canonical(*items: tuple[str, dict[str, Any]]) -> bytes:
    return json.dumps(
        [{"header": {"record_type": t, "version": "v3"}, "record": r} for t, r in items]
    ).encode()


def gz(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


def drain(client: DispatchConnectClient) -> list[OutboundMessage]:
    """Poll and ack until the queue is empty, as the playbook's best practice says."""
    out: list[OutboundMessage] = []
    while True:
        page = client.poll(10)
        for message in page:
            client.ack(message.receipt, message.procedure_id)
        out.extend(page)
        if len(page) < 10:
            return out


def puts(messages: list[OutboundMessage]) -> list[tuple[str, dict[str, Any]]]:
    return [(a.put_type, a.data) for m in messages for a in m.actions]


def shape(value: Any) -> Any:
    """The key structure of a JSON value (dict keys recursively, first element of lists)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value and isinstance(value[0], (dict, list)) else []
    return None


ORG = ("organization", {"external_id": "org-1", "name": "Provider", "phone_number": "(555)010-0352"})
ADDRESS = {"street_1": "1 Main St", "city": "Boston", "state": "MA", "postal_code": "02110"}


def job(external_id: str = "job-1", org: str = "org-1", **extra: Any) -> tuple[str, dict[str, Any]]:
    record = {
        "external_id": external_id,
        "title": "Fix the boiler",
        "external_organization_id": org,
        "address": dict(ADDRESS),
        "customer": {"external_id": "cust-1", "first_name": "Jane", "last_name": "Doe"},
    }
    record.update(extra)
    return "job", record

"""Canonical CSV from outside: the parser and the emulator's text/csv agent/in never fall over."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.dispatch_connect.canonical import CsvRowError, InboundRecord, parse_csv_body
from connector.dispatch_connect.client import DispatchConnectClient
from connector.sandbox.dispatch_connect.emulator import DispatchEmulator
from tests.badinput.conftest import DISPATCH_KEY, DISPATCH_SECRET, post_signed

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = ("organization", "customer", "job", "user", "appointment", "bogus_type")
# A lone CR makes csv raise _csv.Error: excluded here, pinned by test_lone_cr_is_a_row_error_not_csv_error.
no_cr = st.characters(blacklist_characters="\r")
# Distinct leaves with no path a prefix of another, so only the data varies (clashes are tested apart).
LEAVES = ("external_id", "title", "address.city", "address.state", "customer.first_name", "status", "x.y.z")


def _settled(items: list[InboundRecord | CsvRowError]) -> None:
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item, InboundRecord | CsvRowError)
        if isinstance(item, CsvRowError):
            assert item.message and item.row_number >= 2


@FUZZ
@given(text=st.text(no_cr, max_size=300), header=st.one_of(st.none(), st.sampled_from(TYPES)))
def test_random_text_gives_items_or_a_header_value_error(text: str, header: str | None) -> None:
    """Whole-body problems (a header not in dot notation) are ValueError, which the emulator turns into
    an err event; nothing else may escape."""
    try:
        items = parse_csv_body(text, header)
    except ValueError as exc:
        assert "CSV column" in str(exc) or "clashes" in str(exc), str(exc)
    else:
        _settled(items)


@st.composite
def csv_bodies(draw: st.DrawFn) -> tuple[str, int]:
    rtype = draw(st.sampled_from(TYPES))
    leaves = draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=len(LEAVES), unique=True))
    version = draw(st.sampled_from(["v3.", "v2.", ""]))
    columns = [f"{version}{rtype}.{leaf}" for leaf in leaves]
    cell = st.one_of(
        st.text(no_cr, max_size=15), st.sampled_from(["", " ", "\x00", "O'Brien", "🚀", "a,b", '"q"', "\n"])
    )
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(columns) + 2), max_size=6))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue(), len(rows)


@FUZZ
@given(body=csv_bodies())
def test_random_rows_never_raise(body: tuple[str, int]) -> None:
    text, _ = body
    _settled(parse_csv_body(text))


def test_huge_cell_is_a_row_error_not_csv_error() -> None:
    text = "v3.job.external_id,v3.job.description\nj-1," + "d" * 200_000 + "\nj-2,short\n"
    items = parse_csv_body(text)
    assert any(isinstance(i, CsvRowError) for i in items)
    assert any(isinstance(i, InboundRecord) and i.record["external_id"] == "j-2" for i in items)


def test_clashing_cells_in_one_row_lose_only_that_row() -> None:
    text = "v3.job.external_id,v3.job.address,v3.job.address.city\nj-1,,Boston\nj-2,1 Main St,Boston\n"
    items = parse_csv_body(text)
    assert [type(i).__name__ for i in items] == ["InboundRecord", "CsvRowError"]


def _feedback(emulator: DispatchEmulator) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    client = DispatchConnectClient(emulator.base_url, DISPATCH_KEY, DISPATCH_SECRET, backoff_s=0)
    out = []
    for message in client.poll(10):
        client.ack(message.receipt, message.procedure_id)
        out.extend((a.put_type, a.data) for a in message.actions)
    return out


def _stored(emulator: DispatchEmulator) -> dict[str, int]:
    return {t: len(emulator.records(t)) for t in ("organization", "customer", "job", "user", "appointment")}


@pytest.mark.parametrize(
    "body",
    [
        b'this is, not\x00csv\n"unterminated',
        b"\xff\xfe\x00garbage bytes\x80",
        b"v3.job\n1,2,3\n",
        "Ä,Ö\n,,,\n".encode(),
        b"\n\n,\n",
    ],
    ids=["text", "not-utf8", "no-dot", "non-ascii-header", "blank"],
)
def test_signed_garbage_csv_is_200_then_err_and_nothing_stored(
    dispatch: DispatchEmulator, body: bytes
) -> None:
    response = post_signed(dispatch.base_url, "/agent/in", body, content_type="text/csv")
    assert response.status_code == 200
    assert dispatch.wait_idle(10)
    events = _feedback(dispatch)
    if body.strip(b"\n,"):
        assert [t for t, _ in events] == ["err"]
        err = events[0][1]["payload"]["err"]
        assert err["msg_id"] == "csv-msg-1" and err["message"].startswith("Problem reading")
    else:
        assert events == []  # an empty body is nothing to apply, not an error
    assert _stored(dispatch) == dict.fromkeys(_stored(dispatch), 0)


@pytest.mark.parametrize("cell", ["d" * 200_000, "a\rb"], ids=["huge-cell", "lone-cr"])
def test_csv_error_is_an_err_and_the_emulator_keeps_applying(dispatch: DispatchEmulator, cell: str) -> None:
    body = f"v3.job.external_id,v3.job.description\nj-1,{cell}\n".encode()
    assert post_signed(dispatch.base_url, "/agent/in", body, content_type="text/csv").status_code == 200
    good = (
        b"v3.organization.external_id,v3.organization.name,v3.organization.phone_number\no-1,Org,5550100352\n"
    )
    assert post_signed(dispatch.base_url, "/agent/in", good, content_type="text/csv").status_code == 200
    assert dispatch.wait_idle(1)
    assert [t for t, _ in _feedback(dispatch)] == ["err", "ack"]

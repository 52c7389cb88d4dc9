"""The hot-path JSON codec: orjson's bytes, with the standard library for what orjson refuses."""

from __future__ import annotations

import json

import pytest

from connector import jsoncodec


def test_ascii_bodies_are_byte_for_byte_the_standard_compact_form() -> None:
    # the ack and poll bodies are signed: their bytes are the ones the wire-format notes show
    body = {"Receipt": "r-1", "ProcedureID": "p-9", "Result": "success", "n": [1, 2.5, None, True]}
    assert jsoncodec.dumps(body) == json.dumps(body, separators=(",", ":")).encode()


def test_non_ascii_text_is_sent_as_utf8_and_reads_back() -> None:
    value = {"name": "Zoë Ødegård ☃"}
    encoded = jsoncodec.dumps(value)
    assert "Zoë Ødegård ☃".encode() in encoded
    assert jsoncodec.loads(encoded) == value
    assert json.loads(encoded) == value


@pytest.mark.parametrize(
    "value",
    [{"subject": "lone \ud800 surrogate"}, {"big": 2**70}, {1: "non-string key"}],
    ids=["lone-surrogate", "int-beyond-64-bits", "int-key"],
)
def test_what_orjson_refuses_falls_back_to_the_standard_library(value: dict[object, object]) -> None:
    encoded = jsoncodec.dumps(value)
    assert encoded == json.dumps(value, separators=(",", ":")).encode("ascii")
    assert jsoncodec.loads(encoded) == json.loads(encoded)
    assert jsoncodec.dumps_text(value) == encoded.decode()


def test_malformed_input_raises_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(b'{"cut": ')


def test_nan_and_infinity_are_written_as_null_not_as_invalid_json() -> None:
    assert jsoncodec.dumps({"a": float("nan"), "b": float("inf")}) == b'{"a":null,"b":null}'

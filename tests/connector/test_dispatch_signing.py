"""Check values from /work/shared/WIRE_FORMATS.md (key = 32 zero bytes)."""

from __future__ import annotations

import pytest

from connector.dispatch_connect.signing import sign, verify
from connector.errors import ConfigurationError

ZERO_SECRET = "00" * 32

CHECK_VALUES = [
    (
        b'{"maxNumberOfMessages": 10}',
        "aec80a7aed60abe0d7b5a85550553dc96be62f9a1cd809a6f86ef218db180822",
    ),
    (
        b'{"maxNumberOfMessages":10}',
        "5b1b1bda0b85f77f817793604876ded4937f78cc76aeab40472ce966085295f8",
    ),
    (
        b'{"Receipt":"r1","ProcedureID":"p1","Result":"success"}',
        "f9ecce667057f08fd350f9319773d20190def2a6adc4c2c4386c893e3a507a2d",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CHECK_VALUES)
def test_sign_matches_check_value(body: bytes, expected: str) -> None:
    assert sign(ZERO_SECRET, body) == expected


@pytest.mark.parametrize(("body", "expected"), CHECK_VALUES)
def test_verify_accepts_check_value(body: bytes, expected: str) -> None:
    assert verify(ZERO_SECRET, body, expected)


def test_verify_rejects_other_body() -> None:
    assert not verify(ZERO_SECRET, b"{}", CHECK_VALUES[0][1])


def test_verify_rejects_missing_signature() -> None:
    assert not verify(ZERO_SECRET, b"{}", None)


def test_non_hex_secret_is_a_configuration_error_without_the_secret() -> None:
    with pytest.raises(ConfigurationError) as info:
        sign("not-hex-sEcReT", b"{}")
    assert "sEcReT" not in str(info.value)

"""The streaming settings: defaults, validation naming the setting, and `config show` listing them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync.errors import SettingsError
from sync.settings import load_settings
from tests.sync.test_cli import run


def test_defaults_stream_when_the_org_offers_it() -> None:
    settings = load_settings()
    assert settings.streaming == "auto"
    assert settings.stream_coalesce_ms == 200
    assert (settings.publish_interval_s, settings.stream_publish_interval_s) == (60.0, 300.0)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("streaming", "sometimes", "STREAMING: Input should be 'auto', 'on' or 'off'"),
        ("stream_coalesce_ms", -1, "STREAM_COALESCE_MS: Input should be greater than or equal to 0"),
        ("stream_publish_interval_s", 0, "STREAM_PUBLISH_INTERVAL_S: Input should be greater than 0"),
    ],
)
def test_a_bad_streaming_setting_is_named(name: str, value: object, expected: str) -> None:
    with pytest.raises(SettingsError, match=expected.replace("(", r"\(")):
        load_settings(**{name: value})


def test_config_show_lists_the_streaming_settings(tmp_path: Path) -> None:
    result = run(["config", "show", "--json"], tmp_path, STREAMING="off", STREAM_COALESCE_MS="50")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["streaming"], shown["stream_coalesce_ms"], shown["stream_publish_interval_s"]) == (
        "off",
        "50",
        "300.0",
    )

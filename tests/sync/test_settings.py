"""Settings: environment over file over defaults; every problem named; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.errors import SettingsError
from sync.settings import load_settings, mask_url_password

SECRET = "ab" * 32


def test_defaults_need_nothing() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///dispatch_connector.db"
    assert settings.batch_size == 200


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: 50\npoll_interval_s: 3\n")
    monkeypatch.setenv("BATCH_SIZE", "75")
    settings = load_settings(config)
    assert settings.batch_size == 75
    assert settings.poll_interval_s == 3


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DISPATCH_SECRET", "not-hex", "DISPATCH_SECRET: must be a hex string"),
        ("POLL_INTERVAL_S", "-1", "POLL_INTERVAL_S: Input should be greater than 0"),
        ("BATCH_SIZE", "many", "BATCH_SIZE: Input should be a valid integer"),
        ("WRITEBACK_BATCH_SIZE", "500", "WRITEBACK_BATCH_SIZE: Input should be less than or equal to 200"),
        ("DATABASE_URL", "dispatch.db", "DATABASE_URL: must be a URL"),
    ],
)
def test_invalid_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=expected):
        load_settings()


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("batch_sise: 10\n")
    with pytest.raises(SettingsError, match="BATCH_SISE: is not a known setting"):
        load_settings(config)


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"dispatch_secret: {SECRET}\n")
    with pytest.raises(SettingsError, match="set DISPATCH_SECRET in the environment") as info:
        load_settings(config)
    assert SECRET not in str(info.value)


def test_broken_or_missing_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("batch_size: [1,\n")
    with pytest.raises(SettingsError, match=r"broken\.yaml: not valid YAML"):
        load_settings(broken)
    with pytest.raises(SettingsError, match=r"nope\.yaml: cannot be read"):
        load_settings(tmp_path / "nope.yaml")


def test_require_names_every_missing_setting() -> None:
    with pytest.raises(SettingsError, match="DISPATCH_PUBLIC_KEY, DISPATCH_SECRET"):
        load_settings().require("dispatch_public_key", "dispatch_secret")


def test_masked_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_SECRET", SECRET)
    monkeypatch.setenv("SALESFORCE_PASSWORD", "hunter2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://svc:pa55@db:5432/dc")
    shown = load_settings().masked()
    assert SECRET not in str(shown) and "hunter2" not in str(shown) and "pa55" not in str(shown)
    assert shown["dispatch_secret"] == "********"


def test_mask_url_password_keeps_urls_without_password() -> None:
    assert mask_url_password("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url_password("postgresql://u:p@h/db") == "postgresql://u:********@h/db"

"""Back-end settings blocks: one typed block per configured back end, secrets from the environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.errors import SettingsError
from sync.settings import load_settings

SECRET = "ab" * 32


def test_default_is_one_dispatch_connect_block_from_the_old_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_PUBLIC_KEY", "organization|1|acme")
    monkeypatch.setenv("DISPATCH_SECRET", SECRET)
    monkeypatch.setenv("DISPATCH_ACKS", "false")
    blocks = load_settings().backend_blocks
    assert list(blocks) == ["dispatch_connect"]
    values = blocks["dispatch_connect"].values
    assert values.public_key == "organization|1|acme"  # type: ignore[attr-defined]
    assert values.acks is False  # type: ignore[attr-defined]
    assert values.secret.get_secret_value() == SECRET  # type: ignore[attr-defined]


def test_named_instances_take_their_own_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "backends:\n"
        "  dispatch_connect: {public_key: 'organization|1|us'}\n"
        "  eu: {type: dispatch_connect, base_url: 'https://eu.example', public_key: 'organization|2|eu'}\n"
    )
    monkeypatch.setenv("EU_SECRET", SECRET)
    monkeypatch.setenv("EU_TIMEOUT_S", "5")
    settings = load_settings(config)
    eu = settings.backend_blocks["eu"]
    assert eu.entry.name == "dispatch_connect" and eu.prefix == "EU_"
    assert eu.values.base_url == "https://eu.example"  # type: ignore[attr-defined]
    assert eu.values.timeout_s == 5.0  # type: ignore[attr-defined]
    assert settings.secret("eu_secret") == SECRET
    assert settings.backend_blocks["dispatch_connect"].missing() == ["DISPATCH_SECRET"]


def test_environment_beats_the_file_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("backends:\n  dispatch_connect: {base_url: 'https://from-file'}\n")
    monkeypatch.setenv("DISPATCH_BASE_URL", "https://from-env")
    assert load_settings(config).value("dispatch_base_url") == "https://from-env"


def test_old_flat_keys_in_the_file_still_configure_dispatch_connect(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("dispatch_base_url: https://connect.dispatch.me\ndispatch_acks: false\n")
    settings = load_settings(config)
    assert settings.value("dispatch_base_url") == "https://connect.dispatch.me"
    assert settings.value("dispatch_acks") is False


def test_secret_in_a_file_block_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"backends:\n  eu: {{type: dispatch_connect, secret: '{SECRET}'}}\n")
    with pytest.raises(SettingsError, match="set EU_SECRET in the environment") as info:
        load_settings(config)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "backends:\n  eu: {type: dispatch_kinnect}\n",
            "BACKENDS.EU.TYPE: unknown back-end type 'dispatch_kinnect'",
        ),
        (
            "backends:\n  eu: {type: dispatch_connect, base_ulr: x}\n",
            "BACKENDS.EU.BASE_ULR: is not a setting",
        ),
        (
            "backends:\n  eu: {type: dispatch_connect, timeout_s: -1}\n",
            "EU_TIMEOUT_S: Input should be greater",
        ),
        ("backends: [dispatch_connect]\n", "BACKENDS: must map back-end names"),
        ("backends:\n  eu-west: {type: dispatch_connect}\n", "'eu-west' is not a valid back-end name"),
    ],
)
def test_bad_blocks_are_named(tmp_path: Path, yaml_text: str, expected: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        load_settings(config)


def test_masked_lists_every_back_end_with_secrets_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("backends:\n  dispatch_connect: {}\n  eu: {type: dispatch_connect}\n")
    monkeypatch.setenv("DISPATCH_SECRET", SECRET)
    monkeypatch.setenv("EU_SECRET", "cd" * 32)
    shown = load_settings(config).masked()
    assert shown["backends"] == "dispatch_connect (dispatch_connect), eu (dispatch_connect)"
    assert shown["dispatch_secret"] == "********" and shown["eu_secret"] == "********"
    assert SECRET not in str(shown) and "cd" * 32 not in str(shown)


def test_a_context_names_missing_credentials_only_when_the_back_end_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from connector.mapping import load_mapping
    from sync.context import SyncContext
    from sync.store.db import make_engine

    settings = load_settings(database_url=f"sqlite:///{tmp_path}/s.db")
    ctx = SyncContext(settings=settings, engine=make_engine(settings.database_url), mapping=load_mapping())
    translate, label = ctx.translator("dispatch_connect")  # reading stored messages needs no credentials
    assert label == "Dispatch" and callable(translate)
    with pytest.raises(
        SettingsError, match="DISPATCH_PUBLIC_KEY, DISPATCH_SECRET; set them in the environment"
    ):
        ctx.backend("dispatch_connect")
    with pytest.raises(SettingsError, match="no back end named 'nope' is configured"):
        ctx.backend("nope")

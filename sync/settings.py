"""The one settings object: environment variables over an optional YAML config file over defaults.

Why a config file at all: intervals, batch sizes and URLs are deployment data worth reviewing in a
file. Secrets are not: a config file that names a secret is refused, so a secret can only come from
the environment and never ends up committed next to the mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sync.backends import BackendBlock, build_blocks, resolve_instances
from sync.errors import SettingsError

CONFIG_FILE_ENV = "DISPATCH_CONNECTOR_CONFIG"
SECRET_FIELDS = (
    "salesforce_password",
    "salesforce_security_token",
    "salesforce_client_secret",
    "dashboard_token",
)


class Settings(BaseSettings):
    """Effective configuration. Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False)

    database_url: str = Field("sqlite:///dispatch_connector.db", description="SQLAlchemy URL of the store")
    mapping_file: Path | None = Field(
        None, description="CRM -> canonical mapping (YAML); default: bundled example"
    )

    salesforce_instance_url: str | None = Field(None, description="https://yourorg.my.salesforce.com")
    salesforce_username: str | None = Field(None, description="integration user")
    salesforce_password: SecretStr | None = Field(None, description="environment only")
    salesforce_security_token: SecretStr | None = Field(None, description="environment only")
    salesforce_client_id: str | None = Field(None, description="connected app consumer key")
    salesforce_client_secret: SecretStr | None = Field(None, description="environment only")
    salesforce_api_version: str = Field("59.0", description="REST API version")
    salesforce_ca_bundle: Path | None = Field(None, description="CA bundle to trust (emulator or proxy)")

    publish_interval_s: float = Field(
        60.0,
        gt=0,
        description="seconds between publish cycles (without change events, or while they are down)",
    )
    streaming: Literal["auto", "on", "off"] = Field(
        "auto", description="CRM change events (CDC) drive publishing; auto: when the org offers them"
    )
    stream_coalesce_ms: int = Field(
        200, ge=0, le=60_000, description="change events this close together are published as one change set"
    )
    stream_publish_interval_s: float = Field(
        300.0, gt=0, description="seconds between safety-net publish cycles while change events stream"
    )
    poll_interval_s: float = Field(15.0, gt=0, description="seconds between pull-channel drains")
    process_interval_s: float = Field(5.0, gt=0, description="seconds between inbox processing runs")
    writeback_interval_s: float = Field(10.0, gt=0, description="seconds between CRM write-back flushes")
    lookback_s: float = Field(300.0, ge=0, description="SystemModstamp overlap re-read each cycle")
    batch_size: int = Field(200, ge=1, le=5000, description="records per change-set request to a back end")
    writeback_batch_size: int = Field(200, ge=1, le=200, description="records per sObject Collections call")
    writeback_concurrency: int = Field(
        3, ge=1, le=10, description="sObject Collections calls in flight at once when flushing write-backs"
    )
    max_attempts: int = Field(5, ge=1, description="inbox attempts before a message goes dead")
    log_retention_days: int = Field(30, ge=1, description="sync-log rows older than this are purged")
    log_json: bool = Field(False, description="structured JSON log lines")
    dashboard_host: str = Field("127.0.0.1", description="dashboard bind address")
    dashboard_port: int = Field(8765, ge=0, le=65535, description="dashboard port")
    dashboard_token: SecretStr | None = Field(None, description="access token when not on loopback")
    push_max_body_bytes: int = Field(
        1_000_000, ge=1024, description="largest body a push channel (webhook) accepts; larger gets 413"
    )
    backends: dict[str, dict[str, Any]] | None = Field(
        None,
        description="one settings block per field-service back end (config file); default: dispatch_connect",
    )

    _file_data: ClassVar[dict[str, Any]] = {}
    _blocks: dict[str, BackendBlock] = PrivateAttr(default_factory=dict)

    @field_validator("database_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a URL such as sqlite:///file.db or postgresql+psycopg://host/db")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, cls._file_data))

    def require(self, *names: str) -> None:
        """Fail with one message naming every setting a command needs but does not have.

        Names are environment names in lower case; a back end's are its prefix plus its field
        (`dispatch_secret`)."""
        missing = [name.upper() for name in names if self.value(name) in (None, "")]
        if missing:
            secret = any(self._is_secret(n) for n in names)
            raise SettingsError(
                f"missing setting(s): {', '.join(missing)}; set them in the environment"
                + ("" if secret else " or the config file")
            )

    def value(self, name: str) -> Any:
        """A setting by its environment name in lower case, top-level or of a back end."""
        if name in type(self).model_fields:
            return getattr(self, name)
        for block in self._blocks.values():
            field = block.field_for(name)
            if field is not None:
                return getattr(block.values, field)
        raise KeyError(name)

    def secret(self, name: str) -> str:
        value = self.value(name)
        return value.get_secret_value() if value is not None else ""

    @property
    def backend_blocks(self) -> dict[str, BackendBlock]:
        """The configured back ends by instance name (at least one: dispatch_connect by default)."""
        return self._blocks

    def _is_secret(self, name: str) -> bool:
        if name in SECRET_FIELDS:
            return True
        return any(block.field_for(name) in block.entry.secrets for block in self._blocks.values())

    def masked(self) -> dict[str, Any]:
        """The effective settings for display, secrets replaced by a fixed mask; each back end's fields
        under its environment names, and `backends` listing each instance with its type."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name == "backends":
                continue
            shown[name] = _shown(name, getattr(self, name))
        shown["backends"] = ", ".join(f"{n} ({b.entry.name})" for n, b in self._blocks.items())
        for block in self._blocks.values():
            for field in type(block.values).model_fields:
                shown[block.env_name(field).lower()] = _shown(field, getattr(block.values, field))
        return shown


def _shown(name: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "********"
    if name == "database_url":
        return mask_url_password(value)
    return None if value is None else str(value)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The config file's top-level values (read once by load_settings; back-end keys taken out)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SettingsError(f"config file {path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"config file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path}: not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path}: must be a mapping of setting names to values")
    data = {str(k).lower(): v for k, v in loaded.items()}
    for name in SECRET_FIELDS:
        if name in data:
            raise SettingsError(
                f"config file {path}: {name} is a secret; set {name.upper()} "
                "in the environment instead and remove it from the file"
            )
    return data


def mask_url_password(url: str) -> str:
    """Hide the password part of a database URL (user:pass@host)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}" if ":" in credentials else url


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once at start; any problem becomes one SettingsError naming the setting.

    Back-end settings (`DISPATCH_SECRET`, `backends:` blocks in the file, `dispatch_base_url=` overrides)
    are resolved into one typed block per configured back end (sync.backends)."""
    path = config_file or os.environ.get(CONFIG_FILE_ENV)
    file_data = _read_config_file(Path(path)) if path else {}
    top = set(Settings.model_fields)
    declared = file_data.get("backends") if "backends" not in overrides else overrides["backends"]
    instances = resolve_instances(declared)
    flat_file = {k: v for k, v in file_data.items() if k not in top}
    flat_overrides = {k: v for k, v in overrides.items() if k not in top}
    blocks = build_blocks(instances, flat_file, flat_overrides, path)
    claimed = {name for block in blocks.values() for name in block.flat_names()}
    Settings._file_data = {k: v for k, v in file_data.items() if k not in claimed}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if k not in claimed})
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    finally:
        Settings._file_data = {}
    settings._blocks = blocks
    return settings


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known setting (see README, Configuration)"
        problems.append(f"{name}: {message}")
    return "invalid setting(s): " + "; ".join(problems)

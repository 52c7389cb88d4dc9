"""Back-end settings blocks: which back ends are configured, and each one's typed settings.

A deployment names its back ends in the config file (`backends: {eu: {type: dispatch_connect, ...}}`); with
no `backends:` block it has one, `dispatch_connect`. Each block is validated by its registry entry's
settings model. Values come from, highest first: overrides given in code, the environment (the back end's
prefix plus the field: `DISPATCH_SECRET` for an instance named like its type, `EU_SECRET` for one named
`eu`), the file (the block, or the same prefixed names at top level, as before back ends had blocks), then
the model's defaults. Secrets are refused in the file, as every other secret is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connector.errors import ConfigurationError
from connector.ports import BackendType
from connector.registry import DEFAULT_BACKEND, backend_type
from sync.errors import SettingsError


@dataclass(frozen=True)
class BackendBlock:
    """One configured back end: its instance name (the store's `system`), its type and its settings."""

    name: str
    entry: BackendType
    prefix: str
    values: BaseModel

    def env_name(self, field: str) -> str:
        return f"{self.prefix}{field}".upper()

    def flat_names(self) -> list[str]:
        return [self.env_name(field).lower() for field in type(self.values).model_fields]

    def field_for(self, flat_name: str) -> str | None:
        """`dispatch_secret` -> `secret` for the block whose prefix is DISPATCH_."""
        prefix = self.prefix.lower()
        if not flat_name.startswith(prefix):
            return None
        field = flat_name[len(prefix) :]
        return field if field in type(self.values).model_fields else None

    def missing(self) -> list[str]:
        """Environment names of the required settings that have no value."""
        return [self.env_name(f) for f in self.entry.required if getattr(self.values, f) in (None, "")]


def resolve_instances(declared: Any) -> dict[str, tuple[BackendType, dict[str, Any]]]:
    """Instance name -> (registry entry, the file's block). No declaration: the one default back end."""
    if declared is None:
        return {DEFAULT_BACKEND: (backend_type(DEFAULT_BACKEND), {})}
    if not isinstance(declared, Mapping) or not declared:
        raise SettingsError(
            "BACKENDS: must map back-end names to settings blocks, e.g. {dispatch_connect: {}}"
        )
    instances: dict[str, tuple[BackendType, dict[str, Any]]] = {}
    for name, block in declared.items():
        block = dict(block or {})
        if not isinstance(name, str) or not name.isidentifier():
            raise SettingsError(f"BACKENDS: {name!r} is not a valid back-end name (letters, digits, _)")
        type_name = str(block.pop("type", name))
        try:
            instances[name] = (backend_type(type_name), block)
        except ConfigurationError as exc:
            raise SettingsError(f"BACKENDS.{name.upper()}.TYPE: {exc}") from None
    return instances


def build_blocks(
    instances: Mapping[str, tuple[BackendType, dict[str, Any]]],
    flat_file: Mapping[str, Any],
    flat_overrides: Mapping[str, Any],
    config_file: str | Path | None,
) -> dict[str, BackendBlock]:
    blocks: dict[str, BackendBlock] = {}
    problems: list[str] = []
    for name, (entry, file_block) in instances.items():
        prefix = entry.env_prefix if name == entry.name else f"{name.upper()}_"
        values = _values(entry, prefix, file_block, flat_file, flat_overrides, config_file)
        try:
            blocks[name] = BackendBlock(name, entry, prefix, entry.settings_model(**values))
        except ValidationError as exc:
            problems.extend(_described(exc, prefix, name))
    if problems:
        raise SettingsError("invalid setting(s): " + "; ".join(problems))
    return blocks


def _values(
    entry: BackendType,
    prefix: str,
    file_block: Mapping[str, Any],
    flat_file: Mapping[str, Any],
    flat_overrides: Mapping[str, Any],
    config_file: str | Path | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in file_block.items():
        values[str(key).lower()] = value
    for field in entry.settings_model.model_fields:
        flat = f"{prefix}{field}".lower()
        if flat in flat_file:
            values[field] = flat_file[flat]
        if field in entry.secrets and field in values:
            raise SettingsError(
                f"config file {config_file}: {flat} is a secret; set {flat.upper()} "
                "in the environment instead and remove it from the file"
            )
        env = os.environ.get(flat.upper())
        if env is not None:
            values[field] = env
        if flat in flat_overrides:
            values[field] = flat_overrides[flat]
    return values


def _described(exc: ValidationError, prefix: str, name: str) -> list[str]:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            problems.append(f"BACKENDS.{name.upper()}.{field.upper()}: is not a setting of this back end")
        else:
            problems.append(f"{prefix}{field}".upper() + f": {message}")
    return problems

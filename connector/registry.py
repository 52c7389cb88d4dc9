"""Back-end names -> their registry entries. Adding a back end is one line here plus its own package.

Entries are imported lazily, so a deployment that uses one back end never imports the others' clients.
"""

from __future__ import annotations

import importlib

from connector.errors import ConfigurationError
from connector.ports import BackendType

# name -> "module:attribute" of its BackendType
BACKEND_TYPES: dict[str, str] = {
    "dispatch_connect": "connector.dispatch_connect.backend:BACKEND_TYPE",
    "dispatch_v3": "connector.dispatch_v3.backend:BACKEND_TYPE",
}
DEFAULT_BACKEND = "dispatch_connect"
_extra: dict[str, BackendType] = {}


class UnknownBackend(ConfigurationError):
    """A settings block or a mapping names a back-end type the registry does not know."""


def backend_type(name: str) -> BackendType:
    """The registry entry for a back-end type, imported on first use."""
    if name in _extra:
        return _extra[name]
    target = BACKEND_TYPES.get(name)
    if target is None:
        raise UnknownBackend(f"unknown back-end type {name!r}; known types: {', '.join(known_types())}")
    module_name, _, attribute = target.partition(":")
    entry = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(entry, BackendType):
        raise TypeError(f"{target} is not a BackendType")
    return entry


def known_types() -> list[str]:
    return sorted({*BACKEND_TYPES, *_extra})


def register(entry: BackendType) -> None:
    """Add a back-end type at run time (plug-ins outside this package, and tests' own back ends)."""
    _extra[entry.name] = entry


def unregister(name: str) -> None:
    _extra.pop(name, None)

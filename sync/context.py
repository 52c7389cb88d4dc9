"""Everything one engine run needs, built once from the settings: store, mapping, the CRM and the back ends.

Tests and the demo build a context around emulator clients; production builds it from the environment.
The edges are created on first use, so a command that only reads the store needs no credentials. Back ends
are reached only through the registry (connector.registry), by the instance names the settings configure.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine

from connector.crm_http import exception_chain
from connector.mapping import MappingConfig, load_mapping
from connector.ports import Backend, Delivery, Report, SessionHook
from sync.errors import SettingsError
from sync.settings import Settings
from sync.store.db import check_schema, make_engine


@dataclass
class SyncContext:
    settings: Settings
    engine: Engine
    mapping: MappingConfig
    # Back ends built so far, by instance name (tests hand in ones around emulator clients).
    backends: dict[str, Backend] = field(default_factory=dict)
    crm_gateway: Any = None
    # Called with (session, system) for each HTTP session the context builds (metrics count calls this way).
    session_hooks: list[SessionHook] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings, *, check: bool = True, **edges: Any) -> SyncContext:
        engine = make_engine(settings.database_url)
        if check:
            check_schema(engine)
        ctx = cls(settings=settings, engine=engine, mapping=load_mapping(settings.mapping_file), **edges)
        ctx.check_routes()
        return ctx

    def check_routes(self) -> None:
        """Every back end the mapping routes to is configured and takes the records the mapping builds."""
        blocks = self.settings.backend_blocks
        configured = {name: block.entry.record_types for name, block in blocks.items()}
        self.mapping.check_backends(configured, self.default_backend)

    def backend_names(self) -> list[str]:
        """Every configured back end (those handed in first), whether built yet or not."""
        return list(dict.fromkeys([*self.backends, *self.settings.backend_blocks]))

    def backend(self, name: str) -> Backend:
        """The back end of this name, built from its settings block on first use."""
        if name not in self.backends:
            block = self.settings.backend_blocks.get(name)
            if block is None:
                known = ", ".join(self.backend_names()) or "none"
                raise SettingsError(f"no back end named {name!r} is configured (configured: {known})")
            self.settings.require(*(name.lower() for name in block.missing()))
            self.backends[name] = block.entry.factory(name, block.values, tuple(self.session_hooks))
        return self.backends[name]

    def translator(self, name: str) -> tuple[Callable[[Delivery], Iterable[Report]], str]:
        """How to read a back end's stored deliveries, and its label: needs its settings, no credentials."""
        block = self.settings.backend_blocks.get(name)
        if block is None:
            known = ", ".join(self.backend_names()) or "none"
            raise SettingsError(
                f"message of back end {name!r}, which is not configured (configured: {known}); "
                "configure it again, then `dispatch-connector retry --dead`"
            )
        entry, values = block.entry, block.values
        return (lambda delivery: entry.translate(delivery, values)), entry.label

    def all_backends(self) -> Mapping[str, Backend]:
        return {name: self.backend(name) for name in self.backend_names()}

    @property
    def default_backend(self) -> str:
        """The back end a mapped object goes to when it names none: the only one, or the first declared."""
        names = self.backend_names()
        if not names:
            raise SettingsError("no back end is configured; add a `backends:` block to the config file")
        return names[0]

    @property
    def crm(self) -> Any:
        if self.crm_gateway is None:
            from connector.crm import connect_salesforce

            s = self.settings
            s.require("salesforce_instance_url", "salesforce_username", "salesforce_password")
            session = _TrustCheckedSession(s.salesforce_ca_bundle)
            if s.salesforce_ca_bundle:
                session.verify = _ca_bundle(s.salesforce_ca_bundle)
                session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
            for hook in self.session_hooks:
                hook(session, "salesforce")
            self.crm_gateway = connect_salesforce(
                instance_url=str(s.salesforce_instance_url),
                username=str(s.salesforce_username),
                password=s.secret("salesforce_password"),
                security_token=s.secret("salesforce_security_token") or None,
                client_id=s.salesforce_client_id,
                client_secret=s.secret("salesforce_client_secret") or None,
                session=session,
                api_version=s.salesforce_api_version,
            )
        return self.crm_gateway


def _ca_bundle(path: Path) -> str:
    """SALESFORCE_CA_BUNDLE checked where the session is built: a missing or unreadable file would otherwise
    surface from deep inside requests as an OSError on the first call."""
    if not path.exists():
        raise SettingsError(f"SALESFORCE_CA_BUNDLE: no such file: {path}")
    if path.is_file():
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            raise SettingsError(
                f"SALESFORCE_CA_BUNDLE: {path} holds no usable PEM certificate ({reason})"
            ) from None
    return str(path)


class _TrustCheckedSession(requests.Session):
    """Salesforce's HTTP session. A certificate it cannot verify is a settings error (exit 2, naming
    SALESFORCE_CA_BUNDLE), raised at once: as a connection error the gateway would retry it, then report a
    bare SSLError as a temporary outage."""

    def __init__(self, ca_bundle: Path | None) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.exceptions.SSLError as exc:
            reason = _verify_failure(exc)
            if reason is None:
                raise
            where = _origin(str(url))
            if self.ca_bundle:
                raise SettingsError(
                    f"the certificate of {where} is not trusted ({reason}) by the CA in SALESFORCE_CA_BUNDLE "
                    f"({self.ca_bundle}); set it to the CA file that signed the server's certificate"
                ) from None
            raise SettingsError(
                f"the certificate of {where} is not trusted ({reason}); set SALESFORCE_CA_BUNDLE to the CA "
                "file that signed it (for the Salesforce emulator: the file `dispatch-connector sandbox "
                "salesforce` writes, salesforce-emulator-ca.pem)"
            ) from None


def _verify_failure(exc: BaseException) -> str | None:
    """The reason a certificate was refused, found in the chain requests and urllib3 wrap it in; None when
    the TLS error is something else (a handshake cut short, a protocol mismatch)."""
    for err in exception_chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            return str(err.verify_message or "certificate verify failed")
    return None


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url

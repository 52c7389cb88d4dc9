"""Everything one engine run needs, built once from the settings: store, mapping and the two edges.

Tests and the demo build a context around emulator clients; production builds it from the environment.
The edges are created on first use, so a command that only reads the store needs no credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from sqlalchemy import Engine

from connector.dispatch_connect.client import DispatchConnectClient
from connector.mapping import MappingConfig, load_mapping
from sync.settings import Settings
from sync.store.db import check_schema, make_engine


@dataclass
class SyncContext:
    settings: Settings
    engine: Engine
    mapping: MappingConfig
    dispatch_client: DispatchConnectClient | None = None
    crm_gateway: Any = None
    # Called with (session, system) for each HTTP session the context builds (metrics count calls this way).
    session_hooks: list[Callable[[requests.Session, str], None]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings, *, check: bool = True, **edges: Any) -> SyncContext:
        engine = make_engine(settings.database_url)
        if check:
            check_schema(engine)
        return cls(settings=settings, engine=engine, mapping=load_mapping(settings.mapping_file), **edges)

    @property
    def dispatch(self) -> DispatchConnectClient:
        if self.dispatch_client is None:
            self.settings.require("dispatch_public_key", "dispatch_secret")
            session = requests.Session()
            for hook in self.session_hooks:
                hook(session, "dispatch")
            self.dispatch_client = DispatchConnectClient(
                self.settings.dispatch_base_url,
                str(self.settings.dispatch_public_key),
                self.settings.secret("dispatch_secret"),
                session=session,
                timeout=self.settings.dispatch_timeout_s,
            )
        return self.dispatch_client

    @property
    def crm(self) -> Any:
        if self.crm_gateway is None:
            from connector.crm import connect_salesforce

            s = self.settings
            s.require("salesforce_instance_url", "salesforce_username", "salesforce_password")
            session = requests.Session()
            if s.salesforce_ca_bundle:
                session.verify = str(s.salesforce_ca_bundle)
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

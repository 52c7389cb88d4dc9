"""Login for the Salesforce emulator: the SOAP `login` call and the OAuth2 token endpoint, plus sessions.

simple-salesforce logs in with SOAP when given username/password/security_token and with the OAuth2 token
endpoint (password or client_credentials grant) when given a connected app, so the emulator answers both,
in the same shapes as Salesforce, and issues bearer tokens that expire by TTL (on the injected clock) or
on demand.
"""

from __future__ import annotations

import base64
import secrets
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from connector.sandbox.salesforce.store import SalesforceStore

ORG_ID = "00D5g000000EMUL8AQ"
_SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
_LOGIN_FAULT_MESSAGE = "Invalid username, password, security token; or user locked out."


@dataclass
class Session:
    user_id: str
    issued_at: datetime


class LoginFailed(Exception):
    """Credentials were refused; `code` is Salesforce's (INVALID_LOGIN, invalid_grant, invalid_client)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionRegistry:
    """Bearer tokens -> sessions; a token is valid until its TTL passes or sessions are expired."""

    def __init__(self, store: SalesforceStore, ttl_s: float | None) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def issue(self, user_id: str) -> str:
        token = ORG_ID[:15] + "!" + secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = Session(user_id, self.store.clock())
        return token

    def user_for(self, token: str) -> str | None:
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            age = (self.store.clock() - session.issued_at).total_seconds()
            if self.ttl_s is not None and age >= self.ttl_s:
                del self._sessions[token]
                return None
            return session.user_id

    def expire_all(self) -> int:
        with self._lock:
            n = len(self._sessions)
            self._sessions.clear()
            return n


def check_password(store: SalesforceStore, username: str, password: str) -> str:
    """Return the user's Id if `password` is the password, or password + security token."""
    cred = store.auth.users.get(username)
    if cred is None or password not in {cred.password + cred.security_token, cred.password}:
        raise LoginFailed("INVALID_LOGIN", _LOGIN_FAULT_MESSAGE)
    return store.user_id(username)


# --- SOAP ------------------------------------------------------------------------------------


def soap_login(store: SalesforceStore, body: bytes) -> str:
    """Parse a partner-API `login` envelope and return the user's Id."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise LoginFailed("INVALID_LOGIN", "malformed SOAP envelope") from exc
    values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
    if "username" not in values or "password" not in values:
        raise LoginFailed("INVALID_LOGIN", _LOGIN_FAULT_MESSAGE)
    return check_password(store, values["username"], values["password"])


def soap_login_response(host_url: str, api_version: str, token: str, user_id: str) -> str:
    server = f"{host_url.rstrip('/')}/services/Soap/u/{api_version}/{ORG_ID[:15]}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{_SOAP_NS}" xmlns="urn:partner.soap.sforce.com">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{escape(server.replace('/u/', '/m/'))}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{escape(server)}</serverUrl><sessionId>{escape(token)}</sessionId>"
        f"<userId>{user_id}</userId>"
        f"<userInfo><organizationId>{ORG_ID}</organizationId><userId>{user_id}</userId></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


def soap_fault(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{_SOAP_NS}" xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


# --- OAuth2 ----------------------------------------------------------------------------------


def oauth_login(store: SalesforceStore, body: bytes, authorization: str | None) -> str:
    """Handle a token request (password or client_credentials grant); return the user's Id."""
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if authorization and authorization.lower().startswith("basic "):
        decoded = base64.b64decode(authorization[6:]).decode("utf-8")
        client_id, _, client_secret = decoded.partition(":")
    app = store.auth.apps.get(client_id or "")
    if app is None or app.client_secret != client_secret:
        raise LoginFailed("invalid_client", "invalid client credentials")
    grant = form.get("grant_type")
    if grant == "password":
        try:
            return check_password(store, form.get("username", ""), form.get("password", ""))
        except LoginFailed as exc:
            raise LoginFailed("invalid_grant", "authentication failure") from exc
    if grant == "client_credentials":
        return store.user_id(app.run_as)
    raise LoginFailed("unsupported_grant_type", "grant type not supported")


def oauth_response(host_url: str, token: str, user_id: str, issued_ms: int) -> dict[str, Any]:
    base = host_url.rstrip("/")
    return {
        "access_token": token,
        "instance_url": base,
        "id": f"{base}/id/{ORG_ID}/{user_id}",
        "token_type": "Bearer",
        "issued_at": str(issued_ms),
        "signature": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
    }

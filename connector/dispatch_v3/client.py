"""Dispatch v3 REST client: OAuth2 client credentials, work orders, jobs, appointments and their lists.

The bytes are written down in docs/wire-formats.md ("Dispatch v3 REST"); the emulator in
`connector.sandbox.dispatch_v3` follows the same reading. Retries are the connector's one policy
(connector/retry.py: connection errors, 429 and 5xx; `Retry-After` honoured).
A 401 fetches a new token and retries that request once; a second 401 is a configuration error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests

from connector import jsoncodec
from connector.errors import ConfigurationError, RemoteRejected, TransientError
from connector.retry import send_with_retries

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/token"
WORKORDER_PATH = "/v3/workorder"
JOBS_PATH = "/v3/jobs"
APPOINTMENTS_PATH = "/v3/appointments"
PAGE_LIMIT = 100
TOKEN_MARGIN_S = 60.0  # a token is renewed this long before it expires


class DispatchV3Unavailable(TransientError):
    """Dispatch v3 kept failing (5xx, 429 or a broken connection) after every retry."""


class DispatchV3Rejected(RemoteRejected):
    """Dispatch v3 answered 4xx: the same request will be refused again. `errors` holds a 422's details."""

    def __init__(self, message: str, *, status: int, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class DispatchV3AuthError(ConfigurationError):
    """The client credentials were refused, or a fresh token was refused too."""


class DispatchV3Client:
    """One Dispatch v3 account. Thread-safe: the token is shared by the sender's worker threads."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        token_path: str = TOKEN_PATH,
        workorder_path: str = WORKORDER_PATH,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.session = session or requests.Session()
        self.timeout = timeout
        self.token_path = token_path
        self.workorder_path = workorder_path
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.clock = clock
        self.token_requests = 0
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the secret
        return f"DispatchV3Client({self.base_url!r}, client_id={self.client_id!r})"

    # -- work orders, jobs, appointments ---------------------------------------------------------

    def create_work_order(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """POST a work order; the answer holds `job_id`, `service_provider_id`, `primary_contact_id`,
        `appointment_id`."""
        return self._call("POST", self.workorder_path, document)

    def get_job(self, job_id: int | str) -> dict[str, Any]:
        return self._call("GET", f"{JOBS_PATH}/{job_id}")

    def patch_job(self, job_id: int | str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Change a job: `{"status": "unscheduled"}` accepts on behalf, `canceled`, `complete`, ..."""
        return self._call("PATCH", f"{JOBS_PATH}/{job_id}", fields)

    def create_appointment(
        self, job_id: int | str, time_iso: str, duration_s: int, status: str = "scheduled"
    ) -> dict[str, Any]:
        body = {"job_id": job_id, "time": time_iso, "duration": duration_s, "status": status}
        return self._call("POST", APPOINTMENTS_PATH, body)

    def list_page(self, what: str, **filters: Any) -> dict[str, Any]:
        """One page of `jobs` or `appointments`: `{"data", "next_offset", ...}`."""
        path = JOBS_PATH if what == "jobs" else APPOINTMENTS_PATH
        params = {key: value for key, value in filters.items() if value is not None}
        params.setdefault("limit", PAGE_LIMIT)
        return self._call("GET", path, params=params)

    def iter_list(self, what: str, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list, page by page (the pages are fetched as the caller goes)."""
        offset: int | None = 0
        while offset is not None:
            page = self.list_page(what, offset=offset, **filters)
            yield from page.get("data") or []
            next_offset = page.get("next_offset")
            offset = int(next_offset) if next_offset is not None else None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET any API path (the look-ups' search and availability endpoints: dispatch_v3/lookups.py) with the
        same token handling and retries; a list value repeats its key (`user_external_id[]=a&...`)."""
        return self._call("GET", path, params=params)

    # -- auth ------------------------------------------------------------------------------------

    def token(self, *, renew: bool = False, stale: str | None = None) -> str:
        """The cached bearer token; fetched when missing, near expiry, or when `stale` was refused."""
        with self._token_lock:
            expired = self.clock() >= self._token_expires
            if self._token is None or expired or (renew and self._token == stale):
                self._fetch_token()
            assert self._token is not None
            return self._token

    def _fetch_token(self) -> None:
        body = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        self.token_requests += 1
        response = self._send("POST", self.token_path, body, None, auth=False)
        if response.status_code in (400, 401, 403):
            raise DispatchV3AuthError(
                f"Dispatch v3 refused the client credentials (HTTP {response.status_code}): check "
                "DISPATCH_V3_CLIENT_ID and DISPATCH_V3_CLIENT_SECRET"
            )
        if response.status_code >= 400:
            raise self._rejection(response, self.token_path)
        data = _json(response)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise DispatchV3Rejected(
                "Dispatch v3 token answer has no access_token", status=response.status_code
            )
        self._token = str(token)
        lifetime = float(data.get("expires_in") or 3600)
        # renewed a minute early, or a tenth early for a short-lived token (else every call would renew it)
        self._token_expires = self.clock() + lifetime - min(TOKEN_MARGIN_S, lifetime / 10)

    # -- transport -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        token = self.token()
        response = self._send(method, path, body, params, token=token)
        if response.status_code == 401:  # expired or revoked: one new token, one more try
            token = self.token(renew=True, stale=token)
            response = self._send(method, path, body, params, token=token)
            if response.status_code == 401:
                raise DispatchV3AuthError(
                    f"Dispatch v3 refused a fresh token on {method} {path}: check that DISPATCH_V3_CLIENT_ID "
                    f"{self.client_id!r} may use this API"
                )
        if response.status_code >= 400:
            raise self._rejection(response, path)
        data = _json(response)
        return data if isinstance(data, dict) else {"data": data}

    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        *,
        token: str | None = None,
        auth: bool = True,
    ) -> requests.Response:
        url = self.base_url + path
        data = jsoncodec.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        endpoint = f"{method} {path}"

        if auth:
            headers["Authorization"] = f"Bearer {token}"
        return send_with_retries(
            lambda: self.session.request(
                method, url, data=data, params=params, headers=headers, timeout=self.timeout
            ),
            endpoint=endpoint,
            service="Dispatch v3",
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            unavailable=DispatchV3Unavailable,
        )

    def _rejection(self, response: requests.Response, path: str) -> DispatchV3Rejected:
        data = _json(response)
        raw = data.get("errors") if isinstance(data, dict) else None
        errors = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
        detail = data.get("error") if isinstance(data, dict) else None
        parts = [f"{e.get('path')}: {e.get('message')}" for e in errors]
        text = "; ".join(parts) or str(detail or response.text[:200])
        return DispatchV3Rejected(
            f"Dispatch v3 refused {path} (HTTP {response.status_code}): {text}",
            status=response.status_code,
            errors=errors,
        )


def _json(response: requests.Response) -> Any:
    try:
        return jsoncodec.loads(response.content) if response.content.strip() else {}
    except ValueError:
        return {}

"""The CRM gateway: what the connector asks of Salesforce, over simple-salesforce, with timeouts and retry.

simple-salesforce has neither retry nor timeouts, and re-logs in on INVALID_SESSION_ID only when it was
built with credentials, so the gateway always builds it with credentials and wraps the injected
`requests.Session` to apply a timeout and count every HTTP call. Failures become `CrmError`s that say
whether a retry can help; messages never carry the password, security token, client secret or session id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError
from simple_salesforce.format import format_soql
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from connector import jsoncodec
from connector.crm_children import child_tree, expand
from connector.crm_http import GatewaySession, first_error, refused
from connector.errors import ConfigurationError, ConnectorError, RemoteRejected, TransientError

__all__ = [
    "COLLECTION_LIMIT",
    "CrmAuthenticationError",
    "CrmError",
    "CrmNotFound",
    "CrmRejected",
    "CrmRequestLimitExceeded",
    "CrmUnavailable",
    "RecordError",
    "RecordResult",
    "RetryPolicy",
    "SalesforceGateway",
    "connect_salesforce",
    "format_soql",
    "login_domain",
]

COLLECTION_LIMIT = 200
RETRIABLE_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
T = TypeVar("T")


# --- errors ----------------------------------------------------------------------------------


class CrmError(ConnectorError):
    """Salesforce refused or failed a call; `error_code` is Salesforce's code when it sent one."""

    def __init__(self, message: str, *, error_code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status


class CrmAuthenticationError(CrmError, ConfigurationError):
    """Login was refused: the credentials or the connected app are wrong."""


class CrmUnavailable(CrmError, TransientError):
    """Salesforce is down, slow, or dropped the connection; `maybe_applied` if the request may have run."""

    def __init__(self, message: str, *, maybe_applied: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.maybe_applied = maybe_applied


class CrmRequestLimitExceeded(CrmUnavailable):
    """The org's API request limit is reached (REQUEST_LIMIT_EXCEEDED); back off."""


class CrmRowLocked(CrmUnavailable):
    """UNABLE_TO_LOCK_ROW on a single-record call: another transaction holds the row."""


class CrmRejected(CrmError, RemoteRejected):
    """Salesforce understood the request and refused it (bad SOQL, unknown field, validation rule...)."""


class CrmNotFound(CrmRejected):
    """The object or record does not exist."""


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordError:
    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record in a Collections call, in request order."""

    id: str | None
    success: bool
    errors: tuple[RecordError, ...] = ()
    created: bool | None = None

    @property
    def error_codes(self) -> tuple[str, ...]:
        return tuple(e.code for e in self.errors)

    @property
    def error_message(self) -> str:
        return "; ".join(f"{e.code}: {e.message}" for e in self.errors)

    @property
    def retriable(self) -> bool:
        return not self.success and bool(self.errors) and set(self.error_codes) <= RETRIABLE_RECORD_CODES

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> RecordResult:
        errors = tuple(
            RecordError(str(e.get("statusCode", "")), str(e.get("message", "")), tuple(e.get("fields") or ()))
            for e in item.get("errors") or ()
        )
        return cls(item.get("id"), bool(item.get("success")), errors, item.get("created"))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff; `sleep` is injectable so tests do not wait for real."""

    attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


# --- the gateway -------------------------------------------------------------------------------


class _Salesforce(Salesforce):
    """simple-salesforce, decoding answers with orjson: a 2,000-row query page is a cycle's biggest read."""

    def parse_result_to_json(self, result: requests.Response) -> Any:
        try:
            return jsoncodec.loads(result.content)
        except ValueError:
            return result.json()  # raises requests' JSONDecodeError, which the gateway translates


class SalesforceGateway:
    """Queries and writes against one org; every call is retried per `retry` when retrying can help."""

    def __init__(
        self,
        build: Callable[[requests.Session], Salesforce],
        session: requests.Session,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self._http = GatewaySession(session, timeout_s)
        self.retry = retry or RetryPolicy()
        self._secrets = tuple(s for s in secrets if s)
        self.retries = 0
        self._retry_lock = threading.Lock()
        self._described: dict[str, dict[str, Any]] = {}  # describe answers by object name, lower case
        self.sf: Salesforce = self._call("login", lambda: build(self._http))

    @property
    def api_calls(self) -> int:
        """REST calls made (retries and re-sent pages included; logins not)."""
        return self._http.api_calls

    @property
    def login_calls(self) -> int:
        return self._http.login_calls

    @property
    def server_time(self) -> datetime | None:
        """Salesforce's clock as of the latest response (from its Date header), if any."""
        return self._http.server_time

    # --- reads ---------------------------------------------------------------------------------

    def query_iter(self, soql: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Yield the records of a query page by page, following nextRecordsUrl; each page is retried.

        `include_deleted` reads through `queryAll`: records in the recycle bin come back with
        `IsDeleted = true`, so a deletion is seen by the same single query that sees changes.
        A child relationship subquery's result becomes a list of child rows (empty when Salesforce answers
        null), every batch of it read (a parent's children may be paged like a query)."""
        page = self._call("query", lambda: self.sf.query(soql, include_deleted=include_deleted))
        tree = child_tree(soql)
        while True:
            for row in page["records"]:
                yield expand(row, tree, self._more) if tree else row
            if page.get("done", True):
                return
            page = self._more(page["nextRecordsUrl"])

    def _more(self, next_url: str) -> dict[str, Any]:
        return dict(self._call("query", partial(self.sf.query_more, next_url, identifier_is_url=True)))

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        return list(self.query_iter(soql))

    def count(self, soql: str) -> int:
        """totalSize of a query (use with SELECT COUNT() ...)."""
        return int(self._call("query", lambda: self.sf.query(soql))["totalSize"])

    def get(self, object_name: str, record_id: str) -> dict[str, Any]:
        sobject = getattr(self.sf, object_name)
        return dict(self._call(f"get {object_name}", lambda: sobject.get(record_id)))

    def describe(self, object_name: str) -> dict[str, Any]:
        """The object's describe (its fields with type, length, createable, updateable, referenceTo,
        relationshipName), asked once per gateway: a schema changes with a deployment, not within a run.
        An object the org does not have raises CrmNotFound."""
        key = object_name.lower()
        if key not in self._described:
            path = f"sobjects/{quote(object_name, safe='')}/describe"
            answer = self._call(f"describe {object_name}", lambda: self.sf.restful(path))
            self._described[key] = dict(answer or {})
        return self._described[key]

    def version_data(self, content_version_id: str) -> bytes:
        """A Salesforce File's bytes: `GET sobjects/ContentVersion/<id>/VersionData` (binary, not JSON),
        retried like every read. A version the org does not have raises CrmNotFound naming its id."""
        path = f"sobjects/ContentVersion/{quote(content_version_id, safe='')}/VersionData"

        def fetch() -> bytes:
            return bytes(self.sf._call_salesforce("GET", self.sf.base_url + path, name=path).content)

        return self._call(f"VersionData of ContentVersion {content_version_id}", fetch)

    def limits(self) -> dict[str, Any]:
        return dict(self._call("limits", lambda: self.sf.restful("limits")) or {})

    # --- writes --------------------------------------------------------------------------------

    def update_records(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Update records (each with Id) in Collections calls of <= 200, allOrNone=False."""
        for i, rec in enumerate(records):
            if not rec.get("Id"):
                raise ValueError(f"record {i} has no Id")
        return self._collections("PATCH", object_name, records, idempotent=True)

    def create_records(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Create records in Collections calls of <= 200, allOrNone=False.

        A create whose connection dropped after sending is not re-sent (it may have run): the error says so.
        """
        return self._collections("POST", object_name, records, idempotent=False)

    def create(self, object_name: str, record: Mapping[str, Any]) -> str:
        """Create one record with `POST sobjects/<object>` (a ContentVersion's body is too big for a
        Collections call); its Id. Not re-sent when the connection dropped after sending."""
        path = f"sobjects/{quote(object_name, safe='')}"
        call = partial(self.sf.restful, path, method="POST", data=jsoncodec.dumps(dict(record)))
        answer = self._call(f"create {object_name}", call, idempotent=False)
        return str((answer or {})["id"])

    def _collections(
        self, method: str, object_name: str, records: Sequence[Mapping[str, Any]], *, idempotent: bool
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start : start + COLLECTION_LIMIT]
            results.extend(self._collection_chunk(method, object_name, chunk, idempotent))
        return results

    def _collection_chunk(
        self, method: str, object_name: str, chunk: Sequence[Mapping[str, Any]], idempotent: bool
    ) -> list[RecordResult]:
        results: list[RecordResult | None] = [None] * len(chunk)
        pending = list(range(len(chunk)))
        for attempt in range(1, self.retry.attempts + 1):
            sent = [self._as_sobject(object_name, chunk[i]) for i in pending]
            body = {"allOrNone": False, "records": sent}
            answer = self._call(
                "collections",
                partial(self.sf.restful, "composite/sobjects", method=method, data=jsoncodec.dumps(body)),
                idempotent=idempotent,
            )
            still_locked = []
            for index, item in zip(pending, answer or [], strict=False):
                result = RecordResult.from_json(item)
                results[index] = result
                if result.retriable:
                    still_locked.append(index)
            pending = still_locked
            if not pending or attempt == self.retry.attempts:
                break
            self.retry.sleep(self._backoff(attempt))
        return [r if r is not None else RecordResult(None, False) for r in results]

    @staticmethod
    def _as_sobject(object_name: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return {"attributes": {"type": object_name}, **{k: v for k, v in record.items() if k != "attributes"}}

    # --- retry and error translation ----------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry.max_s, self.retry.initial_s * (2 ** (attempt - 1))))

    def _call(self, what: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, CrmUnavailable):
                return False
            return idempotent or not exc.maybe_applied

        def attempt() -> T:
            try:
                return fn()
            except (SalesforceError, requests.RequestException) as exc:
                raise self._translate(what, exc) from None

        retrying = Retrying(
            retry=retry_if_exception(should_retry),
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.initial_s, max=self.retry.max_s),
            sleep=self.retry.sleep,
            reraise=True,
            before_sleep=self._note_retry,
        )
        return retrying(attempt)

    def _note_retry(self, state: RetryCallState) -> None:
        with self._retry_lock:
            self.retries += 1

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        sf = getattr(self, "sf", None)
        if sf is not None and getattr(sf, "session_id", None):
            text = text.replace(sf.session_id, "***")
        return text

    def _translate(self, what: str, exc: Exception) -> CrmError:
        if isinstance(exc, requests.RequestException):
            maybe_applied = not isinstance(exc, requests.ConnectTimeout) and not refused(exc)
            kind = type(exc).__name__
            return CrmUnavailable(
                f"Salesforce {what}: connection failed ({kind})", maybe_applied=maybe_applied
            )
        if isinstance(exc, SalesforceAuthenticationFailed):
            code = exc.code
            if isinstance(code, int) and code >= 500:
                return CrmUnavailable(f"Salesforce login: HTTP {code}", status=code)
            message = self._redact(f"Salesforce login refused ({code}): {exc.auth_message}")
            return CrmAuthenticationError(message, error_code=str(code))
        assert isinstance(exc, SalesforceError)
        return self._translate_status(what, exc)

    def _translate_status(self, what: str, exc: SalesforceError) -> CrmError:
        code, message = first_error(exc.content)
        text = self._redact(f"Salesforce {what}: HTTP {exc.status} {code or ''}: {message}".strip())
        kw: dict[str, Any] = {"error_code": code, "status": exc.status}
        if code == "REQUEST_LIMIT_EXCEEDED":
            return CrmRequestLimitExceeded(text, **kw)
        if code == "UNABLE_TO_LOCK_ROW":
            return CrmRowLocked(text, **kw)
        if exc.status >= 500:
            return CrmUnavailable(text, **kw)
        if exc.status == 401:
            return CrmAuthenticationError(text, **kw)
        if exc.status == 404:
            return CrmNotFound(text, **kw)
        return CrmRejected(text, **kw)


# --- factory -----------------------------------------------------------------------------------


def login_domain(instance_url: str) -> str:
    """The `domain` simple-salesforce needs to log in at `instance_url`.

    simple-salesforce builds `https://{domain}.salesforce.com/services/...`. A My Domain or login host maps to
    its prefix (`acme.my`); any other host (the emulator on 127.0.0.1:PORT) gets `host:port/services/login#`,
    so the request goes to `/services/login` and the `.salesforce.com/...` tail becomes a URL fragment, which
    is never sent. The emulator answers both SOAP and OAuth logins there.
    """
    parsed = urlparse(instance_url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ConfigurationError(f"Salesforce URL must be https://host[:port], got {instance_url!r}")
    host = parsed.hostname
    if host.endswith(".salesforce.com") and parsed.port in (None, 443):
        return host[: -len(".salesforce.com")]
    return f"{parsed.netloc}/services/login#"


def connect_salesforce(
    instance_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    security_token: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    session: requests.Session | None = None,
    api_version: str = "59.0",
    timeout_s: float = 30.0,
    retry: RetryPolicy | None = None,
) -> SalesforceGateway:
    """Log in and return a gateway. Credentials pick the flow, as in simple-salesforce:

    username + password + security_token -> SOAP login; client_id + client_secret + username + password ->
    OAuth2 password grant; client_id + client_secret alone -> OAuth2 client_credentials (My Domain only).
    """
    domain = login_domain(instance_url)
    # object_pairs_hook None: plain dicts straight from the C decoder (the default OrderedDict hook, or even
    # `dict`, is a call per JSON object: measurable on a 2,000-row query page)
    kwargs: dict[str, Any] = {"domain": domain, "version": api_version, "object_pairs_hook": None}
    if client_id and client_secret:
        kwargs.update(consumer_key=client_id, consumer_secret=client_secret)
        if username and password:
            kwargs.update(username=username, password=password + (security_token or ""))
    elif username and password is not None:
        kwargs.update(username=username, password=password, security_token=security_token or "")
    else:
        raise ConfigurationError("Salesforce credentials: give username/password or client_id/client_secret")

    def build(http: requests.Session) -> Salesforce:
        return _Salesforce(session=http, **kwargs)

    secrets = [s for s in (password, security_token, client_secret) if s]
    return SalesforceGateway(
        build, session or requests.Session(), timeout_s=timeout_s, retry=retry, secrets=secrets
    )

"""Dispatch Connect client: signed `agent/in` pushes, `agent/out` polls and `agent/ack` acknowledgements.

The byte-level recipe (HMAC over the exact body, gzip before signing, the poll and ack bodies) is written down
in docs/wire-formats.md; the emulator in `connector.sandbox.dispatch_connect` follows the same reading.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from connector import jsoncodec
from connector.dispatch_connect.canonical import csv_parts, envelopes
from connector.dispatch_connect.lean_http import LeanPoster
from connector.dispatch_connect.signing import sign
from connector.errors import ConnectorError, RemoteRejected, TransientError
from connector.retry import send_with_retries

log = logging.getLogger(__name__)

SANDBOX_URL = "https://connect-sbx.dispatch.me"
PRODUCTION_URL = "https://connect.dispatch.me"
PATH_IN = "/agent/in"
PATH_OUT = "/agent/out"
PATH_ACK = "/agent/ack"
MAX_MESSAGES_PER_POLL = 10
# zlib's default level. gzip.compress defaults to 9, which took 2.9 ms for a 200-record batch (83 KB of JSON)
# against 0.34 ms at 6, for a body 0.4% smaller: not worth it on the publisher's critical path.
GZIP_LEVEL = 6
HEADER_KEY = "X-Dispatch-Key"
HEADER_SIGNATURE = "X-Dispatch-Signature"
HEADER_MESSAGE_ID = "MessageId"
HEADER_RECORD_TYPE = "RecordType"
CSV_CONTENT_TYPE = "text/csv"


class DispatchUnavailable(TransientError):
    """Dispatch kept failing (5xx, 429 or a broken connection) after every retry."""


class DispatchRejected(RemoteRejected):
    """Dispatch answered 4xx: the same bytes will be refused again."""

    def __init__(self, message: str, *, status: int, endpoint: str) -> None:
        super().__init__(message)
        self.status = status
        self.endpoint = endpoint


class SignatureRejected(DispatchRejected):
    """401/403: the key or the HMAC signature was not accepted."""


class ReceiptRefused(DispatchRejected):
    """An ack was refused, usually because the receipt expired (the message will come back)."""


class MalformedMessage(ConnectorError):
    """An `agent/out` entry does not have the documented envelope; the message says which part is wrong."""

    def __init__(self, message: str, *, raw: Any = None) -> None:
        super().__init__(message)
        self.raw = raw


class MalformedPage(MalformedMessage):
    """Some entries of a poll page were malformed; `messages` holds the ones that parsed."""

    def __init__(self, message: str, *, messages: list[OutboundMessage], bad: list[Any]) -> None:
        super().__init__(message, raw=bad)
        self.messages = messages
        self.bad = bad


@dataclass(frozen=True)
class Action:
    """One `Payload.Actions[]` entry: `ID` (empty when Dispatch sends null) and its single `Put` key."""

    id: str
    put_type: str
    data: dict[str, Any]


def _require(obj: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, Mapping):
        raise MalformedMessage(f"{where} is not a JSON object")
    if key not in obj:
        raise MalformedMessage(f"{where} has no {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise MalformedMessage(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _parse_actions(payload: Mapping[str, Any]) -> tuple[Action, ...]:
    actions = _require(payload, "Actions", "Message.Request.Payload", list)
    out: list[Action] = []
    for index, entry in enumerate(actions):
        where = f"Payload.Actions[{index}]"
        put = _require(entry, "Put", where, dict)
        if not put:
            raise MalformedMessage(f"{where}.Put is empty")
        raw_id = entry.get("ID")
        action_id = "" if raw_id is None else str(raw_id)
        for put_type, data in put.items():
            if not isinstance(data, dict):
                raise MalformedMessage(f"{where}.Put.{put_type} is not a JSON object")
            out.append(Action(action_id, str(put_type), data))
    return tuple(out)


@dataclass(frozen=True)
class OutboundMessage:
    """One `agent/out` message. `raw` keeps the whole envelope so nothing unknown is lost."""

    id: str
    receipt: str
    procedure_id: str
    type: str
    actions: tuple[Action, ...]
    raw: dict[str, Any]

    @classmethod
    def parse(cls, raw: Any) -> OutboundMessage:
        """Parse `{"Message": {...}}`; unknown keys are kept in `raw`, missing required ones raise."""
        try:
            message = _require(raw, "Message", "entry", dict)
            request = _require(message, "Request", "Message", dict)
            payload = _require(request, "Payload", "Message.Request", dict)
            msg_type, data = request.get("Type"), payload.get("Data")
            if "Actions" not in payload and isinstance(data, dict) and isinstance(msg_type, str):
                # an inbox message: `{"Type": "inbox_message", "Payload": {"Data": {...}}}`, one action
                actions: tuple[Action, ...] = (Action("", msg_type, data),)
            else:
                actions = _parse_actions(payload)
            if msg_type is None and actions:
                msg_type = actions[0].put_type
            if not isinstance(msg_type, str):
                raise MalformedMessage("Message.Request.Type is missing or not a string")
            return cls(
                id=str(_require(message, "ID", "Message", (str, int))),
                receipt=_require(message, "Receipt", "Message", str),
                procedure_id=str(_require(request, "ProcedureID", "Message.Request", (str, int))),
                type=msg_type,
                actions=actions,
                raw=raw,
            )
        except MalformedMessage as exc:
            raise MalformedMessage(str(exc), raw=raw) from None


class DispatchConnectClient:
    """Talks to one Dispatch Connect account. Thread-safe as far as the `requests.Session` is.

    Every call retries connection errors, 5xx and 429 with exponential backoff, resending the same bytes
    (and, for `agent/in`, the same MessageId) so a retry is indistinguishable from the first attempt.
    """

    def __init__(
        self,
        base_url: str,
        public_key: str,
        secret_hex: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        gzip_body: bool = True,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_key = public_key
        self._secret_hex = secret_hex
        self.session = session or requests.Session()
        self.timeout = timeout
        self.gzip_body = gzip_body
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self._lean = LeanPoster(self.session)
        sign(secret_hex, b"")  # fail fast on a secret that is not hex

    def __repr__(self) -> str:  # never show the secret
        return f"DispatchConnectClient({self.base_url!r}, {self.public_key!r})"

    # -- public API ------------------------------------------------------------------------------

    def send_records(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        message_id: str,
        record_type_header: str | None = None,
        encoding: str = "json",
    ) -> None:
        """POST one change set to `agent/in`.

        `records` items are built records (`{"record_type": "job", "record": {...}}` with optional `version`,
        `header`, `attachment`, `identity`; canonical.envelope). As JSON they go as one canonical array in
        the given order. As CSV (`encoding="csv"`, a first load) each run of one record type is one
        text/csv request, in the batch's order, all under the batch's MessageId; a failed request fails
        the batch, whose retry re-sends every part (Dispatch upserts, so a repeated part changes nothing).
        200 means Dispatch received the batch, not that it applied it: watch for `ack`/`err` events whose
        `msg_id` equals `message_id`.
        """
        headers = {HEADER_MESSAGE_ID: message_id}
        if record_type_header:
            headers[HEADER_RECORD_TYPE] = record_type_header
        if encoding == "csv":
            for part in csv_parts(records):
                if part.csv is not None:
                    csv_headers = {**headers, "Content-Type": CSV_CONTENT_TYPE}
                    self._post(PATH_IN, part.csv.encode(), headers=csv_headers, compress=self.gzip_body)
                else:
                    self._post(PATH_IN, jsoncodec.dumps(part.json), headers=headers, compress=self.gzip_body)
            return
        if encoding != "json":
            raise ValueError(f"unknown agent/in encoding {encoding!r} (json, csv)")
        body = jsoncodec.dumps(envelopes(records))
        self._post(PATH_IN, body, headers=headers, compress=self.gzip_body)

    def poll(self, max_messages: int = MAX_MESSAGES_PER_POLL) -> list[OutboundMessage]:
        """One `agent/out` page (at most 10). Poll again while a full page comes back."""
        n = max(1, min(int(max_messages), MAX_MESSAGES_PER_POLL))
        body = jsoncodec.dumps({"maxNumberOfMessages": n})
        response = self._post(PATH_OUT, body, lean=True)
        try:
            data = response.json() if response.content.strip() else []
        except ValueError:
            raise MalformedMessage("agent/out answered with a body that is not JSON") from None
        if data is None:
            data = []
        if not isinstance(data, list):
            raise MalformedMessage("agent/out answered with JSON that is not an array", raw=data)
        messages: list[OutboundMessage] = []
        bad: list[Any] = []
        problems: list[str] = []
        for entry in data:
            try:
                messages.append(OutboundMessage.parse(entry))
            except MalformedMessage as exc:
                bad.append(entry)
                problems.append(str(exc))
        if bad:
            raise MalformedPage(
                f"{len(bad)} of {len(data)} agent/out messages are malformed: {'; '.join(problems)}",
                messages=messages,
                bad=bad,
            )
        return messages

    def ack(self, receipt: str, procedure_id: str, *, error: str | None = None) -> None:
        """Remove a message from the queue. `error` uses the older `"Result": "error"` variant."""
        payload: dict[str, str] = {"Receipt": receipt, "ProcedureID": procedure_id}
        if error is None:
            payload["Result"] = "success"
        else:
            payload["Result"] = "error"
            payload["Error"] = error
        body = jsoncodec.dumps(payload)
        self._post(PATH_ACK, body, lean=True)

    # -- transport -------------------------------------------------------------------------------

    def _headers(self, body: bytes, extra: Mapping[str, str] | None, compressed: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            HEADER_KEY: self.public_key,
            HEADER_SIGNATURE: sign(self._secret_hex, body),
        }
        if compressed:
            headers["Content-Encoding"] = "gzip"
        headers.update(extra or {})
        return headers

    def _post(
        self,
        path: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        compress: bool = False,
        lean: bool = False,
    ) -> requests.Response:
        """`lean`: a small POST of the pull channel, sent without the Session's per-call work (about 1,200
        of them confirm 1,000 published records; connector.dispatch_connect.lean_http)."""
        wire = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0) if compress else body
        all_headers = self._headers(wire, headers, compress)
        url = self.base_url + path
        endpoint = path.lstrip("/")
        if self._lean.session is not self.session:  # the session was swapped after construction
            self._lean = LeanPoster(self.session)
        send = self._lean.post if lean else self._session_post

        response = send_with_retries(
            lambda: send(url, wire, all_headers, self.timeout),
            endpoint=endpoint,
            service="Dispatch",
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            unavailable=DispatchUnavailable,
        )
        if response.status_code >= 400:
            raise self._rejection(response, endpoint)
        return response

    def _session_post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> requests.Response:
        return self.session.post(url, data=body, headers=headers, timeout=timeout)

    def _rejection(self, response: requests.Response, endpoint: str) -> DispatchRejected:
        status = response.status_code
        detail = _error_detail(response)
        if status in (401, 403):
            return SignatureRejected(
                f"Dispatch rejected the signature on {endpoint} (HTTP {status}): check DISPATCH_SECRET "
                f"and that DISPATCH_PUBLIC_KEY {self.public_key!r} belongs to it. {detail}".strip(),
                status=status,
                endpoint=endpoint,
            )
        if endpoint == PATH_ACK.lstrip("/"):
            return ReceiptRefused(
                f"Dispatch refused the ack (HTTP {status}); the message will be delivered again. {detail}",
                status=status,
                endpoint=endpoint,
            )
        return DispatchRejected(
            f"Dispatch refused {endpoint} (HTTP {status}). {detail}".strip(),
            status=status,
            endpoint=endpoint,
        )


def _error_detail(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, Mapping) and "error" in data:
        return str(data["error"])[:200]
    return str(data)[:200]

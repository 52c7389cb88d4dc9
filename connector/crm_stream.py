"""Salesforce Change Data Capture over the Streaming API: a small synchronous Bayeux (CometD) client.

Change events come on `/data/<Object>ChangeEvent` at `<instance>/cometd/<api version>`, by long polling
with plain HTTPS + JSON and the session the gateway already holds (docs/wire-formats.md, "Salesforce change
events (CDC)", says why this and not the Pub/Sub API, and why not aiosfstream-ng). `poll` is one long-poll
round, so the caller owns the thread and the pace.

Nothing is lost across reconnects: the stream remembers the replay id of the last event it returned per
channel, and every (re-)subscription asks Salesforce for the events after it. A poll whose answer may have
been lost (a read timeout, a malformed event) forgets the client, so the next poll re-subscribes from there.
Messages never carry the session id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import requests

from connector.crm import CrmError

if TYPE_CHECKING:
    from connector.crm import SalesforceGateway

__all__ = [
    "AllocationExhausted",
    "ChangeEvent",
    "ChangeStream",
    "ReplayIdTooOld",
    "StreamError",
    "StreamUnavailable",
    "channel_for",
]

NEW_EVENTS = -1
ALL_RETAINED = -2
_CONNECT_MARGIN_S = 15.0  # a long poll answers at its timeout; allow the network this much more


@dataclass(frozen=True)
class ChangeEvent:
    channel: str
    replay_id: int
    entity: str  # "WorkOrder"
    change_type: str  # CREATE|UPDATE|DELETE|UNDELETE|GAP_CREATE|...|GAP_OVERFLOW
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    commit_timestamp: datetime  # UTC
    commit_user: str | None

    @property
    def gap(self) -> bool:
        """Salesforce could not build the event (or dropped it): re-read the records, the body is empty."""
        return self.change_type.startswith("GAP_")


class StreamError(CrmError):
    """The change-event stream failed; the message says what Salesforce answered."""

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status: int | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message, error_code=error_code, status=status)
        if retriable is not None:
            self.retriable = retriable


class ReplayIdTooOld(StreamError):
    """The stored replay id is outside the retention window: events after it are gone, resynchronize."""


class AllocationExhausted(StreamError):
    """The org's daily event delivery allocation is used up; events resume when it renews."""

    retriable = True


class StreamUnavailable(StreamError):
    """Cannot handshake or subscribe: streaming off, channel unknown (CDC not enabled), or an outage."""


def channel_for(object_name: str) -> str:
    """`WorkOrder` -> `/data/WorkOrderChangeEvent`; custom `Foo__c` -> `/data/Foo__ChangeEvent`."""
    base = object_name[:-1] if object_name.lower().endswith("__c") else object_name
    return f"/data/{base}ChangeEvent"


def _object_of(channel: str) -> str:
    name = channel.removeprefix("/data/").removesuffix("ChangeEvent")
    return name + "c" if name.endswith("__") else name


class _Reconnect(Exception):
    """Internal: the server forgot the client (`403::Unknown client`) or the session (`401::...`)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.auth = error.startswith("401")


class ChangeStream:
    """Change events of some channels, resumed after the replay ids given (None: new events only)."""

    def __init__(self, crm: SalesforceGateway, replay: Mapping[str, int | None], *, timeout_s: float = 110.0):
        if not replay:
            raise ValueError("ChangeStream needs at least one channel")
        self._crm = crm
        self._last: dict[str, int | None] = dict(replay)
        self._timeout_s = timeout_s
        self._http = _stream_session(crm)
        self._client_id: str | None = None
        self._since: dict[str, datetime | None] = {}  # per channel, Salesforce's time when first subscribed
        self._server_time: datetime | None = None  # from the latest answer's Date header
        self._seq = 0
        self._closed = False

    # --- public --------------------------------------------------------------------------------

    def poll(self, max_wait_s: float) -> list[ChangeEvent]:
        """One long-poll round: the events Salesforce has now, or within `max_wait_s` ([] when none)."""
        if self._closed:
            raise StreamError("Salesforce change events: the stream is closed")
        recovered: set[str] = set()
        while True:
            try:
                if self._client_id is None:
                    self._open()
                return self._connect(max_wait_s)
            except _Reconnect as exc:
                self._client_id = None
                kind = "auth" if exc.auth else "client"
                if kind in recovered:
                    raise StreamUnavailable(
                        f"Salesforce change events: {exc} again right after re-connecting; "
                        "giving up this poll",
                        retriable=True,
                    ) from None
                recovered.add(kind)
                if exc.auth:
                    self._refresh_session()

    def close(self) -> None:
        """Disconnect (best effort: a server that already forgot the client is no error)."""
        if self._client_id is not None and not self._closed:
            with contextlib.suppress(StreamError, _Reconnect):
                self._send([{"channel": "/meta/disconnect", "clientId": self._client_id}], 10.0)
        self._client_id = None
        self._closed = True
        self._http.close()

    @property
    def replay_ids(self) -> dict[str, int | None]:
        """Per channel, the replay id of the last event returned (what to store to resume after)."""
        return dict(self._last)

    # --- Bayeux ----------------------------------------------------------------------------------

    def _open(self) -> None:
        answer = self._send(
            [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}],
            30.0,
        )[0]
        if not answer.get("successful"):
            reason = str(((answer.get("ext") or {}).get("sfdc") or {}).get("failureReason") or "")
            if reason.startswith("401"):
                raise _Reconnect(reason)
            raise StreamUnavailable(
                f"Salesforce change events: handshake refused: {answer.get('error')} {reason}".strip(),
                retriable=True,
            )
        client_id = str(answer["clientId"])
        subscribes = [
            {
                "channel": "/meta/subscribe",
                "clientId": client_id,
                "subscription": channel,
                "ext": {"replay": {channel: self._resume_from(channel)}},
            }
            for channel in self._last
        ]
        for reply in self._send(subscribes, 30.0):
            if reply.get("channel") == "/meta/subscribe" and not reply.get("successful"):
                self._subscribe_failed(str(reply.get("subscription", "")), str(reply.get("error", "")))
        for channel in self._last:
            self._since.setdefault(channel, self._server_time)
        self._client_id = client_id

    def _resume_from(self, channel: str) -> int:
        """After the last event returned; with none yet, new events only the first time, and every retained
        event after that (the ones older than the first subscription are dropped by `_connect`): a
        re-subscription with -1 would lose what happened while the client was away."""
        last = self._last[channel]
        if last is not None:
            return last
        return NEW_EVENTS if channel not in self._since else ALL_RETAINED

    def _subscribe_failed(self, channel: str, error: str) -> None:
        if error.startswith(("403::Unknown client", "401")):
            raise _Reconnect(error)
        last = self._last.get(channel)
        if "replayId" in error and "invalid" in error:
            raise ReplayIdTooOld(
                f"Salesforce change events on {channel}: the stored replay id {last} is outside the "
                f"retention window (Salesforce: {error}); the changes after it are lost: resynchronize "
                f"{_object_of(channel)} by a full poll, then stream again from new events (replay None)",
                error_code="INVALID_REPLAY_ID",
            )
        if "does not exist" in error:
            name = _object_of(channel)
            raise StreamUnavailable(
                f"Salesforce change events: channel {channel} does not exist, so Change Data Capture is not "
                f"enabled for {name}; enable it in Setup > Integrations > Change Data Capture (add {name} to "
                f"Selected Entities), or stop streaming {name} (Salesforce: {error})",
                error_code="UNKNOWN_CHANNEL",
                retriable=False,
            )
        raise StreamUnavailable(
            f"Salesforce change events: subscribing to {channel} refused: {error}", retriable=True
        )

    def _connect(self, max_wait_s: float) -> list[ChangeEvent]:
        wait_s = max(0.0, min(max_wait_s, self._timeout_s))
        message = {
            "channel": "/meta/connect",
            "clientId": self._client_id,
            "connectionType": "long-polling",
            "advice": {"timeout": int(wait_s * 1000)},  # CometD servers honour a client's shorter timeout
        }
        try:
            replies = self._send([message], wait_s + _CONNECT_MARGIN_S, long_poll=True)
        except requests.ReadTimeout:
            self._client_id = None  # an answer may be lost in flight: resume from the last replay id
            return []
        events: list[ChangeEvent] = []
        for reply in replies:
            channel = str(reply.get("channel", ""))
            if channel == "/meta/connect":
                if not reply.get("successful"):
                    self._connect_failed(str(reply.get("error", "")))
            elif channel in self._last:
                event = self._event(channel, reply)
                since = self._since.get(channel) if self._last[channel] is None else None
                if since is None or event.commit_timestamp >= since:
                    events.append(event)
        for event in events:
            self._last[event.channel] = event.replay_id
        return events

    def _connect_failed(self, error: str) -> None:
        self._client_id = None
        if error.startswith(("403::Unknown client", "401")):
            raise _Reconnect(error)
        if "daily limit exceeded" in error:
            raise AllocationExhausted(
                "Salesforce change events: the org's daily event delivery allocation is used up "
                f"(Salesforce: {error}); streaming resumes after replay ids {self._positions()} when it "
                "renews; until then only the polling cycle sees changes",
                error_code="DAILY_LIMIT_EXCEEDED",
            )
        raise StreamUnavailable(f"Salesforce change events: connect refused: {error}", retriable=True)

    def _event(self, channel: str, message: Mapping[str, Any]) -> ChangeEvent:
        try:
            data = message["data"]
            header = data["payload"]["ChangeEventHeader"]
            return ChangeEvent(
                channel=channel,
                replay_id=int(data["event"]["replayId"]),
                entity=str(header["entityName"]),
                change_type=str(header["changeType"]),
                record_ids=tuple(str(r) for r in header.get("recordIds") or ()),
                changed_fields=tuple(str(f) for f in header.get("changedFields") or ()),
                commit_timestamp=datetime.fromtimestamp(int(header["commitTimestamp"]) / 1000, UTC),
                commit_user=header.get("commitUser") or None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            self._client_id = None  # the events of this answer were not returned: replay them next poll
            missing = exc.args[0] if exc.args else exc
            raise StreamError(
                f"Salesforce change events on {channel}: an event without {missing} (expected "
                "data.event.replayId and data.payload.ChangeEventHeader with entityName, changeType and "
                "commitTimestamp)"
            ) from None

    # --- transport -------------------------------------------------------------------------------

    def _send(
        self, messages: list[dict[str, Any]], timeout_s: float, *, long_poll: bool = False
    ) -> list[dict[str, Any]]:
        """POST a batch; a long poll's read timeout is re-raised (the caller resumes); others are errors."""
        for message in messages:
            self._seq += 1
            message["id"] = str(self._seq)
        sf = self._crm.sf
        url = f"https://{sf.sf_instance}/cometd/{sf.sf_version}"
        kind = str(messages[0]["channel"]).rsplit("/", 1)[-1]
        headers = {"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"}
        try:
            response = self._http.post(url, json=messages, headers=headers, timeout=(10.0, timeout_s))
        except requests.RequestException as exc:
            if long_poll and isinstance(exc, requests.ReadTimeout):
                raise
            self._client_id = None
            raise StreamUnavailable(
                f"Salesforce change events: {kind} failed: connection failed ({type(exc).__name__})",
                retriable=True,
            ) from None
        if response.status_code == 401:
            raise _Reconnect("401::Authentication invalid (HTTP 401)")
        if response.status_code != 200:
            self._client_id = None
            raise StreamUnavailable(
                f"Salesforce change events: {kind} answered HTTP {response.status_code}: "
                f"{self._excerpt(response)}",
                status=response.status_code,
                retriable=response.status_code >= 500 or response.status_code == 429,
            )
        try:
            body = response.json()
        except ValueError:
            raise StreamUnavailable(
                f"Salesforce change events: {kind} answered something else than JSON: "
                f"{self._excerpt(response)}",
                retriable=True,
            ) from None
        self._server_time = _date_header(response) or self._server_time
        replies = body if isinstance(body, list) else [body]
        return [r for r in replies if isinstance(r, dict)] or [{"successful": False, "error": "empty answer"}]

    def _excerpt(self, response: requests.Response) -> str:
        text = response.text[:200]
        token = self._crm.sf.session_id
        return text.replace(token, "***") if token else text

    def _refresh_session(self) -> None:
        """Log in again, as simple-salesforce does itself on INVALID_SESSION_ID: the gateway's REST calls
        get the new session too."""
        try:
            self._crm.sf._refresh_session()
        except Exception as exc:  # simple-salesforce raises its own errors and requests' ones
            raise StreamUnavailable(
                "Salesforce change events: the session expired and logging in again failed "
                f"({type(exc).__name__})",
                retriable=False,
            ) from None

    def _positions(self) -> str:
        return ", ".join(f"{channel}={last}" for channel, last in self._last.items())


def _date_header(response: requests.Response) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(response.headers["Date"])
    except (KeyError, TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stream_session(crm: SalesforceGateway) -> requests.Session:
    """A session of its own (a long poll holds a connection; Salesforce pins the client by cookie), trusting
    what the gateway's session trusts and going through the same proxies."""
    base: requests.Session = getattr(crm.sf.session, "inner", crm.sf.session)
    session = requests.Session()
    session.trust_env = base.trust_env
    session.verify = base.verify
    session.cert = base.cert
    session.proxies = dict(base.proxies)
    return session

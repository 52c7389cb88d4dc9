"""The Streaming API of the Salesforce emulator: CometD/Bayeux long polling at `/cometd/<version>`, carrying
Change Data Capture events on `/data/<Object>ChangeEvent` (custom `Foo__c`: `/data/Foo__ChangeEvent`).

Why an emulator speaks Bayeux at all: the connector's change-event client must be tested over a real socket
against the answers Salesforce really gives (the replay extension, `403::Unknown client`, the invalid
replay id and daily-allocation errors), not against a mock of its own making. Error texts are Salesforce's
documented ones (Streaming API Error Codes, API 59.0). Replay ids increase per org; events are kept for a
retention window measured by the store's clock, so a test moves the clock instead of sleeping. Streaming
requests are counted apart from REST calls (`streaming_<kind>`): in Salesforce they do not count against
the API limit.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import secrets
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from connector.sandbox.salesforce.schema import ObjectDef, to_wire
from connector.sandbox.salesforce.store import SalesforceStore
from connector.sandbox.server import Faults, apply_faults

UNKNOWN_CLIENT = "403::Unknown client"
DAILY_LIMIT_EXCEEDED = "403::Organization total events daily limit exceeded"
AUTH_INVALID = "401::Authentication invalid"
HANDSHAKE_DENIED = "403::Handshake denied"
DEFAULT_RETENTION_S = 72 * 3600
DEFAULT_DAILY_ALLOCATION = 50_000
_NOT_IN_BODY = frozenset({"Id", "IsDeleted", "SystemModstamp"})
_NO_CHANGES: Mapping[str, Any] = {}
_AUDIT = frozenset({"LastModifiedDate", "LastModifiedById", "SystemModstamp"})


def invalid_replay_id(replay_id: int) -> str:
    return (
        f"400::The replayId {{{replay_id}}} you provided was invalid. Please provide a valid ID, "
        "-2 to replay all events, or -1 to replay only new events."
    )


def unknown_channel(channel: str) -> str:
    return f"400::The channel you requested to subscribe to does not exist {{{channel}}}"


@functools.lru_cache(maxsize=256)
def change_channel(object_name: str) -> str:
    """`WorkOrder` -> `/data/WorkOrderChangeEvent`; `Foo__c` -> `/data/Foo__ChangeEvent`."""
    base = object_name[:-1] if object_name.lower().endswith("__c") else object_name
    return f"/data/{base}ChangeEvent"


@dataclass(slots=True)
class _Event:
    """What a change committed, kept compact (a benchmark writes 100k work orders): the wire message is
    built when the event is delivered."""

    replay_id: int
    channel: str
    committed: datetime
    change_type: str
    odef: ObjectDef
    record_id: str
    values: Mapping[str, Any]  # an update's changes; a create's or undelete's record as a tuple, by slot
    snapshot: tuple[Any, ...]
    user_id: str | None
    origin: str
    commit_number: int
    gap: bool | None  # None: a real event; False: GAP_<type>; True: GAP_OVERFLOW


@dataclass
class _Client:
    user_id: str
    subscriptions: dict[str, int] = field(default_factory=dict)  # channel -> last replay id delivered


class StreamingHub:
    """The org's change events and its Bayeux clients, behind one condition (a connect waits on it)."""

    def __init__(
        self,
        store: SalesforceStore,
        *,
        api_version: str,
        faults: Faults,
        retention_s: float = DEFAULT_RETENTION_S,
        daily_event_allocation: int = DEFAULT_DAILY_ALLOCATION,
        connect_timeout_s: float = 110.0,
    ) -> None:
        self.store = store
        self.api_version = api_version
        self.faults = faults
        self.retention_s = retention_s
        self.daily_event_allocation = daily_event_allocation
        self.connect_timeout_s = connect_timeout_s
        self.counts: Counter[str] = Counter()
        self.delivered_today = 0
        self._day: date | None = None
        self._events: deque[_Event] = deque()
        self._last_replay = 0
        self._floor = 0  # the newest replay id no longer retained: resuming after it loses nothing
        self._commit = 7_000_000
        self._clients: dict[str, _Client] = {}
        self._gaps: list[bool] = []  # pending injected gaps (True: GAP_OVERFLOW)
        self._cond = threading.Condition(threading.RLock())
        self._origin = threading.local()
        self._closed = False

    # --- configuration and faults ----------------------------------------------------------

    def enable(self, object_name: str) -> str:
        """Select an object for Change Data Capture (Setup > Change Data Capture); its channel."""
        odef = self.store.require_object(object_name)
        self.store.cdc_enabled.add(odef.name.lower())
        return change_channel(odef.name)

    def enabled_object(self, channel: str) -> ObjectDef | None:
        for name in self.store.cdc_enabled:
            odef = self.store.object(name, required=False)
            if odef is not None and change_channel(odef.name) == channel:
                return odef
        return None

    def inject_gaps(self, count: int = 1, *, overflow: bool = False) -> None:
        """The next `count` changes are published as gap events (header and record ids only)."""
        with self._cond:
            self._gaps.extend([overflow] * count)

    def drop_clients(self) -> int:
        """Forget every client, as after a server-side timeout: a next connect gets `403::Unknown client`."""
        with self._cond:
            n = len(self._clients)
            self._clients.clear()
            self._cond.notify_all()
            return n

    def set_allocation(self, maximum: int, used: int | None = None) -> None:
        with self._cond:
            self._roll_day()
            self.daily_event_allocation = maximum
            if used is not None:
                self.delivered_today = used

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @contextlib.contextmanager
    def acting(self, user_id: str, origin: str) -> Iterator[None]:
        """Changes made inside are committed by `user_id` (when the store call does not name one, as a
        Collections delete) and carry `origin` as their changeOrigin (REST: com/salesforce/api/rest/NN.N)."""
        self._origin.user, self._origin.value = user_id, origin
        try:
            yield
        finally:
            self._origin.user, self._origin.value = None, ""

    # --- publishing (the store's hook, called under the store's lock) ---------------------------

    def publish(
        self,
        change_type: str,
        odef: ObjectDef,
        rec: list[Any],
        changes: Mapping[str, Any],
        user_id: str | None,
    ) -> None:
        """The store's hook, under the store's lock, for objects selected for CDC."""
        now = self.store.clock()
        snapshot = tuple(rec) if change_type in {"CREATE", "UNDELETE"} else ()
        with self._cond:
            self._last_replay += 1
            self._commit += 1
            event = _Event(
                self._last_replay,
                change_channel(odef.name),
                now,
                change_type,
                odef,
                str(rec[0]),
                changes or _NO_CHANGES,
                snapshot,
                user_id or getattr(self._origin, "user", None),
                getattr(self._origin, "value", ""),
                self._commit,
                self._gaps.pop(0) if self._gaps else None,
            )
            self._events.append(event)
            self._cond.notify_all()

    def _message(self, event: _Event) -> dict[str, Any]:
        header: dict[str, Any] = {
            "entityName": event.odef.name,
            "recordIds": [event.record_id],
            "changeType": event.change_type,
            "changeOrigin": event.origin,
            "transactionKey": hashlib.md5(f"{event.commit_number}".encode()).hexdigest(),
            "sequenceNumber": 1,
            "commitTimestamp": int(event.committed.timestamp() * 1000),
            "commitNumber": event.commit_number,
            "commitUser": event.user_id,
            "changedFields": [],
            "nulledFields": [],
            "diffFields": [],
        }
        body = self._body(event, header)
        if event.gap is not None:
            header["changeType"] = "GAP_OVERFLOW" if event.gap else f"GAP_{event.change_type}"
            header.update(changedFields=[], nulledFields=[], changeOrigin="")
            body = {}
        return {
            "channel": event.channel,
            "data": {
                "schema": _schema_id(event.odef),
                "payload": {"ChangeEventHeader": header, **body},
                "event": {"replayId": event.replay_id},
            },
        }

    @staticmethod
    def _body(event: _Event, header: dict[str, Any]) -> dict[str, Any]:
        """Create/undelete: every non-empty field; update: the changed fields and LastModifiedDate (and
        LastModifiedById when it changed); delete: nothing."""
        if event.change_type == "DELETE":
            return {}
        values = event.values
        if event.change_type == "UPDATE":
            changed = sorted(k for k in values if k not in _AUDIT or k == "LastModifiedById")
            header["changedFields"] = [*changed, "LastModifiedDate"]
            header["nulledFields"] = sorted(k for k in changed if values[k] is None)
            body = {k: to_wire(values[k]) for k in changed}
            body["LastModifiedDate"] = to_wire(values.get("LastModifiedDate"))
            return body
        return {
            name: to_wire(value)
            for name, value in zip(event.odef.fields, event.snapshot, strict=False)
            if value is not None and name not in _NOT_IN_BODY
        }

    # --- the Bayeux endpoint -----------------------------------------------------------------

    def handle(self, request: Request, user_id: str | None) -> Response:
        """POST /cometd/<version>: a JSON message or array of messages; answers an array."""
        version = request.path.rstrip("/").rsplit("/", 1)[-1]
        if request.path.rstrip("/") == "/cometd" or not _is_version(version):
            text = f"API version in the URI is mandatory. URI format: '/cometd/{self.api_version}'"
            return _json({"error": f"400::{text}"}, 400)
        if float(version) < 37.0:
            text = f"Unsupported API version. Only API versions '37.0' and later are supported. URI format: '/cometd/{self.api_version}'"  # noqa: E501
            return _json({"error": f"400::{text}"}, 400)
        try:
            raw = json.loads(request.get_data() or b"[]")
        except json.JSONDecodeError:
            return _json({"error": "400::Invalid JSON"}, 400)
        messages = raw if isinstance(raw, list) else [raw]
        kinds = [str(m.get("channel", "")).rsplit("/", 1)[-1] for m in messages if isinstance(m, Mapping)]
        kind = kinds[0] if kinds else "unknown"
        self.counts.update(f"streaming_{k}" for k in kinds)  # per message: a client may batch several
        status = apply_faults(self.faults, f"streaming_{kind}", request.environ)
        if status is not None:
            return _json([{"error": f"{status}::Service temporarily unavailable (injected)"}], status)
        replies: list[dict[str, Any]] = []
        for message in messages:
            if isinstance(message, Mapping):
                replies.extend(self._answer(message, user_id))
        response = _json(replies)
        if kind == "handshake":
            response.set_cookie("BAYEUX_BROWSER", secrets.token_hex(8), path="/cometd", secure=True)
        return response

    def _answer(self, message: Mapping[str, Any], user_id: str | None) -> list[dict[str, Any]]:
        channel = str(message.get("channel", ""))
        reply: dict[str, Any] = {"channel": channel, "id": message.get("id")}
        if channel == "/meta/handshake":
            return [self._handshake(reply, user_id)]
        client_id = str(message.get("clientId", ""))
        reply["clientId"] = client_id
        if user_id is None:
            return [{**reply, "successful": False, "error": AUTH_INVALID, "advice": _advice("none")}]
        with self._cond:
            client = self._clients.get(client_id)
        if client is None:
            return [{**reply, "successful": False, "error": UNKNOWN_CLIENT, "advice": _advice("handshake")}]
        if channel == "/meta/connect":
            return self._connect(message, reply, client_id, client)
        if channel == "/meta/subscribe":
            return [self._subscribe(message, reply, client)]
        if channel == "/meta/unsubscribe":
            with self._cond:
                client.subscriptions.pop(str(message.get("subscription", "")), None)
            return [{**reply, "subscription": message.get("subscription"), "successful": True}]
        if channel == "/meta/disconnect":
            with self._cond:
                self._clients.pop(client_id, None)
            return [{**reply, "successful": True}]
        return [{**reply, "successful": False, "error": f"400::Unknown channel {channel}"}]

    def _handshake(self, reply: dict[str, Any], user_id: str | None) -> dict[str, Any]:
        if user_id is None:
            return {
                **reply,
                "successful": False,
                "error": HANDSHAKE_DENIED,
                "ext": {"sfdc": {"failureReason": AUTH_INVALID}},
                "advice": {"reconnect": "none"},
            }
        client_id = secrets.token_urlsafe(18)
        with self._cond:
            self._clients[client_id] = _Client(user_id)
        return {
            **reply,
            "clientId": client_id,
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "successful": True,
            "advice": self._connect_advice(),
            "ext": {"replay": True, "payload.format": True},
        }

    def _subscribe(
        self, message: Mapping[str, Any], reply: dict[str, Any], client: _Client
    ) -> dict[str, Any]:
        channel = str(message.get("subscription", ""))
        reply["subscription"] = channel
        if not channel:
            return {**reply, "successful": False, "error": "400::Channel name not specified"}
        if not channel.startswith("/"):
            return {
                **reply,
                "successful": False,
                "error": "400::Channel subscriptions must start with a leading '/'",
            }
        if self.enabled_object(channel) is None:
            return {**reply, "successful": False, "error": unknown_channel(channel)}
        replay = ((message.get("ext") or {}).get("replay") or {}).get(channel, -1)
        with self._cond:
            self._prune()
            if replay == -1:
                cursor = self._last_replay
            elif replay == -2:
                cursor = self._floor
            elif isinstance(replay, int) and self._floor <= replay <= self._last_replay:
                cursor = replay
            else:
                return {**reply, "successful": False, "error": invalid_replay_id(replay)}
            client.subscriptions[channel] = cursor
        return {**reply, "successful": True, "ext": {"replay": {channel: replay}}}

    def _connect(
        self, message: Mapping[str, Any], reply: dict[str, Any], client_id: str, client: _Client
    ) -> list[dict[str, Any]]:
        """Answer as soon as events exist, or when the timeout (the server's, or a shorter one the client
        asks for in `advice.timeout`) passes; a dropped client or a closing server ends the wait."""
        timeout_s = self.connect_timeout_s
        asked = (message.get("advice") or {}).get("timeout")
        if isinstance(asked, int | float) and asked >= 0:
            timeout_s = min(timeout_s, asked / 1000)
        with self._cond:

            def known() -> bool:
                return self._clients.get(client_id) is client

            self._cond.wait_for(
                lambda: self._closed or not known() or bool(self._pending(client)), timeout=timeout_s
            )
            if not known():
                return [
                    {**reply, "successful": False, "error": UNKNOWN_CLIENT, "advice": _advice("handshake")}
                ]
            self._roll_day()
            if self.delivered_today >= self.daily_event_allocation:
                return [
                    {**reply, "successful": False, "error": DAILY_LIMIT_EXCEEDED, "advice": _advice("none")}
                ]
            events = self._pending(client)[: self.daily_event_allocation - self.delivered_today]
            for event in events:
                client.subscriptions[event.channel] = event.replay_id
            self.delivered_today += len(events)
            self.counts["streaming_events_delivered"] += len(events)
        messages = [self._message(e) for e in events]
        return [*messages, {**reply, "successful": True, "advice": self._connect_advice()}]

    def _pending(self, client: _Client) -> list[_Event]:
        self._prune()
        subs = client.subscriptions
        return [e for e in self._events if e.channel in subs and e.replay_id > subs[e.channel]]

    def _prune(self) -> None:
        horizon = self.store.clock() - timedelta(seconds=self.retention_s)
        while self._events and self._events[0].committed < horizon:
            self._floor = self._events.popleft().replay_id

    def _roll_day(self) -> None:
        today = self.store.clock().date()
        if today != self._day:
            self._day, self.delivered_today = today, 0

    def _connect_advice(self) -> dict[str, Any]:
        return {"reconnect": "retry", "interval": 0, "timeout": int(self.connect_timeout_s * 1000)}

    # --- control API (/control/streaming/...) ------------------------------------------------

    def control(self, method: str, parts: list[str], body: Mapping[str, Any]) -> Response:
        head = parts[0] if parts else ""
        if head == "enable" and method == "POST":
            return _json({"channel": self.enable(str(body["object"]))})
        if head == "gaps" and method == "POST":
            self.inject_gaps(int(body.get("count", 1)), overflow=bool(body.get("overflow", False)))
            return _json({"pending_gaps": len(self._gaps)})
        if head == "drop_clients" and method == "POST":
            return _json({"dropped": self.drop_clients()})
        if head == "allocation" and method == "POST":
            used = body.get("used")
            self.set_allocation(int(body["max"]), None if used is None else int(used))
            return _json({"max": self.daily_event_allocation, "used": self.delivered_today})
        if head == "retention" and method == "POST":
            self.retention_s = float(body["seconds"])
            return _json({"retention_s": self.retention_s})
        if head == "" and method == "GET":
            return _json(self.status())
        return _json([{"message": "unknown streaming control path", "errorCode": "NOT_FOUND"}], 404)

    def status(self) -> dict[str, Any]:
        with self._cond:
            self._prune()
            return {
                "enabled": sorted(self.store.cdc_enabled),
                "last_replay_id": self._last_replay,
                "retained": len(self._events),
                "oldest_resumable_replay_id": self._floor,
                "clients": len(self._clients),
                "delivered_today": self.delivered_today,
                "daily_event_allocation": self.daily_event_allocation,
            }


def _advice(reconnect: str) -> dict[str, Any]:
    return {"reconnect": reconnect, "interval": 0}


def _is_version(text: str) -> bool:
    head, dot, tail = text.partition(".")
    return bool(dot) and head.isdigit() and tail.isdigit()


@functools.lru_cache(maxsize=256)
def _schema_hash(names: tuple[str, ...]) -> str:
    digest = hashlib.sha256(",".join(names).encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _schema_id(odef: ObjectDef) -> str:
    return _schema_hash((odef.name, *odef.fields))


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")

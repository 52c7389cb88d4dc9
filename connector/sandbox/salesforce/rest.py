"""The Salesforce REST surface of the emulator as a WSGI app: query, sObject CRUD, Collections, limits.

Every call is counted by kind and passes through fault injection under the same name (`query`, `query_more`,
`sobject_get`, `blob_get`, `create`, `update`, `upsert`, `delete`, `collections`, `limits`, `describe`,
`login`, `token`), so a test can both break an endpoint and assert how many calls the connector spent.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from email.utils import format_datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from connector.sandbox.salesforce import auth, content, soql_children, soql_eval
from connector.sandbox.salesforce.collections import CollectionsHandler, LockInjector
from connector.sandbox.salesforce.schema import ObjectDef, child_relationships, to_wire
from connector.sandbox.salesforce.store import SalesforceApiError, SalesforceStore
from connector.sandbox.server import Faults, apply_faults

if TYPE_CHECKING:
    from connector.sandbox.salesforce.streaming import StreamingHub

_CURSOR_CACHE = 200
_CHILD_LOCATOR = "0r8"  # locators of child relationship results (their batch is child_page_size)
JsonBody = Any


def json_response(body: JsonBody, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers, mimetype="application/json")


class SalesforceRestApp:
    """State shared by the REST handlers; `__call__` makes it a WSGI app."""

    def __init__(
        self,
        store: SalesforceStore,
        *,
        api_version: str,
        faults: Faults,
        session_ttl_s: float | None,
        page_size: int = 2000,
        daily_api_limit: int = 1_000_000,
    ) -> None:
        self.store = store
        self.api_version = api_version
        self.faults = faults
        self.sessions = auth.SessionRegistry(store, session_ttl_s)
        self.page_size = page_size
        self.child_page_size = page_size  # children of one parent row per batch; more: their nextRecordsUrl
        self.daily_api_limit = daily_api_limit
        self.api_used = 0
        self.counts: Counter[str] = Counter()
        self.locks = LockInjector()
        self.forced_limit_exceeded = 0
        self.control: Callable[[Request], Response] | None = None
        self.streaming: StreamingHub | None = None  # the Streaming API (CometD), set by the emulator
        self._cursors: OrderedDict[str, tuple[soql_eval.CompiledQuery, list[str], str]] = OrderedDict()
        self._cursor_seq = 0
        self._lock = threading.Lock()

    # --- WSGI entry ----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        # Salesforce's Date header is the server's clock; clients use it to reason about SystemModstamp.
        response.headers["Date"] = format_datetime(self.store.clock(), usegmt=True)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/control"):
            if self.control is None:
                return json_response([{"message": "no control API", "errorCode": "NOT_FOUND"}], 404)
            return self.control(request)
        if (
            request.method == "POST"
            and (path.startswith("/services/Soap/u/") or path == "/services/login")
            and self._is_soap(request)
        ):
            return self.soap_login(request)
        if request.method == "POST" and path in {"/services/oauth2/token", "/services/login"}:
            return self.oauth_token(request)
        if path.startswith("/services/data/v"):
            return self.rest(request)
        if path.startswith("/cometd") and request.method == "POST" and self.streaming is not None:
            # Not charged to the REST API limit (streaming has its own allocations); counted as streaming_*
            return self.streaming.handle(request, self._authenticate(request))
        return json_response([{"message": "Could not find a match for URL", "errorCode": "NOT_FOUND"}], 404)

    @staticmethod
    def _is_soap(request: Request) -> bool:
        return "SOAPAction" in request.headers or "xml" in (request.content_type or "")

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _fault(self, kind: str, request: Request) -> Response | None:
        status = apply_faults(self.faults, kind, request.environ)
        if status is None:
            return None
        return json_response(
            [{"message": "Service temporarily unavailable (injected)", "errorCode": "SERVER_UNAVAILABLE"}],
            status,
        )

    # --- login ---------------------------------------------------------------------------------

    def soap_login(self, request: Request) -> Response:
        self._count("login")
        if (faulted := self._fault("login", request)) is not None:
            return faulted
        version = request.path.rsplit("/", 1)[-1] if "/Soap/u/" in request.path else self.api_version
        try:
            user_id = auth.soap_login(self.store, request.get_data())
        except auth.LoginFailed as exc:
            return Response(auth.soap_fault(exc.code, exc.message), 500, mimetype="text/xml")
        token = self.sessions.issue(user_id)
        body = auth.soap_login_response(request.host_url, version, token, user_id)
        return Response(body, 200, mimetype="text/xml")

    def oauth_token(self, request: Request) -> Response:
        self._count("token")
        if (faulted := self._fault("token", request)) is not None:
            return faulted
        try:
            user_id = auth.oauth_login(self.store, request.get_data(), request.headers.get("Authorization"))
        except auth.LoginFailed as exc:
            status = 401 if exc.code == "invalid_client" else 400
            return json_response({"error": exc.code, "error_description": exc.message}, status)
        token = self.sessions.issue(user_id)
        issued_ms = int(self.store.clock().timestamp() * 1000)
        return json_response(auth.oauth_response(request.host_url, token, user_id, issued_ms))

    # --- REST ----------------------------------------------------------------------------------

    def rest(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]  # services, data, vNN.N, ...
        version, rest = parts[2][1:], parts[3:]
        kind, handler = self.route(request.method, rest)
        self._count(kind)
        if (faulted := self._fault(kind, request)) is not None:
            return faulted
        user_id = self._authenticate(request)
        if user_id is None:
            return json_response(
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
            )
        if (limited := self._charge_api_call()) is not None:
            return limited
        try:
            with self._acting(user_id, version):
                response = handler(request, rest, version, user_id)
        except SalesforceApiError as exc:
            response = json_response(exc.body(), exc.status)
        response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.daily_api_limit}"
        return response

    def _acting(self, user_id: str, version: str) -> contextlib.AbstractContextManager[None]:
        """Change events of this call name its user and the REST API as their origin."""
        if self.streaming is None:
            return contextlib.nullcontext()
        return self.streaming.acting(user_id, f"com/salesforce/api/rest/{version}")

    def _authenticate(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in {"bearer", "oauth"} or not token:
            return None
        return self.sessions.user_for(token.strip())

    def _charge_api_call(self) -> Response | None:
        with self._lock:
            forced = self.forced_limit_exceeded > 0
            if forced:
                self.forced_limit_exceeded -= 1
            elif self.api_used >= self.daily_api_limit:
                forced = True
            else:
                self.api_used += 1
        if forced:
            return json_response(
                [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403
            )
        return None

    Handler = Callable[[Request, list[str], str, str], Response]

    def route(self, method: str, rest: list[str]) -> tuple[str, Handler]:
        head = rest[0] if rest else ""
        n = len(rest)
        if head in {"query", "queryAll"}:
            return ("query_more", self.query_more) if n == 2 else ("query", self.query)
        if head == "limits":
            return "limits", self.limits
        if head == "composite" and n >= 2 and rest[1] == "sobjects":
            return "collections", CollectionsHandler(self.store, self.locks).handle
        if head == "sobjects":
            return self._route_sobject(method, n, rest)
        return "unknown", self.not_found

    def _route_sobject(self, method: str, n: int, rest: list[str]) -> tuple[str, Handler]:
        if n <= 2 and method == "GET":
            return "describe", self.describe
        if n == 2 and method == "POST":
            return "create", self.create
        if n == 3 and rest[2] == "describe":
            return "describe", self.describe
        if n == 4 and method == "GET" and self._is_blob(rest[1], rest[3]):
            return "blob_get", self.blob_get
        by_method = {"GET": "sobject_get", "PATCH": "update", "DELETE": "delete"}
        kind = by_method.get(method, "unknown")
        if n == 4 and method == "PATCH":
            kind = "upsert"
        if kind == "unknown" or n not in {3, 4}:
            return "unknown", self.not_found
        return kind, getattr(self, kind)

    def _is_blob(self, object_name: str, field_name: str) -> bool:
        odef = self.store.object(object_name, required=False)
        fdef = odef.field(field_name) if odef is not None else None
        return fdef is not None and fdef.type == "base64"

    def blob_get(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        """`GET sobjects/<object>/<id>/<blob field>` (a ContentVersion's VersionData): the bytes, not JSON."""
        odef = self.store.require_object(rest[1])
        with self.store.lock:
            rec = self.store.get_record(odef, rest[2])
            fdef = odef.field(rest[3])
            assert fdef is not None
            data = content.blob_bytes(self.store.value(odef, rec, fdef))
        return Response(data, 200, mimetype="application/octetstream")

    def not_found(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        raise SalesforceApiError("NOT_FOUND", "The requested resource does not exist", 404)

    # --- query ---------------------------------------------------------------------------------

    def query(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        text = request.args.get("q")
        if not text:
            raise SalesforceApiError("MALFORMED_QUERY", "A query string has to be specified", 400)
        cq = soql_eval.compile_query(
            self.store, text, include_deleted=rest[0] == "queryAll", api_version=version
        )
        ids = soql_eval.matching_ids(self.store, cq)
        if cq.query.count_only:
            return json_response({"totalSize": len(ids), "done": True, "records": []})
        with self._lock:
            self._cursor_seq += 1
            key = f"01g5g0000{self._cursor_seq:06d}EMU"
        return self._page(key, cq, ids, 0, version, self._batch_size(request))

    def query_more(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        key, _, start = rest[1].rpartition("-")
        with self._lock:
            cursor = self._cursors.get(key)
        if cursor is None or not start.isdigit():
            raise SalesforceApiError("INVALID_QUERY_LOCATOR", "invalid query locator", 400)
        cq, ids, _ = cursor
        size = self.child_page_size if key.startswith(_CHILD_LOCATOR) else self._batch_size(request)
        return self._page(key, cq, ids, int(start), version, size)

    def _batch_size(self, request: Request) -> int:
        options = request.headers.get("Sforce-Query-Options", "")
        for item in options.split(","):
            name, _, value = item.strip().partition("=")
            if name == "batchSize" and value.isdigit():
                return max(1, min(int(value), self.page_size))
        return self.page_size

    def _page(
        self,
        key: str,
        cq: soql_eval.CompiledQuery,
        ids: list[str],
        start: int,
        version: str,
        size: int,
    ) -> Response:
        return json_response(self._page_body(key, cq, ids, start, version, size))

    def _child_result(self, version: str, cq: soql_eval.CompiledQuery, ids: list[str]) -> dict[str, Any]:
        """One parent row's children: a query result of their own, paged like a query's."""
        with self._lock:
            self._cursor_seq += 1
            key = f"{_CHILD_LOCATOR}5g0000{self._cursor_seq:06d}EMU"
        return self._page_body(key, cq, ids, 0, version, self.child_page_size)

    def _page_body(
        self, key: str, cq: soql_eval.CompiledQuery, ids: list[str], start: int, version: str, size: int
    ) -> dict[str, Any]:
        end = min(start + size, len(ids))
        children = partial(self._child_result, version)
        with self.store.lock:
            records = soql_children.project_page(self.store, cq, ids[start:end], version, children)
        body: dict[str, Any] = {"totalSize": len(ids), "done": end >= len(ids), "records": records}
        with self._lock:
            if end < len(ids):
                resource = "queryAll" if cq.include_deleted else "query"
                body["nextRecordsUrl"] = f"/services/data/v{version}/{resource}/{key}-{end}"
                self._cursors[key] = (cq, ids, version)
                self._cursors.move_to_end(key)
                while len(self._cursors) > _CURSOR_CACHE:
                    self._cursors.popitem(last=False)
            else:
                self._cursors.pop(key, None)
        return body

    # --- limits & describe ---------------------------------------------------------------------

    def limits(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        max_, used = self.daily_api_limit, self.api_used
        return json_response(
            {
                "DailyApiRequests": {"Max": max_, "Remaining": max(0, max_ - used)},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DataStorageMB": {"Max": 1024, "Remaining": 1000},
            }
        )

    def describe(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        if len(rest) == 1:
            objs = [self._describe_summary(o) for o in self.store.objects.values()]
            return json_response({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objs})
        odef = self.store.require_object(rest[1])
        body = self._describe_summary(odef)
        if len(rest) == 3:
            body["fields"] = [f.describe() for f in odef.fields.values()]
            body["childRelationships"] = child_relationships(self.store.objects.values(), odef)
            body["urls"] = {"describe": f"/services/data/v{version}/sobjects/{odef.name}/describe"}
        return json_response(body)

    @staticmethod
    def _describe_summary(odef: ObjectDef) -> dict[str, Any]:
        return {
            "name": odef.name,
            "label": odef.name.replace("__c", "").replace("_", " "),
            "keyPrefix": odef.key_prefix,
            "custom": odef.name.endswith("__c"),
            "queryable": True,
            "createable": True,
            "updateable": True,
        }

    # --- single-record CRUD --------------------------------------------------------------------

    def sobject_get(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        odef = self.store.require_object(rest[1])
        with self.store.lock:
            rid = self._by_external_id(odef, rest[2], rest[3]) if len(rest) == 4 else rest[2]
            rec = self.store.get_record(odef, rid)
            values = self.store.record_dict(odef, rec)
        wanted = request.args.get("fields")
        if wanted:
            names = [n.strip() for n in wanted.split(",")]
            fields = [self._field(odef, n) for n in names]
            values = {f: values[f] for f in fields}
        body = {"attributes": soql_eval.attributes(odef.name, str(rec[0]), version)}
        body.update({k: to_wire(v) for k, v in values.items()})
        return json_response(body)

    def _field(self, odef: ObjectDef, name: str) -> str:
        fdef = odef.field(name)
        if fdef is None:
            raise SalesforceApiError(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {odef.name}"
            )
        return fdef.name

    def _by_external_id(self, odef: ObjectDef, field: str, value: str) -> str:
        fdef = odef.field(field)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise SalesforceApiError("NOT_FOUND", f"Provided external ID field does not exist: {field}", 404)
        hits = self.store.find_by_field(odef, fdef, value)
        if not hits:
            raise SalesforceApiError("NOT_FOUND", "The requested resource does not exist", 404)
        return hits[0]

    def create(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        rid = self.store.insert(rest[1], self._json_object(request), user_id)
        return json_response({"id": rid, "success": True, "errors": []}, 201)

    def update(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        self.locks.check(rest[2])
        self.store.update(rest[1], rest[2], self._json_object(request), user_id)
        return Response(status=204)

    def upsert(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        rid, created = self.store.upsert(rest[1], rest[2], rest[3], self._json_object(request), user_id)
        return json_response(
            {"id": rid, "success": True, "errors": [], "created": created}, 201 if created else 200
        )

    def delete(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        self.locks.check(rest[2])
        self.store.delete(rest[1], rest[2], user_id=user_id)
        return Response(status=204)

    @staticmethod
    def _json_object(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data() or b"{}")
        except json.JSONDecodeError as exc:
            raise SalesforceApiError("JSON_PARSER_ERROR", f"invalid JSON: {exc.msg}") from exc
        if not isinstance(body, dict):
            raise SalesforceApiError("JSON_PARSER_ERROR", "expected a JSON object")
        return body

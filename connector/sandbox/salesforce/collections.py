"""sObject Collections (`/composite/sobjects`): create, update, upsert and delete up to 200 records per call.

Results come back per record in Salesforce's shape (`{"id", "success", "errors": [{"statusCode", "message",
"fields"}]}`), and `allOrNone` rolls every change of the call back when any record fails. Row-lock
failures can be injected per record so the connector's retry of `UNABLE_TO_LOCK_ROW` is exercised for real.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from connector.sandbox.salesforce.schema import normalize_id
from connector.sandbox.salesforce.store import Record, SalesforceApiError, SalesforceStore

MAX_RECORDS = 200
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}


class LockInjector:
    """Record Ids that answer UNABLE_TO_LOCK_ROW for their next N writes."""

    def __init__(self) -> None:
        self._remaining: dict[str, int] = {}
        self._lock = threading.Lock()

    def lock(self, ids: Iterable[str], times: int = 1) -> None:
        with self._lock:
            for rid in ids:
                self._remaining[normalize_id(rid)] = times

    def clear(self) -> None:
        with self._lock:
            self._remaining.clear()

    def check(self, record_id: str) -> None:
        rid = normalize_id(record_id)
        with self._lock:
            left = self._remaining.get(rid, 0)
            if left <= 0:
                return
            if left == 1:
                del self._remaining[rid]
            else:
                self._remaining[rid] = left - 1
        raise SalesforceApiError(
            "UNABLE_TO_LOCK_ROW",
            f"unable to obtain exclusive access to this record or 1 records: {rid}",
            400,
        )


Undo = Callable[[], None]


class CollectionsHandler:
    """One Collections request; `handle` is the REST handler for every `/composite/sobjects` route.

    It is given the REST app's store and row-lock injector rather than the app, so rest.py imports this
    module and not the other way round.
    """

    def __init__(self, store: SalesforceStore, locks: LockInjector) -> None:
        self.store = store
        self.locks = locks

    def handle(self, request: Request, rest: list[str], version: str, user_id: str) -> Response:
        method = request.method
        if method == "DELETE":
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            all_or_none = request.args.get("allOrNone", "false").lower() == "true"
            items: list[dict[str, Any]] = [{"Id": i} for i in ids]
        else:
            body = self._body(request)
            items = body.get("records") or []
            all_or_none = bool(body.get("allOrNone", False))
        if len(items) > MAX_RECORDS:
            raise SalesforceApiError(
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
            )
        op = self._operation(method, rest)
        with self.store.lock:
            results, undos = [], []
            for item in items:
                result, undo = self._one(op, item, rest, user_id)
                results.append(result)
                if undo is not None:
                    undos.append(undo)
            if all_or_none and any(not r["success"] for r in results):
                for undo in reversed(undos):
                    undo()
                results = [r if not r["success"] else self._rolled_back(r, op) for r in results]
        return Response(json.dumps(results), 200, mimetype="application/json")

    @staticmethod
    def _rolled_back(result: dict[str, Any], op: str) -> dict[str, Any]:
        out: dict[str, Any] = {"success": False, "errors": [dict(_ROLLED_BACK)]}
        if op in {"update", "delete"}:
            out = {"id": result["id"], **out}
        return out

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data() or b"{}")
        except json.JSONDecodeError as exc:
            raise SalesforceApiError("JSON_PARSER_ERROR", f"invalid JSON: {exc.msg}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("records", []), list):
            raise SalesforceApiError("JSON_PARSER_ERROR", "expected {'allOrNone': ..., 'records': [...]}")
        return body

    @staticmethod
    def _operation(method: str, rest: list[str]) -> str:
        if method == "POST" and len(rest) == 2:
            return "create"
        if method == "PATCH" and len(rest) == 2:
            return "update"
        if method == "PATCH" and len(rest) == 4:
            return "upsert"
        if method == "DELETE" and len(rest) == 2:
            return "delete"
        raise SalesforceApiError("NOT_FOUND", "The requested resource does not exist", 404)

    def _one(
        self, op: str, item: dict[str, Any], rest: list[str], user_id: str
    ) -> tuple[dict[str, Any], Undo | None]:
        rid = item.get("Id")
        try:
            handler: Callable[..., tuple[dict[str, Any], Undo]] = getattr(self, "_" + op)
            return handler(item, rest, user_id)
        except SalesforceApiError as exc:
            failed: dict[str, Any] = {"success": False, "errors": [exc.record_error()]}
            if rid and op in {"update", "delete"}:
                failed = {"id": rid, **failed}
            return failed, None

    def _object_of(self, item: dict[str, Any], default: str | None = None) -> str:
        attrs = item.get("attributes") or {}
        name = attrs.get("type") if isinstance(attrs, dict) else None
        if name:
            return str(name)
        if default:
            return default
        rid = item.get("Id")
        if isinstance(rid, str):
            for odef in self.store.objects.values():
                if rid.startswith(odef.key_prefix):
                    return odef.name
        raise SalesforceApiError("INVALID_TYPE", "Must specify a type in attributes", 400)

    @staticmethod
    def _fields(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in {"attributes", "Id"}}

    def _snapshot(self, object_name: str, rid: str) -> Undo:
        odef = self.store.require_object(object_name)
        rec: Record = self.store.get_record(odef, rid)
        saved = list(rec)

        def undo() -> None:
            rec[:] = saved

        return undo

    def _create(self, item: dict[str, Any], rest: list[str], user_id: str) -> tuple[dict[str, Any], Undo]:
        name = self._object_of(item)
        rid = self.store.insert(name, self._fields(item), user_id)
        return {"id": rid, "success": True, "errors": []}, lambda: self.store.delete(name, rid, recycle=False)

    def _update(self, item: dict[str, Any], rest: list[str], user_id: str) -> tuple[dict[str, Any], Undo]:
        rid = item.get("Id")
        if not isinstance(rid, str):
            raise SalesforceApiError("MISSING_ARGUMENT", "Id not specified in an update call", 400, ["Id"])
        name = self._object_of(item)
        self.locks.check(rid)
        undo = self._snapshot(name, rid)
        self.store.update(name, rid, self._fields(item), user_id)
        return {"id": normalize_id(rid), "success": True, "errors": []}, undo

    def _upsert(self, item: dict[str, Any], rest: list[str], user_id: str) -> tuple[dict[str, Any], Undo]:
        name, ext_field = rest[2], rest[3]
        ext_value = item.get(ext_field)
        if ext_value is None:
            raise SalesforceApiError("MISSING_ARGUMENT", f"{ext_field} not specified", 400, [ext_field])
        odef = self.store.require_object(name)
        fdef = odef.field(ext_field)
        existing = self.store.find_by_field(odef, fdef, ext_value) if fdef else []
        undo: Undo | None = self._snapshot(name, existing[0]) if len(existing) == 1 else None
        if existing:
            self.locks.check(existing[0])
        fields = {k: v for k, v in self._fields(item).items() if k != ext_field}
        rid, created = self.store.upsert(name, ext_field, str(ext_value), fields, user_id)
        if created:
            undo = lambda: self.store.delete(name, rid, recycle=False)  # noqa: E731
        assert undo is not None
        return {"id": rid, "success": True, "errors": [], "created": created}, undo

    def _delete(self, item: dict[str, Any], rest: list[str], user_id: str) -> tuple[dict[str, Any], Undo]:
        rid = str(item["Id"])
        name = self._object_of(item)
        odef = self.store.require_object(name)
        self.locks.check(rid)
        rec = list(self.store.get_record(odef, rid))
        self.store.delete(name, rid)

        def undo() -> None:
            self.store.deleted[odef.name].pop(normalize_id(rid), None)
            self.store.records[odef.name][normalize_id(rid)] = rec

        return {"id": normalize_id(rid), "success": True, "errors": []}, undo

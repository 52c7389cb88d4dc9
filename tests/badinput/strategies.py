"""Hypothesis strategies around the real `agent/out` shapes, with hostile values mixed in."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.badinput.conftest import BATCH_ID, LINKED_JOB

HOSTILE_STRINGS = (
    "",
    " ",
    "not-a-date",
    "2018-05-18T10:05:46+0000",
    "2018-13-45T99:99:99+9999",
    "0000-00-00",
    "123",
    "-1",
    "1e309",
    "NaN",
    "true",
    "null",
    "\x00",
    "nul\x00inside",
    "\ud800",
    "lone \udfff surrogate",
    "O'Brien' OR Id != '",
    "<script>alert(1)</script>",
    "🚀🔧 emoji",
    "[Late, Messy] Great tech",
    "x" * 70_000,
)
PUT_TYPES = (
    "job",
    "appointment",
    "offer",
    "joboffer",
    "attachment",
    "surveyresponse",
    "estimate",
    "invoice",
    "payment",
    "ack",
    "err",
    "calendar_event",
    "customform",
)
STATUSES = (
    "offered",
    "unscheduled",
    "scheduled",
    "enroute",
    "started",
    "paused",
    "completed",
    "canceled",
    "rejected",
    "accepted",
    "approved",
    "declined",
    "paid",
    "some_status",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ids = st.one_of(st.sampled_from([LINKED_JOB, "WO-2", BATCH_ID, 18663]), scalars, json_values)
statuses = st.one_of(st.sampled_from(STATUSES), scalars)
times = st.one_of(st.sampled_from(["2018-05-18T10:05:46+0000", "2026-12-01T15:00:00Z"]), scalars)
job_refs = st.one_of(st.fixed_dictionaries({}, optional={"external_id": ids, "id": ids}), json_values)

COMMON = {"id": ids, "external_id": ids, "status": statuses, "updated_at": times, "job": job_refs}
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "job": {**COMMON, "external_ids": json_values, "status_message": scalars},
    "appointment": {
        **COMMON,
        "job_id": ids,
        "start_time": times,
        "end_time": times,
        "status_message": scalars,
    },
    "offer": {**COMMON, "status_message": scalars},
    "attachment": {
        "id": ids,
        "description": scalars,
        "file_token": scalars,
        "name": scalars,
        "deleted_at": times,
        "updated_at": times,
        "job": job_refs,
    },
    "surveyresponse": {"id": ids, "rating": scalars, "message": scalars, "job": job_refs},
    "estimate": COMMON,
    "invoice": COMMON,
    "payment": {
        "id": ids,
        "amount": st.one_of(st.fixed_dictionaries({}, optional={"text": scalars}), json_values),
        "billing_document": st.one_of(st.fixed_dictionaries({}, optional={"external_id": ids}), json_values),
        "result": scalars,
    },
    "ack": {
        "id": ids,
        "external_id": ids,
        "msg_id": st.one_of(st.just(BATCH_ID), ids),
        "model": st.one_of(st.sampled_from(["job", "auto_assign_technician", "auto_assign_org"]), scalars),
        "ack_message": scalars,
        "data": json_values,
    },
    "err": {
        "payload": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "err": st.one_of(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "data_type": st.one_of(st.just("job"), scalars),
                                "external_id": ids,
                                "msg_id": st.one_of(st.just(BATCH_ID), ids),
                                "message": scalars,
                            },
                        ),
                        json_values,
                    )
                },
            ),
            json_values,
        ),
        "data_type": scalars,
        "external_id": ids,
        "msg_id": ids,
        "message": scalars,
    },
}


@st.composite
def action_data(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    put_type = draw(st.one_of(st.sampled_from(PUT_TYPES), st.text(min_size=1, max_size=12)))
    known = FIELDS.get(put_type, FIELDS["job"])
    data = draw(st.fixed_dictionaries({}, optional=known))
    data.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return put_type, data


@st.composite
def envelopes(draw: st.DrawFn, message_id: str) -> tuple[str, dict[str, Any]]:
    """`(type, raw agent/out entry)` with 1-3 actions; the Type is the first action's Put type."""
    actions = draw(st.lists(action_data(), min_size=1, max_size=3))
    raw = {
        "Message": {
            "ID": message_id,
            "Receipt": "receipt-1",
            "Request": {
                "Type": actions[0][0],
                "ProcedureID": "proc-1",
                "Payload": {"Actions": [{"ID": None, "Put": {t: d}} for t, d in actions]},
            },
        }
    }
    return actions[0][0], raw

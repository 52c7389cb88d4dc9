"""connector.mapping_check on child relationships: the relationship, its child object and lookup, and the
child's selected fields, checked against describe answers built by the emulator's own code (no sockets)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from connector.mapping import DEFAULT_MAPPING, Mapping_, MappingConfig
from connector.mapping_check import Problem, check_mapping
from connector.sandbox.salesforce.rest import SalesforceRestApp
from connector.sandbox.salesforce.schema import child_relationships
from connector.sandbox.salesforce.store import SalesforceStore, load_fixture

FIXTURE = (
    Path(__file__).resolve().parents[2] / "connector" / "sandbox" / "fixtures" / "field_service_org.yaml"
)
LINE_ITEMS = {
    "object": "WorkOrderLineItem",
    "parent_field": "WorkOrderId",
    "select": ["Id", "Description", "Quantity"],
}


def org(with_children: bool = True) -> Callable[[str], dict[str, Any] | None]:
    """The fixture org plus line items; `with_children=False` answers describes without childRelationships."""
    store = SalesforceStore()
    load_fixture(store, FIXTURE)
    store.define_object(
        "WorkOrderLineItem",
        {
            "WorkOrderId": {
                "type": "reference",
                "to": "WorkOrder",
                "child_relationship": "WorkOrderLineItems",
            },
            "ContactId": {"type": "reference", "to": "Contact"},
            "Description": "textarea",
            "Quantity": "double",
        },
    )

    def describe(name: str) -> dict[str, Any] | None:
        odef = store.object(name, required=False)
        if odef is None:
            return None
        body = {
            **SalesforceRestApp._describe_summary(odef),
            "fields": [f.describe() for f in odef.fields.values()],
        }
        if with_children:
            body["childRelationships"] = child_relationships(store.objects.values(), odef)
        return body

    return describe


def mapping(children: dict[str, Any]) -> MappingConfig:
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8")))
    raw["objects"]["WorkOrder"]["children"] = children
    return MappingConfig(Mapping_.model_validate(raw), DEFAULT_MAPPING)


def lines(**changes: Any) -> dict[str, Any]:
    return {**LINE_ITEMS, **changes}


def problems(children: dict[str, Any], with_children: bool = True) -> list[Problem]:
    return check_mapping(mapping(children), org(with_children))


def test_declared_children_that_match_the_org_are_fine() -> None:
    assert problems({"WorkOrderLineItems": lines()}) == []
    assert problems({"WorkOrderLineItems": lines()}, with_children=False) == []


def test_an_unknown_relationship_is_named_with_the_closest_one() -> None:
    (problem,) = problems({"WorkOrderLineItem": lines()})
    assert str(problem) == (
        "objects.WorkOrder.children.WorkOrderLineItem: WorkOrder: no child relationship "
        "'WorkOrderLineItem' on WorkOrder; did you mean 'WorkOrderLineItems'?"
    )


def test_a_relationship_through_another_lookup_is_named() -> None:
    (problem,) = problems({"WorkOrderLineItems": lines(parent_field="ContactId")})
    assert problem.key == "objects.WorkOrder.children.WorkOrderLineItems.parent_field"
    assert problem.message == "is not a lookup to WorkOrder"
    assert problems({"WorkOrderLineItems": lines(parent_field="ContactId")}, with_children=False) == [problem]


def test_a_missing_child_object_or_field_is_named() -> None:
    (missing,) = problems({"WorkOrderLineItems": lines(object="LineItem__c")})
    assert str(missing) == (
        "objects.WorkOrder.children.WorkOrderLineItems.object: LineItem__c: "
        "the org has no object 'LineItem__c'"
    )
    (field,) = problems({"WorkOrderLineItems": lines(select=["Id", "Quantty"])})
    assert str(field) == (
        "objects.WorkOrder.children.WorkOrderLineItems.select: WorkOrderLineItem.Quantty: "
        "no field 'Quantty' on WorkOrderLineItem; did you mean 'Quantity'?"
    )


def test_a_relationship_of_another_child_object_is_named() -> None:
    children = {
        "WorkOrderLineItems": lines(object="Dispatch_Note__c", parent_field="Work_Order__c", select=["Id"])
    }
    (problem,) = problems(children)
    assert str(problem) == (
        "objects.WorkOrder.children.WorkOrderLineItems: WorkOrder: child relationship "
        "'WorkOrderLineItems' of WorkOrder is WorkOrderLineItem.WorkOrderId, "
        "not Dispatch_Note__c.Work_Order__c"
    )

"""The mapping checked against the Salesforce org before anything runs (connector.mapping_check over the
gateway's `describe`).

The daemon (roles that publish or process) and `publish` call `require_mapping_ok` at start: a mapping that
names a field the org lacks, cannot write or whose type does not fit stops the program there, with every
problem named, instead of failing each write-back minutes later. The answer is kept per context, so a
process asks Salesforce once (one describe per mapped object).
"""

from __future__ import annotations

import weakref

from connector.crm import CrmNotFound
from connector.mapping_check import Problem
from connector.mapping_check import check_mapping as check_against
from sync.context import SyncContext
from sync.errors import MappingMismatch

__all__ = ["Problem", "check_mapping", "mismatch_message", "require_mapping_ok"]

# id(ctx) -> (the context, its problems); the weak reference tells a reused id from the same context
_checked: dict[int, tuple[weakref.ref[SyncContext], list[Problem]]] = {}


def check_mapping(ctx: SyncContext) -> list[Problem]:
    """Every problem of the context's mapping against its org; asked once per context, then remembered.

    A failure to ask (Salesforce down, login refused) raises as the gateway's other calls do, and is not
    remembered: the next call asks again."""
    held = _checked.get(id(ctx))
    if held is not None and held[0]() is ctx:
        return list(held[1])
    gateway = ctx.crm

    def describe(object_name: str) -> dict[str, object] | None:
        try:
            return dict(gateway.describe(object_name))
        except CrmNotFound:
            return None

    problems = check_against(ctx.mapping, describe)
    for key in [k for k, (ref, _) in _checked.items() if ref() is None]:
        del _checked[key]
    _checked[id(ctx)] = (weakref.ref(ctx), problems)
    return list(problems)


def mismatch_message(source: object, problems: list[Problem]) -> str:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = [f"mapping file {source} does not match the Salesforce org ({count}):"]
    lines += [f"  {problem}" for problem in problems]
    lines.append("fix the mapping file or the org, then start again (`dispatch-connector mapping check`)")
    return "\n".join(lines)


def require_mapping_ok(ctx: SyncContext) -> None:
    """Raise MappingMismatch (exit code 2) listing every problem, one per line, when there is any."""
    problems = check_mapping(ctx)
    if problems:
        raise MappingMismatch(mismatch_message(ctx.mapping.source, problems))

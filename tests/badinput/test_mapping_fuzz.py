"""Mutated mapping files: `load_mapping` gives a valid mapping or a MappingFileError naming the file."""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.mapping import DEFAULT_MAPPING, MappingConfig, MappingFileError, load_mapping

ORIGINAL: Any = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))
TEXT = DEFAULT_MAPPING.read_text(encoding="utf-8")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["Id", "not_null", "true", "job", "{Missing__c}", "Contact.Phone", "", "cancel"]),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


PATHS = list(_paths(ORIGINAL))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(ORIGINAL)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        try:
            parent = _parent(doc, path)
            key = path[-1]
            parent[key]  # the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        op = draw(st.sampled_from(["drop", "replace", "unknown_key", "duplicate"]))
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(wrong_values)
        elif op == "unknown_key" and isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=8))] = draw(wrong_values)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    op = draw(st.sampled_from(["truncate", "insert", "random", "yaml_dump"]))
    if op == "truncate":
        return TEXT[: draw(st.integers(0, len(TEXT)))]
    if op == "insert":
        at = draw(st.integers(0, len(TEXT)))
        return TEXT[:at] + draw(st.text(min_size=1, max_size=10)) + TEXT[at:]
    if op == "random":
        return draw(st.text(max_size=200))
    return yaml.safe_dump(draw(mutated_docs()), allow_unicode=True)


def _check(path: Path) -> None:
    try:
        result = load_mapping(path)
    except MappingFileError as exc:
        assert str(path) in str(exc), str(exc)
    else:
        assert isinstance(result, MappingConfig) and result.source == path


@FUZZ
@given(doc=mutated_docs())
def test_mutated_mapping_is_valid_or_named_error(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mapping.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        _check(path)


@FUZZ
@given(text=mutated_texts())
def test_mutated_mapping_text_is_valid_or_named_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mapping.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _check(path)


def test_directory_instead_of_file_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match=re.escape(str(tmp_path))):
        load_mapping(tmp_path)


def test_non_utf8_mapping_file_is_a_named_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(TEXT.replace("Id", "Id # caf\u00e9", 1).encode("latin-1"))
    with pytest.raises(MappingFileError, match=r"latin1\.yaml"):
        load_mapping(path)

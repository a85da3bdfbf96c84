"""Property tests: whatever the input, the parsers either succeed or raise InputError, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from updates.engine.manifest import InputError, parse_manifest, parse_topology

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATH = Path("/fuzz/manifest.yaml")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["mender/v1", "manifest", "update_manifest", "topology", "gateway", "rtos", "", "../x"]),
)
structures = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
KEYS = [
    "api_version",
    "kind",
    "name",
    "version",
    "system_type",
    "system_types_compatible",
    "component_types",
    "components",
    "component_type",
    "interface",
    "interface_args",
    "id",
    "args",
    "artifact_name",
    "artifact_path",
    "update_strategy",
    "order",
    "update_interface",
]
# Documents shaped like ours, so the fuzzing reaches the field rules rather than stopping at `kind`.
near_misses = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5)
    ),
    max_leaves=30,
)
YAML_TOKENS = [
    "api_version: mender/v1\n",
    "kind: manifest\n",
    "kind: update_manifest\n",
    "kind: topology\n",
    "\n",
    " ",
    "  ",
    "- ",
    ":",
    "&a ",
    "*a ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "!!int ",
    "!!str ",
    "<<: ",
    "? ",
    "#",
    "component_types:\n",
    "components:\n",
    "order: 10\n",
    "x",
    "---\n",
    "|\n",
    "\t",
    "%YAML 1.1\n",
]


def survives(data: bytes) -> None:
    for parse in (
        lambda: parse_manifest(data, path=PATH),
        lambda: parse_topology(data, path=PATH),
        lambda: parse_topology(
            b"api_version: mender/v1\nkind: topology\nsystem_type: s\n",
            path=PATH,
            components_data=data,
            components_path=PATH,
        ),
    ):
        try:
            parse()
        except InputError as exc:
            assert exc.problems and all(p.file and p.field and p.message for p in exc.problems)


def dump(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True).encode()


@FUZZ
@given(st.text(max_size=300))
def test_it_survives_arbitrary_text(text: str) -> None:
    survives(text.encode())


@FUZZ
@given(st.binary(max_size=200))
def test_it_survives_arbitrary_bytes(data: bytes) -> None:
    survives(data)


@FUZZ
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=40))
def test_it_survives_yaml_like_token_soup(tokens: list[str]) -> None:
    survives("".join(tokens).encode())


@FUZZ
@given(structures)
def test_it_survives_arbitrary_nested_structures(value: Any) -> None:
    survives(dump(value))


@FUZZ
@given(near_misses, st.sampled_from(["manifest", "update_manifest", "topology"]))
def test_it_survives_documents_shaped_like_ours(value: Any, kind: str) -> None:
    document = {
        "api_version": "mender/v1",
        "kind": kind,
        **(value if isinstance(value, dict) else {"x": value}),
    }
    survives(dump(document))

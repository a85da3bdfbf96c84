"""The YAML layer under the parsers: lines, duplicates, hostile documents."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from updates.engine import yamlpos
from updates.engine.manifest import InputError, Problem, parse_manifest, parse_topology

PATH = Path("/m/manifest.yaml")


def problems_of(data: bytes) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        parse_manifest(data, path=PATH)
    return caught.value.problems


def test_it_records_the_line_of_each_key() -> None:
    tree = yamlpos.load(b"a: 1\nb:\n  - x\n  - c: d\n")
    assert tree.mapping is not None
    assert (tree.mapping["a"].line, tree.mapping["b"].line) == (1, 2)
    items = tree.mapping["b"].sequence
    assert items is not None and [item.line for item in items] == [3, 4]


def test_it_refuses_duplicate_keys_naming_both_lines() -> None:
    [problem] = problems_of(b"api_version: mender/v1\nkind: manifest\nkind: update_manifest\n")
    assert (problem.line, problem.field) == (3, "kind")
    assert "first defined at line 2" in problem.message


def test_it_refuses_duplicate_nested_keys() -> None:
    with pytest.raises(yamlpos.YamlError) as caught:
        yamlpos.load(b"a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert [(i.line, i.field) for i in caught.value.issues] == [(4, "a.b")]


def _fastest(run: Callable[[], object], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def _bomb(levels: int) -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines).encode()


def test_it_refuses_an_alias_bomb_quickly() -> None:
    # Nine levels expand to a billion nodes; the count stops at MAX_NODES (100,000), so it costs
    # about ten times a four-level one that expands whole (10,000 nodes), not 100,000 times.
    # Measured against each other in this process: no absolute limit on a noisy machine.
    problems = problems_of(_bomb(9))
    assert any("alias bomb" in p.message for p in problems)
    assert yamlpos.load(_bomb(4)).mapping is not None
    assert _fastest(lambda: problems_of(_bomb(9))) < 100 * _fastest(lambda: yamlpos.load(_bomb(4)))


def test_it_refuses_a_recursive_alias() -> None:
    [problem] = problems_of(b"api_version: &a [*a]\n")
    assert problem.line == 1 and "recursive" in problem.message


def test_it_refuses_deep_nesting_with_a_line() -> None:
    [problem] = problems_of(b"kind: manifest\nx: " + b"[" * 10_000)
    assert problem.line == 2 and "nesting" in problem.message


def test_it_refuses_an_oversized_document() -> None:
    [problem] = problems_of(b"# " + b"x" * yamlpos.MAX_BYTES)
    assert "larger than" in problem.message


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b"a: 1\n---\nb: 2\n", 2, "single document"),
        (b"", 1, "empty"),
        (b"# only a comment\n", 1, "empty"),
        (b"a: 1\nb: \xff\n", 2, "UTF-8"),
        (b"a: 1\n\tb: 2\n", 2, "syntax error"),
        (b"a: 1\nb: \x07\n", 2, "unacceptable character"),
        (b"a: !!python/object:os.system x\n", 1, "unsupported YAML tag"),
        (b"a: !!binary aGk=\n", 1, "unsupported YAML tag"),
        (b"a: !!set {x: null}\n", 1, "unsupported YAML tag"),
        (b"a: !!int abc\n", 1, "invalid"),
        (b"a: 2001-13-45\n", 1, "invalid"),
        (b"base: &b {x: 1}\nc:\n  <<: *b\n", 3, "merge keys"),
        (b"? [a, b]\n: c\n", 1, "keys"),
    ],
)
def test_it_refuses_hostile_or_broken_yaml_with_a_line(data: bytes, line: int, words: str) -> None:
    problems = problems_of(data)
    assert any(p.line == line and words in p.message for p in problems), problems


def test_it_refuses_a_document_that_is_not_a_mapping() -> None:
    [problem] = problems_of(b"- a\n- b\n")
    assert (problem.line, problem.field) == (1, "(document)")
    assert "mapping" in problem.message


def test_it_reads_a_utf8_byte_order_mark() -> None:
    data = "\ufeffapi_version: mender/v1\nkind: topology\nsystem_type: s\ncomponents: [{component_type: a}]\n"
    assert parse_topology(data.encode(), path=Path("/t.yaml")).system_type == "s"


def test_it_treats_keys_as_text_even_when_they_look_like_values() -> None:
    tree = yamlpos.load(b"yes: 1\n10: 2\nnull: 3\n")
    assert tree.mapping is not None and list(tree.mapping) == ["yes", "10", "null"]


DOCUMENTS = [
    b"a: 1\nb: [x, 'y', \"z\"]\nc:\n  d: 2026-01-02\n  e: 2026-01-02T03:04:05Z\n  f: ~\n  g: 1.5\n  h: yes\n",
    b"base: &b {x: 1, y: [1, 2]}\ncopy: *b\nblock: |\n  two\n  lines\nfolded: >\n  one\n  line\n",
    b"# a comment\nkeys:\n  1: one\n  true: t\n  null: n\nnested:\n  - - a\n    - b\n  - {c: d}\n",
    b"a: 1\na: 2\n",  # a duplicate: refused with both lines
    b"a: !!python/object:os.system x\n",  # a tag we do not construct
    b"a: [1, 2\nb: 3\n",  # a syntax error: PyYAML's message
    b"a: \x07\n",  # a control character
    b"a:\n\tb: 1\n",  # a tab in the indentation
]


@pytest.mark.parametrize("data", DOCUMENTS)
def test_libyaml_gives_the_tree_lines_and_messages_of_the_python_parser(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    def outcome() -> object:
        try:
            return yamlpos.load(data)
        except yamlpos.YamlError as exc:
            return exc.issues

    fast = outcome()
    monkeypatch.setattr(yamlpos, "_FAST", yaml.SafeLoader)
    assert fast == outcome()

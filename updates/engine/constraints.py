"""Declared constraints (issue 13): which combinations of component versions form a working
system (`end_states`, each with a system version) and which may not be passed through on the way
(`transition_states` with `acceptable: false`).

The document is `constraints.yaml` beside the topology, or a `constraints:` section with the same
body inside a manifest (the manifest's wins). Problems are reported like the manifest's: file,
line and dotted field, all of them at once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from updates.engine import yamlpos
from updates.engine.manifest import (
    API_VERSION,
    DOC,
    InputError,
    _absolute,
    _Checker,
    _describe,
    _header,
    _in_reading_order,
    _items,
    _join,
    _Mark,
    _quote_hint,
    read_optional,
)
from updates.engine.yamlpos import YNode

CONSTRAINTS_FILE = "constraints.yaml"
SECTION = "constraints"
Table = Literal["end_states", "transition_states"]
# (component_type, version) of every component of a system state; several components may share a type.
Member = tuple[str, str]

_TOP = ("api_version", "kind", "end_states", "transition_states")
_END_KEYS = ("system_version", "versions")
_TRANSITION_KEYS = ("versions", "acceptable")
_HINTS = {
    "acceptable": "end_states rows are working systems by definition; only transition_states have 'acceptable'",
    "system_version": "only end_states rows name a system version",
    "version": "did you mean 'versions' (component type: artifact name)?",
}


@dataclass(frozen=True)
class Pattern:
    """One `component_type: artifact-name glob` entry of a row."""

    component_type: str
    glob: str
    line: int

    def matches(self, version: str) -> bool:
        return fnmatch.fnmatchcase(version, self.glob)


@dataclass(frozen=True)
class Row:
    table: Table
    index: int
    line: int
    patterns: tuple[Pattern, ...]
    system_version: str = ""
    acceptable: bool = True

    @property
    def where(self) -> str:
        return f"{self.table}[{self.index}]"

    @property
    def combination(self) -> str:
        """The row as an operator reads it in the seed's tables: `gateway-v1 + rtos-v2`."""
        return " + ".join(p.glob for p in self.patterns)

    def matches(self, members: Iterable[Member]) -> bool:
        """Every component of each named type matches its glob (and the type is present)."""
        members = list(members)
        for pattern in self.patterns:
            versions = [v for t, v in members if t == pattern.component_type]
            if not versions or not all(pattern.matches(v) for v in versions):
                return False
        return True


@dataclass(frozen=True)
class Constraints:
    file: str
    end_states: tuple[Row, ...]
    transition_states: tuple[Row, ...]

    def end_state(self, members: Iterable[Member]) -> Row | None:
        """The first end-state row the state matches: its system version names the system."""
        members = list(members)
        return next((row for row in self.end_states if row.matches(members)), None)

    def forbidden_rows(self) -> tuple[Row, ...]:
        return tuple(row for row in self.transition_states if not row.acceptable)

    def forbidding(self, members: Iterable[Member]) -> Row | None:
        members = list(members)
        return next((row for row in self.forbidden_rows() if row.matches(members)), None)


# --------------------------------------------------------------------------------------------------
# Loading


def load_constraints(
    *,
    topology_dir: Path | None,
    manifest_raw: bytes,
    manifest_path: Path,
    types: Collection[str] | None = None,
) -> Constraints | None:
    """The manifest's `constraints:` section, else `constraints.yaml` beside the topology, else None.

    `types`: the system's component types; a row naming another is reported (a typo, nearly always:
    such a row could never match).
    """
    section = constraints_from_manifest(manifest_raw, path=manifest_path, types=types)
    return section if section is not None else constraints_file(topology_dir, types=types)


def constraints_file(
    topology_dir: Path | None, *, types: Collection[str] | None = None
) -> Constraints | None:
    """`constraints.yaml` in the topology directory, if there is one."""
    path = topology_dir / CONSTRAINTS_FILE if topology_dir is not None else None
    data = read_optional(path)
    if path is None or data is None:
        return None
    return parse_constraints(data, path=path, types=types)


def parse_constraints(data: bytes, *, path: Path, types: Collection[str] | None = None) -> Constraints:
    """Parse a `kind: constraints` document; raise InputError listing every problem."""
    ck = _TypedChecker(str(_absolute(path)), types)
    root = ck.load(data)
    constraints = None
    if root is not None and ck.mapping(root, DOC) is not None:
        _header(ck, root, ("constraints",))
        constraints = _body(ck, root, "")
    if ck.problems or constraints is None:
        raise InputError(_in_reading_order(ck.problems))
    return constraints


def constraints_from_manifest(
    raw: bytes, *, path: Path, types: Collection[str] | None = None
) -> Constraints | None:
    """The `constraints:` section of a manifest (same body as the file; header optional)."""
    ck = _TypedChecker(str(_absolute(path)), types)
    try:
        root = yamlpos.load(raw)
    except yamlpos.YamlError:
        return None  # the manifest parser reports its syntax errors
    node = (root.mapping or {}).get(SECTION)
    if node is None:
        return None
    constraints = _body(ck, node, SECTION) if ck.mapping(node, SECTION) is not None else None
    if ck.problems or constraints is None:
        raise InputError(_in_reading_order(ck.problems))
    return constraints


class _TypedChecker(_Checker):
    """The manifest's problem collector, plus the system's component types (None: unknown)."""

    def __init__(self, file: str, types: Collection[str] | None) -> None:
        super().__init__(file)
        self.types = types


def _body(ck: _TypedChecker, node: YNode, where: str) -> Constraints | None:
    mark = _Mark(ck)
    ck.keys(node, where, _TOP, {})
    if where:  # a manifest section may repeat the file's header; it must then be right
        _section_header(ck, node, where)
    end_states = _rows(ck, node, where, "end_states", required=True)
    transitions = _rows(ck, node, where, "transition_states", required=False)
    if not mark.clean or end_states is None or transitions is None:
        return None
    _check_duplicate_versions(ck, end_states, where)
    return Constraints(ck.file, end_states, transitions) if mark.clean else None


def _section_header(ck: _TypedChecker, node: YNode, where: str) -> None:
    expected = {"api_version": API_VERSION, "kind": "constraints"}
    for key, value in expected.items():
        child = (node.mapping or {}).get(key)
        if child is not None and child.value != value:
            ck.add(child.line, _join(where, key), f"must be {value!r}, got {_describe(child)}")


def _rows(
    ck: _TypedChecker, node: YNode, where: str, table: Table, *, required: bool
) -> tuple[Row, ...] | None:
    field_ = _join(where, table)
    child = (node.mapping or {}).get(table)
    if child is None:
        if required:
            ck.add(node.line, field_, "is required but missing: list the working combinations")
        return None if required else ()
    items = child.sequence
    if items is None or (required and not items):
        got = "an empty list" if items == [] else _describe(child)
        ck.add(child.line, field_, f"must be a non-empty list of rows, got {got}")
        return None
    rows = [_row(ck, item, f"{field_}[{i}]", table, i) for i, item in enumerate(items)]
    return tuple(r for r in rows if r is not None) if all(rows) else None


def _row(ck: _TypedChecker, item: YNode, where: str, table: Table, index: int) -> Row | None:
    if ck.mapping(item, where) is None:
        return None
    mark = _Mark(ck)
    allowed = _END_KEYS if table == "end_states" else _TRANSITION_KEYS
    ck.keys(item, where, allowed, _HINTS)
    patterns = _patterns(ck, ck.require(item, "versions", where), f"{where}.versions")
    if table == "end_states":
        version = ck.string(ck.require(item, "system_version", where), f"{where}.system_version")
        if mark.clean and patterns is not None and version is not None:
            return Row(table, index, item.line, patterns, system_version=version)
        return None
    acceptable = _boolean(ck, ck.require(item, "acceptable", where), f"{where}.acceptable")
    if mark.clean and patterns is not None and acceptable is not None:
        return Row(table, index, item.line, patterns, acceptable=acceptable)
    return None


def _patterns(ck: _TypedChecker, node: YNode | None, where: str) -> tuple[Pattern, ...] | None:
    if ck.mapping(node, where) is None or node is None:
        return None
    if not node.mapping:
        ck.add(node.line, where, "must name at least one component type")
        return None
    patterns = []
    for ctype, value in _items(node):
        glob = ck.string(value, _join(where, ctype))
        if not ctype.strip():
            ck.add(value.line, where, "a component type name must not be empty")
        elif ck.types is not None and ctype not in ck.types:
            known = ", ".join(sorted(ck.types))
            ck.add(
                value.line,
                _join(where, ctype),
                f"the system has no component of type {ctype!r} (its types: {known})",
            )
        elif glob is not None:
            patterns.append(Pattern(ctype, glob, value.line))
    return tuple(patterns) if len(patterns) == len(node.mapping) else None


def _boolean(ck: _Checker, node: YNode | None, where: str) -> bool | None:
    if node is None:
        return None
    if isinstance(node.value, bool):
        return node.value
    hint = "; write true or false without quotes" if isinstance(node.value, str) else _quote_hint(node)
    ck.add(node.line, where, f"must be true or false, got {_describe(node)}{hint}")
    return None


def _check_duplicate_versions(ck: _Checker, rows: Sequence[Row], where: str) -> None:
    # Two working systems with one name make "system v.2" ambiguous on the status page.
    seen: dict[str, Row] = {}
    for row in rows:
        first = seen.setdefault(row.system_version, row)
        if first is not row:
            ck.add(
                row.line,
                _join(where, f"end_states[{row.index}].system_version"),
                f"{row.system_version!r} is already the system version of end_states[{first.index}] "
                f"(line {first.line})",
            )

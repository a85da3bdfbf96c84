"""Manifest and Topology parsers: both manifest forms, normalised into one model.

Seed form (``kind: update_manifest``) carries its components inline; the current Mender form
(``kind: manifest``) takes them from a Topology (``kind: topology``), optionally split into a
separate components file. Every problem names file, YAML line and dotted field, and all problems of
all files are collected before anything is raised, so one run shows the operator everything to fix.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from updates.engine import yamlpos
from updates.engine.errors import InvalidInput
from updates.engine.yamlpos import YNode

API_VERSION = "mender/v1"
TOPOLOGY_FILE = "topology.yaml"
# An interface name becomes a path component under interfaces/v1/: no separators, no leading dot.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
CURRENT_ORDER = (1, 100)
SEED_MIN_ORDER = 0
DOC = yamlpos.DOCUMENT
COMPONENTS_FILE_HINT = (
    "-t/--topology-components, MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE or config TopologyComponents"
)

Form = Literal["seed", "current"]


# --------------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}"


class InputError(InvalidInput):
    """One or more validation problems.

    str() lists every problem, one per line, as 'FILE:LINE: FIELD: message'.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Component:
    component_type: str
    interface: str
    interface_args: tuple[str, ...]
    component_id: str | None


class ComponentJson(TypedDict):
    component_type: str
    interface: str
    interface_args: list[str]
    component_id: str | None


class TopologyJson(TypedDict):
    """The stored form of a normalised `Topology` (a deployment's snapshot, the system's)."""

    system_type: str | None
    source: str
    components: list[ComponentJson]


@dataclass(frozen=True)
class Topology:
    system_type: str | None
    components: tuple[Component, ...]
    source: str

    def to_json(self) -> TopologyJson:
        return {
            "system_type": self.system_type,
            "source": self.source,
            "components": [
                {
                    "component_type": c.component_type,
                    "interface": c.interface,
                    "interface_args": list(c.interface_args),
                    "component_id": c.component_id,
                }
                for c in self.components
            ],
        }

    @classmethod
    def from_json(cls, data: TopologyJson) -> Topology:
        components = tuple(
            Component(c["component_type"], c["interface"], tuple(c["interface_args"]), c["component_id"])
            for c in data["components"]
        )
        return cls(data["system_type"], components, data["source"])


@dataclass(frozen=True)
class TypeTarget:
    component_type: str
    artifact_name: str | None
    artifact_path: Path | None
    order: int


@dataclass(frozen=True)
class Manifest:
    form: Form
    name: str
    system_types_compatible: tuple[str, ...]
    targets: Mapping[str, TypeTarget]
    path: Path
    raw: bytes


@dataclass(frozen=True)
class DesiredState:
    manifest: Manifest
    topology: Topology

    @property
    def argv_style(self) -> Form:
        return self.manifest.form

    def order_groups(self) -> list[tuple[int, list[Component]]]:
        """Components grouped by ``update_strategy.order``, ascending; Topology order inside a group."""
        groups: dict[int, list[Component]] = {}
        for component in self.topology.components:
            order = self.manifest.targets[component.component_type].order
            groups.setdefault(order, []).append(component)
        return sorted(groups.items(), key=lambda item: item[0])


# --------------------------------------------------------------------------------------------------
# Problem collection and typed field readers


class _Checker:
    """Collects problems for one file; ``for_file`` shares the list so several files report together."""

    def __init__(self, file: str, problems: list[Problem] | None = None) -> None:
        self.file = file
        self.problems: list[Problem] = [] if problems is None else problems

    def for_file(self, file: str) -> _Checker:
        return _Checker(file, self.problems)

    def add(self, line: int | None, field_: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field_, message))

    def load(self, data: bytes) -> YNode | None:
        try:
            return yamlpos.load(data)
        except yamlpos.YamlError as exc:
            for issue in exc.issues:
                self.add(issue.line, issue.field, issue.message)
            return None

    def mapping(self, node: YNode | None, field_: str) -> dict[str, YNode] | None:
        if node is None:
            return None
        if node.mapping is None:
            self.add(node.line, field_, f"must be a mapping, got {_describe(node)}")
        return node.mapping

    def sequence(self, node: YNode | None, field_: str) -> list[YNode] | None:
        if node is None:
            return None
        items = node.sequence
        if items is None:
            self.add(node.line, field_, f"must be a list, got {_describe(node)}")
        elif not items:
            self.add(node.line, field_, "must not be empty")
        return items

    def keys(
        self, node: YNode | None, field_: str, allowed: Collection[str], hints: Mapping[str, str]
    ) -> None:
        # Unknown keys are reported, not ignored: a typo like `artifact_pth` must not silently
        # turn into "no artifact_path".
        for key, child in _items(node):
            if key not in allowed:
                self.add(child.line, _join(field_, key), _unknown_key_message(key, allowed, hints))

    def require(self, node: YNode | None, key: str, field_: str) -> YNode | None:
        mapping = node.mapping if node else None
        if node is None or mapping is None:
            return None  # the parent's own problem is already reported
        if key not in mapping:
            self.add(node.line, _join(field_, key), "is required but missing")
        return mapping.get(key)

    def string(self, node: YNode | None, field_: str) -> str | None:
        if node is None:
            return None
        if isinstance(node.value, str) and node.value.strip():
            return node.value
        self.add(node.line, field_, f"must be a non-empty string, got {_describe(node)}{_quote_hint(node)}")
        return None

    def strings(self, node: YNode | None, field_: str, *, non_empty: bool) -> tuple[str, ...] | None:
        items = node.sequence if node else None
        if node is None:
            return None
        if items is None or (non_empty and not items):
            self._bad_list(node, field_)
            return None
        values = [self.string(item, f"{field_}[{i}]") for i, item in enumerate(items)]
        strings = tuple(v for v in values if v is not None)
        return strings if len(strings) == len(values) else None

    def _bad_list(self, node: YNode, field_: str) -> None:
        got = "an empty list" if node.sequence == [] else _describe(node)
        self.add(node.line, field_, f"must be a non-empty list of strings, got {got}")

    def integer(self, node: YNode | None, field_: str, low: int, high: int | None) -> int | None:
        if node is None:
            return None
        value = node.value
        # bool is an int subclass in Python; `order: yes` is a typo, not 1.
        if isinstance(value, int) and not isinstance(value, bool) and _in_range(value, low, high):
            return value
        self.add(node.line, field_, f"must be an integer {_range_text(low, high)}, got {_describe(node)}")
        return None

    def safe_name(self, node: YNode | None, field_: str, *, defaulted: bool = False) -> str | None:
        name = self.string(node, field_)
        if node is None or name is None or SAFE_NAME.fullmatch(name):
            return name
        role = (
            "is also the interface name (no interface given), so it"
            if defaulted
            else "names an interface and"
        )
        self.add(node.line, field_, f"{role} must be a plain file name ({SAFE_NAME.pattern}), got {name!r}")
        return None


def read_optional(path: Path | None) -> bytes | None:
    """An optional document's bytes (`constraints.yaml`, `policy.yaml`): None when the file is
    not there, InputError when it is there but cannot be read."""
    if path is None or not path.is_file():
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        problem = Problem(str(_absolute(path)), None, "(file)", f"cannot read: {exc.strerror or exc}")
        raise InputError([problem]) from None


def _in_reading_order(problems: list[Problem]) -> list[Problem]:
    # Checks run rule by rule; operators read file by file, top to bottom.
    files = {p.file: i for i, p in reversed(list(enumerate(problems)))}
    return sorted(problems, key=lambda p: (files[p.file], p.line or 0))


def _items(node: YNode | None) -> list[tuple[str, YNode]]:
    mapping = node.mapping if node is not None else None
    return list(mapping.items()) if mapping else []


def _join(path: str, key: str) -> str:
    shown = key or '""'  # an empty key must still show up in the field path
    return f"{path}.{shown}" if path and path != DOC else shown


def _describe(node: YNode) -> str:
    value = node.value
    if value is None:
        return "nothing (empty value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"the date {value}"


def _quote_hint(node: YNode) -> str:
    scalar = not isinstance(node.value, dict | list | str) and node.value is not None
    return "; put the value in quotes to make it a string" if scalar else ""


def _in_range(value: int, low: int, high: int | None) -> bool:
    return value >= low and (high is None or value <= high)


def _range_text(low: int, high: int | None) -> str:
    return f"from {low} to {high}" if high is not None else f">= {low}"


def _unknown_key_message(key: str, allowed: Collection[str], hints: Mapping[str, str]) -> str:
    if key in hints:
        return f"unknown key: {hints[key]}"
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.7)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {suggestion}allowed here: {', '.join(sorted(allowed))}"


class _Mark:
    """Remembers the problem count so a builder can tell whether *its* part validated."""

    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.count = len(checker.problems)

    @property
    def clean(self) -> bool:
        return len(self.checker.problems) == self.count


# --------------------------------------------------------------------------------------------------
# Header (api_version, kind)

_KIND_NAMES = {
    "manifest": "a manifest (current form)",
    "update_manifest": "a manifest (seed form)",
    "topology": "a topology",
}


def _header(ck: _Checker, root: YNode, kinds: Sequence[str]) -> str | None:
    api = ck.string(ck.require(root, "api_version", ""), "api_version")
    api_node = root.mapping.get("api_version") if root.mapping else None
    if api is not None and api != API_VERSION and api_node is not None:
        ck.add(api_node.line, "api_version", f"must be {API_VERSION!r}, got {api!r}")
    kind_node = ck.require(root, "kind", "")
    kind = ck.string(kind_node, "kind")
    if kind is None or kind_node is None or kind in kinds:
        return kind
    ck.add(kind_node.line, "kind", _kind_message(kind, kinds))
    return None


def _kind_message(kind: str, kinds: Sequence[str]) -> str:
    expected = " or ".join(repr(k) for k in kinds)
    found = f" (this file is {_KIND_NAMES[kind]})" if kind in _KIND_NAMES else ""
    return f"must be {expected}, got {kind!r}{found}"


# --------------------------------------------------------------------------------------------------
# Manifest

# `constraints`: the declared constraints (issue 13), parsed by updates/engine/constraints.py.
_SEED_TOP = ("api_version", "kind", "version", "component_types", "components", "constraints")
_CURRENT_TOP = ("api_version", "kind", "name", "system_types_compatible", "component_types", "constraints")
_SEED_TYPE_KEYS = ("artifact_name", "artifact_path", "update_strategy", "update_interface")
_CURRENT_TYPE_KEYS = ("artifact_name", "artifact_path", "update_strategy")
_SEED_HINTS = {
    "name": "the seed form (kind: update_manifest) names the manifest with 'version'",
    "system_types_compatible": "only the current form (kind: manifest) has system_types_compatible",
}
_CURRENT_HINTS = {
    "version": "the current form (kind: manifest) names the manifest with 'name'",
    "components": "in the current form (kind: manifest) components live in the topology",
    "update_interface": "in the current form each topology component sets its 'interface'",
}


@dataclass
class _ManifestDraft:
    """What one manifest file yielded; ``root`` stays available for cross-file checks."""

    path: Path
    root: YNode | None = None
    form: Form | None = None
    manifest: Manifest | None = None
    components: tuple[Component, ...] | None = None


def parse_manifest(data: bytes, *, path: Path) -> tuple[Manifest, tuple[Component, ...] | None]:
    """Parse one manifest file; the components are returned only for the seed form."""
    ck = _Checker(str(_absolute(path)))
    draft = _parse_manifest(ck, data, path)
    if ck.problems or draft.manifest is None:
        raise InputError(_in_reading_order(ck.problems))
    return draft.manifest, draft.components


def _parse_manifest(ck: _Checker, data: bytes, path: Path) -> _ManifestDraft:
    draft = _ManifestDraft(_absolute(path))
    draft.root = root = ck.load(data)
    if ck.mapping(root, DOC) is None or root is None:
        return draft
    kind = _header(ck, root, ("manifest", "update_manifest"))
    if kind == "update_manifest":
        draft.form = "seed"
        draft.manifest, draft.components = _seed_manifest(ck, root, draft.path, data)
    elif kind == "manifest":
        draft.form = "current"
        draft.manifest = _current_manifest(ck, root, draft.path, data)
    return draft


def _absolute(path: Path) -> Path:
    # Lexical normalisation only: the operator's spelling of a symlinked USB mount must survive.
    return Path(os.path.normpath(path.absolute()))


def _current_manifest(ck: _Checker, root: YNode, path: Path, raw: bytes) -> Manifest | None:
    mark = _Mark(ck)
    ck.keys(root, "", _CURRENT_TOP, _CURRENT_HINTS)
    name = ck.string(ck.require(root, "name", ""), "name")
    stc_node = ck.require(root, "system_types_compatible", "")
    systems = ck.strings(stc_node, "system_types_compatible", non_empty=True)
    targets = _targets(ck, root, "current", path.parent)
    if not mark.clean or name is None or systems is None:
        return None
    return Manifest("current", name, systems, targets, path, raw)


def _seed_manifest(
    ck: _Checker, root: YNode, path: Path, raw: bytes
) -> tuple[Manifest | None, tuple[Component, ...] | None]:
    mark = _Mark(ck)
    ck.keys(root, "", _SEED_TOP, _SEED_HINTS)
    name = ck.string(ck.require(root, "version", ""), "version")
    targets = _targets(ck, root, "seed", path.parent)
    components = _seed_components(ck, root)
    if not mark.clean or name is None or components is None:
        return None, None
    return Manifest("seed", name, (), targets, path, raw), components


def _targets(ck: _Checker, root: YNode, form: Form, base: Path) -> dict[str, TypeTarget]:
    node = ck.require(root, "component_types", "")
    entries = ck.mapping(node, "component_types")
    if node is not None and entries == {}:
        ck.add(node.line, "component_types", "must list at least one component type")
    targets: dict[str, TypeTarget] = {}
    for type_name, entry in (entries or {}).items():
        target = _target(ck, type_name, entry, form, base)
        if target is not None:
            targets[type_name] = target
    return targets


def _target(ck: _Checker, type_name: str, entry: YNode, form: Form, base: Path) -> TypeTarget | None:
    mark = _Mark(ck)
    where = _join("component_types", type_name)
    if not type_name.strip():
        ck.add(entry.line, where, "a component type name must not be empty")
    if ck.mapping(entry, where) is None:
        return None
    allowed = _SEED_TYPE_KEYS if form == "seed" else _CURRENT_TYPE_KEYS
    ck.keys(entry, where, allowed, _CURRENT_HINTS if form == "current" else {})
    name, path = _artifact(ck, entry, where, base)
    order = _order(ck, entry, where, form)
    if form == "seed" and entry.mapping and "update_interface" in entry.mapping:
        ck.safe_name(entry.mapping["update_interface"], f"{where}.update_interface")
    if not mark.clean or order is None:
        return None
    return TypeTarget(type_name, name, path, order)


def _artifact(ck: _Checker, entry: YNode, where: str, base: Path) -> tuple[str | None, Path | None]:
    mapping = entry.mapping or {}
    if "artifact_name" not in mapping and "artifact_path" not in mapping:
        ck.add(entry.line, where, "needs artifact_name or artifact_path (or both)")
    name = ck.string(mapping.get("artifact_name"), f"{where}.artifact_name")
    raw_path = ck.string(mapping.get("artifact_path"), f"{where}.artifact_path")
    return name, resolve_artifact_path(raw_path, base) if raw_path is not None else None


def resolve_artifact_path(value: str, manifest_dir: Path) -> Path:
    """Absolute paths stay; relative ones are taken from the manifest's own directory."""
    return Path(os.path.normpath(manifest_dir / Path(value)))


def _order(ck: _Checker, entry: YNode, where: str, form: Form) -> int | None:
    strategy = ck.require(entry, "update_strategy", where)
    if ck.mapping(strategy, f"{where}.update_strategy") is None:
        return None
    ck.keys(strategy, f"{where}.update_strategy", ("order",), {})
    order = ck.require(strategy, "order", f"{where}.update_strategy")
    low, high = CURRENT_ORDER if form == "current" else (SEED_MIN_ORDER, None)
    return ck.integer(order, f"{where}.update_strategy.order", low, high)


# --------------------------------------------------------------------------------------------------
# Components (seed: inline in the manifest; current: in the topology)

_SEED_COMPONENT_KEYS = ("component_type", "id", "args")
_SEED_COMPONENT_HINTS = {
    "interface_args": "the seed form calls these 'args'",
    "interface": "the seed form sets the interface per type (component_types.<type>.update_interface)",
}
_TOPOLOGY_COMPONENT_KEYS = ("component_type", "interface", "interface_args")
_TOPOLOGY_COMPONENT_HINTS = {
    "id": "component IDs come from the interface's Identity query, not from the topology",
    "args": "the topology calls these 'interface_args'",
    "update_interface": "the topology calls this 'interface'",
}


def _seed_components(ck: _Checker, root: YNode) -> tuple[Component, ...] | None:
    mark = _Mark(ck)
    items = ck.sequence(ck.require(root, "components", ""), "components")
    types = dict(_items(root.mapping.get("component_types") if root.mapping else None))
    seen_ids: dict[str, str] = {}
    built = [
        _seed_component(ck, item, f"components[{i}]", types, seen_ids) for i, item in enumerate(items or [])
    ]
    components = tuple(c for c in built if c is not None)
    return components if mark.clean and items else None


def _seed_component(
    ck: _Checker, item: YNode, where: str, types: Mapping[str, YNode], seen_ids: dict[str, str]
) -> Component | None:
    if ck.mapping(item, where) is None:
        return None
    ck.keys(item, where, _SEED_COMPONENT_KEYS, _SEED_COMPONENT_HINTS)
    type_node = ck.require(item, "component_type", where)
    type_name = ck.string(type_node, f"{where}.component_type")
    component_id = _unique_id(ck, ck.require(item, "id", where), f"{where}.id", seen_ids)
    args = _args(ck, item, where, "args")
    interface = _seed_interface(ck, type_node, type_name, where, types)
    if type_name is None or component_id is None or args is None or interface is None:
        return None
    return Component(type_name, interface, args, component_id)


def _seed_interface(
    ck: _Checker, type_node: YNode | None, type_name: str | None, where: str, types: Mapping[str, YNode]
) -> str | None:
    if type_node is None or type_name is None:
        return None
    if type_name not in types:
        ck.add(type_node.line, f"{where}.component_type", f"{type_name!r} has no entry in component_types")
        return None
    explicit = dict(_items(types[type_name])).get("update_interface")
    if explicit is not None:
        # Validated (and reported) once, at the component_types entry.
        return explicit.value if isinstance(explicit.value, str) else None
    return ck.safe_name(type_node, f"{where}.component_type", defaulted=True)


def _unique_id(ck: _Checker, node: YNode | None, where: str, seen: dict[str, str]) -> str | None:
    component_id = ck.string(node, where)
    if node is None or component_id is None:
        return None
    if component_id in seen:
        ck.add(
            node.line, where, f"duplicate component id {component_id!r} (also used by {seen[component_id]})"
        )
        return None
    seen[component_id] = f"{where} at line {node.line}"
    return component_id


def _args(ck: _Checker, item: YNode, where: str, key: str) -> tuple[str, ...] | None:
    node = item.mapping.get(key) if item.mapping else None
    if node is None:
        return ()
    return ck.strings(node, f"{where}.{key}", non_empty=False)


def _topology_component(ck: _Checker, item: YNode, where: str) -> Component | None:
    if ck.mapping(item, where) is None:
        return None
    ck.keys(item, where, _TOPOLOGY_COMPONENT_KEYS, _TOPOLOGY_COMPONENT_HINTS)
    type_node = ck.require(item, "component_type", where)
    type_name = ck.string(type_node, f"{where}.component_type")
    interface = _topology_interface(ck, item, where, type_node)
    args = _args(ck, item, where, "interface_args")
    if type_name is None or interface is None or args is None:
        return None
    return Component(type_name, interface, args, None)


def _topology_interface(ck: _Checker, item: YNode, where: str, type_node: YNode | None) -> str | None:
    explicit = item.mapping.get("interface") if item.mapping else None
    if explicit is not None:
        return ck.safe_name(explicit, f"{where}.interface")
    if type_node is None or not isinstance(type_node.value, str):
        return None  # the missing/odd component_type is reported on its own
    return ck.safe_name(type_node, f"{where}.component_type", defaulted=True)


# --------------------------------------------------------------------------------------------------
# Topology

_TOPOLOGY_TOP = ("api_version", "kind", "system_type", "components")
_TOPOLOGY_HINTS = {
    "system_types_compatible": "that belongs in the manifest; the topology has 'system_type'",
    "component_types": "component_types belongs in the manifest; the topology lists 'components'",
}
COMPONENTS_FILE_LABEL = "<topology components file>"


@dataclass(frozen=True)
class _Use:
    """Where the topology uses a component type, for the manifest cross-check."""

    component_type: str
    file: str
    line: int
    field: str


@dataclass
class _TopologyDraft:
    system_type: str | None = None
    uses: list[_Use] = field(default_factory=list)
    topology: Topology | None = None


def parse_topology(
    data: bytes,
    *,
    path: Path,
    components_data: bytes | None = None,
    components_path: Path | None = None,
) -> Topology:
    """Parse a topology; ``components_data`` is the split-off components file, if any."""
    ck = _Checker(str(_absolute(path)))
    draft = _parse_topology(ck, data, path, components_data, components_path)
    if ck.problems or draft.topology is None:
        raise InputError(_in_reading_order(ck.problems))
    return draft.topology


def _parse_topology(
    ck: _Checker, data: bytes, path: Path, components_data: bytes | None, components_path: Path | None
) -> _TopologyDraft:
    mark = _Mark(ck)
    draft = _TopologyDraft()
    root = ck.load(data)
    side = _components_file(ck, components_data, components_path)
    if root is None or ck.mapping(root, DOC) is None:
        return draft
    _header(ck, root, ("topology",))
    ck.keys(root, "", _TOPOLOGY_TOP, _TOPOLOGY_HINTS)
    draft.system_type = ck.string(ck.require(root, "system_type", ""), "system_type")
    list_ck, list_node = _components_source(ck, root, side)
    components = _topology_components(list_ck, list_node, draft.uses)
    if mark.clean and draft.system_type is not None and components is not None:
        source = ", ".join([ck.file] + ([side[0].file] if side else []))
        draft.topology = Topology(draft.system_type, components, source)
    return draft


def _components_file(
    ck: _Checker, data: bytes | None, path: Path | None
) -> tuple[_Checker, YNode | None] | None:
    """Load the split-off components file: a mapping holding only ``components``."""
    if data is None:
        return None
    side = ck.for_file(str(_absolute(path)) if path is not None else COMPONENTS_FILE_LABEL)
    root = side.load(data)
    if side.mapping(root, DOC) is not None:
        side.keys(root, "", ("components",), {})
    return side, root


def _components_source(
    ck: _Checker, root: YNode, side: tuple[_Checker, YNode | None] | None
) -> tuple[_Checker, YNode | None]:
    """Pick where ``components`` comes from: exactly one of the two files must define it."""
    here = root.mapping.get("components") if root.mapping else None
    if side is None:
        if here is None:
            ck.add(
                root.line,
                "components",
                f"missing: list the components here or in a file given by {COMPONENTS_FILE_HINT}",
            )
        return ck, here
    side_ck, side_root = side
    there = side_root.mapping.get("components") if side_root and side_root.mapping else None
    if here is not None:
        _report_both(ck, here, side_ck, there or side_root)
        return ck, None
    if there is None and side_root is not None and side_root.mapping is not None:
        side_ck.add(
            side_root.line, "components", f"missing here and in {ck.file}: define it in exactly one of them"
        )
    return side_ck, there


def _report_both(ck: _Checker, here: YNode, side_ck: _Checker, there: YNode | None) -> None:
    rule = "components must be defined in exactly one place"
    ck.add(here.line, "components", f"also given by the components file {side_ck.file}; {rule}")
    side_ck.add(there.line if there else 1, "components", f"also defined in the topology {ck.file}; {rule}")


def _topology_components(ck: _Checker, node: YNode | None, uses: list[_Use]) -> tuple[Component, ...] | None:
    mark = _Mark(ck)
    items = ck.sequence(node, "components")
    built = []
    for i, item in enumerate(items or []):
        where = f"components[{i}]"
        built.append(_topology_component(ck, item, where))
        type_node = item.mapping.get("component_type") if item.mapping else None
        if type_node is not None and isinstance(type_node.value, str):
            uses.append(_Use(type_node.value, ck.file, type_node.line, f"{where}.component_type"))
    components = tuple(c for c in built if c is not None)
    return components if mark.clean and items else None


# --------------------------------------------------------------------------------------------------
# Both files together


def load_desired_state(
    manifest_path: Path,
    *,
    topology_dir: Path | None,
    topology_components: Path | None = None,
    manifest_data: bytes | None = None,
    check_artifact_paths: bool = False,
) -> DesiredState:
    """Read, validate and cross-check manifest and topology; raise one InputError listing every problem.

    Seed manifests carry their components, so ``topology_dir`` and ``topology_components`` are
    ignored for them. ``topology_components`` is the already-resolved components file (CLI ``-t``,
    env or config; the caller owns precedence). ``manifest_data`` replaces reading the file.

    ``check_artifact_paths``: for a manifest about to be applied from where it lies, a missing
    artifact file is reported with the other problems, before any component is queried. (A
    bundle being checked finds its artifacts among its members, not on disk.)
    """
    ck = _Checker(str(_absolute(manifest_path)))
    # `manifest_data`: a snapshot (e.g. the previous manifest), parsed as if read from its
    # original path so relative artifact paths still resolve against that directory.
    data = manifest_data if manifest_data is not None else _read(ck, manifest_path)
    draft = _parse_manifest(ck, data, manifest_path) if data is not None else _ManifestDraft(manifest_path)
    if check_artifact_paths:
        _check_artifact_paths(ck, draft)
    topology: Topology | None = None
    if draft.form == "seed" and draft.components is not None:
        topology = Topology(None, draft.components, str(draft.path))
    elif draft.form == "current":
        topology = _current_topology(ck, draft, topology_dir, topology_components)
    if ck.problems or draft.manifest is None or topology is None:
        raise InputError(_in_reading_order(ck.problems))
    return DesiredState(draft.manifest, topology)


def _check_artifact_paths(ck: _Checker, draft: _ManifestDraft) -> None:
    """An `artifact_path` without an `artifact_name` is the only way to the artifact: if the file
    is not there, no source can supply it. (With a name, the store or a server still may.)"""
    types = dict(_items(draft.root)).get("component_types")
    for type_name, entry in _items(types):
        fields = dict(_items(entry))
        node = fields.get("artifact_path")
        if (
            node is None
            or "artifact_name" in fields
            or not isinstance(node.value, str)
            or not node.value.strip()
        ):
            continue
        path = resolve_artifact_path(node.value, draft.path.parent)
        if not path.is_file():
            where = f"{_join('component_types', type_name)}.artifact_path"
            reason = "does not exist" if not path.exists() else "is not a file"
            ck.add(node.line, where, f"{path} {reason} (and there is no artifact_name to look it up by)")


def _read(ck: _Checker, path: Path) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            # One byte over the cap is enough for the YAML loader to refuse an oversized file.
            return handle.read(yamlpos.MAX_BYTES + 1)
    except OSError as exc:
        ck.for_file(str(_absolute(path))).add(None, "(file)", f"cannot read: {exc.strerror or exc}")
        return None


def _current_topology(
    ck: _Checker, draft: _ManifestDraft, topology_dir: Path | None, components_path: Path | None
) -> Topology | None:
    if topology_dir is None:
        ck.add(
            None,
            "(topology)",
            "a 'kind: manifest' manifest needs a topology, but no topology directory is set",
        )
        return None
    topology_path = topology_dir / TOPOLOGY_FILE
    data = _read(ck, topology_path)
    components_data = _read(ck, components_path) if components_path is not None else None
    if data is None or (components_path is not None and components_data is None):
        return None
    topology_ck = ck.for_file(str(_absolute(topology_path)))
    topology = _parse_topology(topology_ck, data, topology_path, components_data, components_path)
    _cross_check(ck, draft.root, topology)
    return topology.topology


def _cross_check(ck: _Checker, root: YNode | None, topology: _TopologyDraft) -> None:
    mapping = root.mapping if root is not None else None
    if mapping is None:
        return
    _check_system_type(ck, mapping.get("system_types_compatible"), topology.system_type)
    _check_types_covered(ck, mapping.get("component_types"), topology.uses)


def _check_system_type(ck: _Checker, node: YNode | None, system_type: str | None) -> None:
    if not node or not node.sequence or system_type is None:
        return  # an absent or empty list is reported by the manifest's own checks
    if system_type not in [item.value for item in node.sequence]:
        message = f"does not contain this system's type {system_type!r} (topology system_type)"
        ck.add(node.line, "system_types_compatible", message)


def _check_types_covered(ck: _Checker, node: YNode | None, uses: Sequence[_Use]) -> None:
    if node is None or node.mapping is None:
        return
    reported: set[str] = set()
    for use in uses:
        if use.component_type in node.mapping or use.component_type in reported:
            continue
        reported.add(use.component_type)
        message = (
            f"missing: the topology has a component of this type ({use.file}:{use.line}, {use.field}); "
            "every topology component needs an entry (name the artifact it runs to leave it unchanged)"
        )
        ck.add(node.line, f"component_types.{use.component_type}", message)

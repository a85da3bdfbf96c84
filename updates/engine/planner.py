"""Inspection and selection: everything decided before the first interface state runs.

Selection follows the Mender orchestrator's rules (docs/protocol.md §3.1): a component whose current
provides already match its artifact is skipped, depends and device types are checked, and a
component without a usable artifact fails the whole update *before anything is touched*.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypedDict

from updates.engine.artifact import ArtifactError, ArtifactInfo, PublicKey
from updates.engine.errors import InvalidInput, UnavailableError
from updates.engine.manifest import Component, DesiredState, TypeTarget
from updates.engine.provides import device_type_ok, is_installed, unmet_depends
from updates.engine.streaming import planned_size, read_planned


class SelectionError(InvalidInput):
    """The update cannot start; every problem is listed. Nothing has been touched."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Inspected:
    """What a component runs now, from its `Identity` and `Provides` answers."""

    component: Component
    component_id: str
    provides: dict[str, str]

    @property
    def key(self) -> str:
        return component_key(self.component.component_type, self.component_id)


@dataclass(frozen=True)
class Target:
    """One component's part of the plan."""

    key: str
    component: Component
    component_id: str
    order: int
    current: dict[str, str]
    action: Literal["install", "skip"]
    artifact_path: Path | None = None
    artifact: ArtifactInfo | None = None

    @property
    def current_version(self) -> str:
        return describe_version(self.current, self.component.interface)

    @property
    def target_version(self) -> str:
        return self.artifact.name if self.artifact else self.current_version


class TargetJson(TypedDict):
    """One component of a stored plan (`Deployment.plan["components"]`, `plan --json`)."""

    key: str
    component_type: str
    component_id: str
    interface: str
    order: int
    action: Literal["install", "skip"]
    current: str  # version it ran when planned
    target: str  # version the plan installs (= current when skipped)
    artifact: str  # path of the artifact file, "" if none
    interface_args: list[str]
    spec_id: str | None  # the component ID the manifest or topology gave (seed form), if any
    provides: dict[str, str]  # its Provides when planned


def target_versions(c: TargetJson) -> dict[str, object]:
    """A planned component's identity and versions before (`current`) and after (`target`): what
    the audit journal and the deployment detail show of it."""
    return {
        "key": c["key"],
        "component_type": c["component_type"],
        "component_id": c["component_id"],
        "action": c["action"],
        "current": c["current"],
        "target": c["target"],
    }


class PlanJson(TypedDict):
    """The stored form of a `Plan`: written by `Plan.to_json`, read by `Plan.from_json`."""

    groups: list[tuple[int, list[str]]]
    components: list[TargetJson]


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    groups: tuple[tuple[int, tuple[str, ...]], ...] = field(default=())

    def installing(self) -> list[Target]:
        return [t for t in self.targets if t.action == "install"]

    def target(self, key: str) -> Target:
        return next(t for t in self.targets if t.key == key)

    def to_json(self) -> PlanJson:
        return {
            "groups": [(order, list(keys)) for order, keys in self.groups],
            "components": [_target_json(t) for t in self.targets],
        }

    @classmethod
    def from_json(cls, data: PlanJson, *, keys: Sequence[PublicKey]) -> Plan:
        """Rebuild a stored plan; the artifacts it installs are re-read (and re-verified)."""
        targets = tuple(_target_from_json(c, keys=keys) for c in data["components"])
        groups = tuple((order, tuple(names)) for order, names in data["groups"])
        return cls(targets=targets, groups=groups)


def _target_json(t: Target) -> TargetJson:
    return {
        "key": t.key,
        "component_type": t.component.component_type,
        "component_id": t.component_id,
        "interface": t.component.interface,
        "order": t.order,
        "action": t.action,
        "current": t.current_version,
        "target": t.target_version,
        "artifact": str(t.artifact_path or ""),
        "interface_args": list(t.component.interface_args),
        "spec_id": t.component.component_id,
        "provides": t.current,
    }


def _target_from_json(c: TargetJson, *, keys: Sequence[PublicKey]) -> Target:
    component = Component(
        component_type=c["component_type"],
        interface=c["interface"],
        interface_args=tuple(c["interface_args"]),
        component_id=c["spec_id"],
    )
    path = Path(c["artifact"]) if c["artifact"] else None
    return Target(
        key=c["key"],
        component=component,
        component_id=c["component_id"],
        order=c["order"],
        current=c["provides"],
        action=c["action"],
        artifact_path=path,
        artifact=read_planned(path, keys=keys) if path and c["action"] == "install" else None,
    )


_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]")


def component_key(component_type: str, component_id: str) -> str:
    """`<type>.<id>`: the name used in show-provides, step records and work-dir paths."""
    return f"{component_type}.{_SAFE_KEY.sub('_', component_id)}"


def describe_version(provides: dict[str, str], interface: str) -> str:
    for key in (f"rootfs-image.{interface}.version", "rootfs-image.version", "artifact_name", "version"):
        if key in provides:
            return provides[key]
    return "unknown"


class SourceError(UnavailableError):
    """An `ArtifactSource` could not answer (server down, refused, bad download). The message
    names the source and the reason, e.g. "artifact server https://…: HTTP 500 …"."""


class ArtifactSource(Protocol):
    """Where `artifact_name` is looked up when `artifact_path` does not exist: the artifact
    store, then an artifact server. Returns local, complete `.mender` files (downloaded if need
    be) that are candidates for this component type; [] when the name is unknown there.
    Raises SourceError when it cannot tell (its failure becomes the component's problem)."""

    def candidates(self, *, artifact_name: str, component_type: str) -> list[Path]: ...


def select(
    desired: DesiredState,
    inspected: Sequence[Inspected],
    *,
    keys: Sequence[PublicKey] = (),
    sources: Sequence[ArtifactSource] = (),
) -> Plan:
    """Decide, per component, skip or install which artifact; raise with *all* problems."""
    _check_unique_ids(inspected)
    chooser = _Chooser(keys=keys, sources=sources)
    targets = []
    for item in inspected:
        spec = desired.manifest.targets[item.component.component_type]
        target = chooser.choose(item, spec)
        if target is not None:
            targets.append(target)
    if chooser.problems:
        raise SelectionError(chooser.problems)
    return Plan(targets=tuple(targets), groups=_groups(targets))


def _check_unique_ids(inspected: Sequence[Inspected]) -> None:
    seen: dict[str, str] = {}
    problems = []
    for item in inspected:
        if item.key in seen:
            problems.append(f"{item.key}: component ID {item.component_id!r} is not unique in the system")
        seen[item.key] = item.component_id
    if problems:
        raise SelectionError(problems)


class _Chooser:
    """Selection per docs/protocol.md §3.1: find the candidates, read and verify them, then
    `choose_artifact` among them."""

    def __init__(self, *, keys: Sequence[PublicKey], sources: Sequence[ArtifactSource]) -> None:
        self.keys = keys
        self.sources = sources
        self.cache: dict[Path, ArtifactInfo | str] = {}
        self.problems: list[str] = []

    def choose(self, item: Inspected, spec: TypeTarget) -> Target | None:
        paths, failures = self._candidates(spec, item.component.component_type)
        if not paths:
            self.problems.append(_missing_artifact(item, spec, failures))
            return None
        candidates = []
        for path in paths:
            info = self._read(path)
            if isinstance(info, str):
                self.problems.append(f"{item.key}: {info}")
            else:
                candidates.append(Candidate(label=path.name, info=info, size=planned_size(path), path=path))
        choice = choose_artifact(item, candidates)
        if choice.candidate is None:
            self.problems.extend(choice.problems)
            return None
        return Target(
            key=item.key,
            component=item.component,
            component_id=item.component_id,
            order=spec.order,
            current=item.provides,
            action="skip" if choice.installed else "install",
            artifact_path=choice.candidate.path,
            artifact=choice.candidate.info,
        )

    def _candidates(self, spec: TypeTarget, component_type: str) -> tuple[list[Path], list[str]]:
        """The first source's candidates, and the failures of the sources asked before it."""
        if spec.artifact_path is not None and spec.artifact_path.is_file():
            return [spec.artifact_path], []  # an existing artifact_path wins over artifact_name
        if not spec.artifact_name:
            return [], []
        return find_in_sources(self.sources, artifact_name=spec.artifact_name, component_type=component_type)

    def _read(self, path: Path) -> ArtifactInfo | str:
        # Full streaming verification up front: a corrupt or unsigned artifact must stop the
        # update before the first component is touched, not in the middle of group 20.
        if path not in self.cache:
            try:
                self.cache[path] = read_planned(path, keys=self.keys)
            except ArtifactError as exc:
                self.cache[path] = f"{path}: {exc}"
        return self.cache[path]


def find_in_sources(
    sources: Sequence[ArtifactSource], *, artifact_name: str, component_type: str
) -> tuple[list[Path], list[str]]:
    """The first source's candidates for a name, and the failures of the sources asked before it.
    A failing source does not stop the search: a later one may still have the artifact, and if
    none does, the failures (not "not found") are the reason."""
    failures = []
    for source in sources:
        try:
            found = source.candidates(artifact_name=artifact_name, component_type=component_type)
        except SourceError as exc:
            failures.append(str(exc))
            continue
        if found:
            return found, []
    return [], failures


@dataclass(frozen=True)
class Candidate:
    """An artifact that may go on a component: how to name it in a message, what it is, its size,
    and its file when it has one (bundle checks may judge a member before it has a path)."""

    label: str
    info: ArtifactInfo
    size: int
    path: Path | None = None


@dataclass(frozen=True)
class Choice:
    candidate: Candidate | None  # None: no candidate is usable; `problems` says why
    installed: bool = False  # the candidate is what the component runs already: skip it
    problems: tuple[str, ...] = ()


def choose_artifact(item: Inspected, candidates: Sequence[Candidate]) -> Choice:
    """docs/protocol.md §3.1 among a component's candidates: drop the incompatible, take one already
    installed (skip), otherwise the smallest. Bundle checks call this too, so an accepted bundle
    plans exactly as it was checked."""
    usable: list[Candidate] = []
    problems: list[str] = []
    for candidate in candidates:
        reasons = incompatibilities(item, candidate.info)
        problems.extend(f"{item.key}: {candidate.label}: {reason}" for reason in reasons)
        if not reasons:
            usable.append(candidate)
    if not usable:
        return Choice(None, problems=tuple(problems))
    installed = [c for c in usable if _installed(item, c.info)]
    if installed:
        return Choice(installed[0], installed=True)
    return Choice(min(usable, key=lambda c: c.size))


def _installed(item: Inspected, info: ArtifactInfo) -> bool:
    return is_installed(item.provides, provides=info.all_provides(), clears=info.clears_provides)


def _missing_artifact(item: Inspected, spec: TypeTarget, failures: Sequence[str] = ()) -> str:
    if failures:
        # A source failed: that, not "not found", is why there is no artifact.
        where = f"artifact_path {spec.artifact_path} does not exist and " if spec.artifact_path else ""
        where += f"artifact {spec.artifact_name!r} is not in the artifact store; " + "; ".join(failures)
        return f"{item.key}: {where}"
    if spec.artifact_path is not None:
        where = f"artifact_path {spec.artifact_path} does not exist"
        if spec.artifact_name:
            where += f" and artifact {spec.artifact_name!r} is not in the artifact store"
        return f"{item.key}: {where}"
    return f"{item.key}: artifact {spec.artifact_name!r} is not in the artifact store and no artifact server is configured"


def incompatibilities(item: Inspected, info: ArtifactInfo) -> list[str]:
    """Why `info` cannot go on this component (device type, interface, depends); [] if it can.
    Shared with bundle ingest, so a bundle is checked by the same rules as an install."""
    reasons = []
    ctype = item.component.component_type
    if not device_type_ok(ctype, info.device_types):
        reasons.append(
            f"artifact is for device types {list(info.device_types)}, not component type {ctype!r}"
        )
    if info.payload_type not in (item.component.interface, None) and info.payload_type != "rootfs-image":
        reasons.append(
            f"payload type {info.payload_type!r} does not match interface {item.component.interface!r}"
        )
    depends: dict[str, list[str]] = dict(info.depends)
    if info.depends_artifact_name:
        depends["artifact_name"] = list(info.depends_artifact_name)
    if info.depends_artifact_group:
        depends["artifact_group"] = list(info.depends_artifact_group)
    reasons.extend(unmet_depends(item.provides, depends))
    return reasons


def _groups(targets: Sequence[Target]) -> tuple[tuple[int, tuple[str, ...]], ...]:
    orders = sorted({t.order for t in targets})
    return tuple((o, tuple(t.key for t in targets if t.order == o)) for o in orders)

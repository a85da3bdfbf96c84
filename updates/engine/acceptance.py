"""Bundle acceptance: every rule a bundle must pass before it can be deployed, in one place.

Pure (no Django): the service (`updates.services.bundles`) ingests the upload, loads its manifest
against this system's topology, and hands over what it found (`Findings`) plus a way to ask the
system the rest lazily (`Lookups`: the store and the artifact server, the device type file, what
the components run now). `accept` applies the rules and returns every problem at once, with one
row per check for the bundle's page, like the manifest checks do (`manifest._Checker`).

Lookups are lazy for a reason: asking an artifact server or the live components costs seconds,
so the store is asked only for a type the bundle does not carry, and the components only when
everything else passed (an incompatibility is meaningless for a bundle already rejected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from updates.engine.artifact import ArtifactError, ArtifactInfo
from updates.engine.bundle import Intake
from updates.engine.bundle import StoredArtifact as Carried
from updates.engine.manifest import Component, DesiredState, InputError, TypeTarget, parse_topology
from updates.engine.planner import Candidate, Inspected, SelectionError, choose_artifact
from updates.engine.provides import device_type_ok

# The rows of a bundle's checks, in the order they are shown.
KEYS = "verification keys"
SPACE = "disk space"
ARCHIVE = "archive and artifacts"
SIGNATURES = "signatures"
MANIFEST = "manifest"
TOPOLOGY = "bundle topology"
MANIFEST_ARTIFACT = "manifest artifact"
RESOLVABLE = "artifacts present or resolvable"
COMPATIBILITY = "compatibility"


@dataclass
class Checks:
    """One row per check (`ok`, and its problems or what it found), and every problem, prefixed
    with its check's name."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, check: str, problems: Sequence[str], detail: str = "") -> None:
        self.rows.append({"check": check, "ok": not problems, "detail": "; ".join(problems) or detail})
        self.problems.extend(f"{check}: {p}" for p in problems)


@dataclass(frozen=True)
class Verdict:
    checks: Checks
    manifest_name: str = ""  # the accepted manifest's `name`
    resolved: dict[str, list[str]] = field(default_factory=dict)  # type -> candidate labels

    @property
    def accepted(self) -> bool:
        return not self.checks.problems


@dataclass(frozen=True)
class Findings:
    """What the service found before the rules run."""

    intake: Intake
    directory: Path  # where the bundle's files go once accepted: its artifact_paths point inside
    keys_configured: bool  # ArtifactVerifyKey(s) set: then every artifact had to be signed
    keys_problem: str | None = None  # the configured keys could not be read
    space_problem: str | None = None  # the upload cannot fit: nothing was ingested
    desired: DesiredState | None = None  # the bundle's manifest, loaded against our topology
    manifest_problems: Sequence[str] = ()  # why it could not be loaded


class Lookups(Protocol):
    """The questions the rules may ask the system (each answered only when needed)."""

    def device_type(self) -> tuple[str | None, str]:
        """This device's Mender device type and where it came from (or why there is none)."""
        ...

    def file_here(self, path: Path) -> bool:
        """A file at `path` on this appliance."""
        ...

    def in_sources(self, *, artifact_name: str, component_type: str) -> tuple[list[Path], list[str]]:
        """`planner.find_in_sources` over the store and the artifact server."""
        ...

    def read_header(self, path: Path) -> tuple[ArtifactInfo, int]:
        """The header (signature checked) and size of a store file; raises ArtifactError."""
        ...

    def inspect(self, components: Sequence[Component]) -> list[Inspected]:
        """What the components run now; raises SelectionError."""
        ...


def accept(found: Findings, ask: Lookups) -> Verdict:
    """Every rule, every problem: the bundle is accepted when the verdict has none."""
    checks = Checks()
    if found.keys_problem is not None:
        checks.add(KEYS, [found.keys_problem])
    if found.space_problem is not None:
        checks.add(SPACE, [found.space_problem])
        return Verdict(checks)  # nothing was read: no other check has anything to look at
    intake = found.intake
    checks.add(ARCHIVE, intake.problems, _verified(intake))
    checks.add(SIGNATURES, [], _signatures(intake, found.keys_configured))
    if intake.manifest is None:
        return Verdict(checks)  # the archive check says the manifest is missing
    desired = found.desired
    if desired is None:
        # Name the file as it is in the bundle, not by the bundle directory it would have had.
        checks.add(MANIFEST, [p.replace(f"{found.directory}/", "") for p in found.manifest_problems])
        return Verdict(checks)
    checks.add(MANIFEST, [], f"{desired.manifest.name} ({desired.manifest.form} form)")
    check_topology(intake, desired, checks)
    check_manifest_artifact(intake, desired, ask, checks)
    candidates = resolve(intake, desired, found.directory, ask, checks)
    if not checks.problems:
        check_compatibility(desired, candidates, ask, checks)
    resolved = {ctype: [c.label for c in cs] for ctype, cs in candidates.items()}
    return Verdict(checks, manifest_name=desired.manifest.name, resolved=resolved)


def _verified(intake: Intake) -> str:
    names = [f"{a.member} ({a.info.name})" for a in intake.artifacts]
    return (
        f"{len(names)} artifact(s) verified and stored: {', '.join(names)}"
        if names
        else "no artifacts carried"
    )


def _signatures(intake: Intake, keys_configured: bool) -> str:
    if not keys_configured:
        return "no ArtifactVerifyKey(s) configured: signatures not required"
    every = list(intake.artifacts) + ([intake.manifest_artifact] if intake.manifest_artifact else [])
    return "; ".join(
        f"{a.member or 'manifest artifact'}: signed by {a.info.signer_fingerprint}" for a in every
    )


# ----- which system the bundle is for ------------------------------------------------------------


def check_topology(intake: Intake, desired: DesiredState, checks: Checks) -> None:
    """A topology carried in the bundle must be for this system's type."""
    if intake.topology is None or intake.topology_member is None:
        return
    try:
        theirs = parse_topology(intake.topology, path=Path(intake.topology_member))
    except InputError as exc:
        checks.add(TOPOLOGY, [str(p) for p in exc.problems])
        return
    ours = desired.topology.system_type
    problems = (
        []
        if ours in (None, theirs.system_type)
        else [
            f"{intake.topology_member}: made for system type {theirs.system_type!r}, this system is {ours!r}"
        ]
    )
    checks.add(TOPOLOGY, problems, f"system type {theirs.system_type}")


def check_manifest_artifact(intake: Intake, desired: DesiredState, ask: Lookups, checks: Checks) -> None:
    if intake.manifest_artifact is None:
        return
    info = intake.manifest_artifact.info
    problem, detail = manifest_artifact_fit(
        info.name, info.device_types, system_type=desired.topology.system_type, device_type=ask.device_type()
    )
    checks.add(MANIFEST_ARTIFACT, [problem] if problem else [], detail)


def manifest_artifact_fit(
    name: str, device_types: Sequence[str], *, system_type: str | None, device_type: tuple[str | None, str]
) -> tuple[str | None, str]:
    """(problem or None, what matched) for a manifest artifact on this system.

    A Mender client matches a manifest artifact's compatible types against its device type
    (standard tier) or the system type (system tier); `mender-orchestrator-manifest-gen -t
    gateway` builds it for the system device's own type. Either is accepted; the YAML's
    `system_types_compatible` is checked against the topology by the manifest checks.
    `device_type` is `bundle.read_device_type`'s answer: the type and where it came from.
    """
    types = list(device_types)
    if system_type is not None and system_type in types:
        return None, f"{name}: its compatible types {types} contain the system type {system_type!r}"
    device, source = device_type
    if device is not None and device in types:
        return None, f"{name}: its compatible types {types} contain this device's type {device!r} ({source})"
    if system_type is None:
        return None, f"{name} for {types} (a seed-form system has no system type to match)"
    described = (
        f"this device's type {device!r} ({source})" if device else f"this device's type (unknown: {source})"
    )
    return (
        f"manifest artifact {name!r} is for {types}: that is neither the system type {system_type!r} nor {described}",
        f"{name} for {types}",
    )


# ----- artifacts: present or resolvable ------------------------------------------------------------


def resolve(
    intake: Intake, desired: DesiredState, directory: Path, ask: Lookups, checks: Checks
) -> dict[str, list[Candidate]]:
    """Each component type's candidates: carried in the bundle, else in the store or on the server."""
    found: dict[str, list[Candidate]] = {}
    problems: list[str] = []
    for ctype, spec in desired.manifest.targets.items():
        candidates, problem = _candidates(intake, spec, directory, ask)
        if problem:
            problems.append(f"component_types.{ctype}: {problem}")
        found[ctype] = candidates
    detail = "; ".join(f"{t}: {', '.join(c.label for c in cs)}" for t, cs in found.items())
    checks.add(RESOLVABLE, problems, detail)
    return found


def _candidates(
    intake: Intake, spec: TypeTarget, directory: Path, ask: Lookups
) -> tuple[list[Candidate], str | None]:
    if spec.artifact_path is not None:
        member, problem = _by_path(intake, spec, directory, ask)
        if member is not None or problem is not None:
            return ([_carried(member)] if member else []), problem
    name = spec.artifact_name
    assert name is not None  # the manifest parser requires a path or a name
    own = [
        a
        for a in intake.artifacts
        if a.info.name == name and device_type_ok(spec.component_type, a.info.device_types)
    ]
    if own:
        return [_carried(a) for a in own], None
    paths, failures = ask.in_sources(artifact_name=name, component_type=spec.component_type)
    if paths:
        return _read_headers(paths, ask)
    if failures:
        return [], f"artifact {name!r} is neither in the bundle nor in the store; " + "; ".join(failures)
    return [], f"artifact {name!r} is neither in the bundle nor in the store, nor on an artifact server"


def _carried(item: Carried) -> Candidate:
    return Candidate(label=item.member, info=item.info, size=item.stored.size, path=item.stored.path)


def _by_path(
    intake: Intake, spec: TypeTarget, directory: Path, ask: Lookups
) -> tuple[Carried | None, str | None]:
    """The bundle member an artifact_path names; a problem, or (None, None) to go by name."""
    assert spec.artifact_path is not None
    inside = spec.artifact_path.is_relative_to(directory)
    relative = str(spec.artifact_path.relative_to(directory)) if inside else None
    member = next((a for a in intake.artifacts if a.member == relative), None)
    if member is not None:
        return member, None
    if not inside and ask.file_here(spec.artifact_path):
        return None, (
            f"artifact_path {spec.artifact_path} is a file on this appliance, outside the bundle: a deployment "
            "would install from it rather than from the store; put it in the bundle or use artifact_name"
        )
    if spec.artifact_name is None:
        return (
            None,
            f"artifact_path {relative or spec.artifact_path} is not in the bundle (and no artifact_name)",
        )
    return None, None


def _read_headers(paths: Sequence[Path], ask: Lookups) -> tuple[list[Candidate], str | None]:
    # Store files were verified completely when they came in; the header (and signature) is enough.
    found, problems = [], []
    for path in paths:
        try:
            info, size = ask.read_header(path)
            found.append(Candidate(f"store {path.name[:12]}", info, size, path))
        except ArtifactError as exc:
            problems.append(f"{path}: {exc}")
    return found, "; ".join(problems) or None


# ----- compatibility with this system ----------------------------------------------------------------


def check_compatibility(
    desired: DesiredState, found: dict[str, list[Candidate]], ask: Lookups, checks: Checks
) -> None:
    """docs/protocol.md §3.1 against what the components run now: device type, interface, depends
    (`planner.choose_artifact`, so an accepted bundle plans exactly as it was checked)."""
    try:
        inspected = ask.inspect(desired.topology.components)
    except SelectionError as exc:
        checks.add(COMPATIBILITY, [f"cannot ask the components what they run: {p}" for p in exc.problems])
        return
    problems: list[str] = []
    notes: list[str] = []
    for item in inspected:
        choice = choose_artifact(item, found.get(item.component.component_type, []))
        if choice.candidate is None:
            problems.extend(choice.problems)
        else:
            skip = " (installed already: skipped)" if choice.installed else ""
            notes.append(f"{item.key}: {choice.candidate.info.name}{skip}")
    checks.add(COMPATIBILITY, problems, "; ".join(notes))

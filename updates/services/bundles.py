"""Bundles: one ingest path for every way a deployment's inputs arrive (a file on the command
line, a REST or browser upload, a Mender manifest artifact) into one artifact store, and every
check run before a bundle is accepted.

How a bundle becomes a deployment: an accepted bundle gets ``<datastore>/bundles/<id>/`` holding
its manifest (the raw bytes, read-only) at its path inside the bundle and, at their paths inside
the bundle, read-only hard links to the store files of the artifacts it carries. The manifest's
relative ``artifact_path`` therefore resolves, unchanged, to a store inode that was verified at
ingest and is never written again, and ``artifact_name`` resolves through the store source. Nothing
is rewritten, so the manifest a deployment records is byte for byte the one that was uploaded.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.db import transaction
from django.utils import timezone

from audit.services import journal_append
from updates import selectors
from updates.actors import SYSTEM, Actor
from updates.engine.artifact import ArtifactError, ArtifactReader, PublicKey
from updates.engine.bundle import Intake, ingest, manifest_artifact_fit
from updates.engine.bundle import StoredArtifact as Carried
from updates.engine.errors import ExitCode, NotFound, OrchestratorError
from updates.engine.manifest import DesiredState, InputError, TypeTarget, parse_topology
from updates.engine.planner import (  # the planner's own §3.1 rules
    ArtifactSource,
    Candidate,
    SelectionError,
    choose_artifact,
    find_in_sources,
)
from updates.engine.provides import device_type_ok
from updates.engine.store import ArtifactStore, NoSpaceError, plan_eviction
from updates.liveness import owner_alive, owner_beats, owner_token
from updates.models import Bundle, BundleArtifact, StoredArtifact
from updates.services.environment import Environment, desired_state_load, environment_load, live_inspector
from updates.services.sources import artifact_sources, artifact_store, stored_artifact_record

log = logging.getLogger("orchestrator")
INTERRUPTED = "interrupted during ingest (its process is gone)"


class BundleNotFound(NotFound):
    """No accepted bundle with that id (unknown, rejected, or its manifest is gone)."""


class BundleInUse(OrchestratorError):
    """The bundle holds a manifest the system runs, went back to, or is deploying: kept."""

    code = "bundle_in_use"
    exit_code = ExitCode.INVALID
    http_status = 409


def bundles_root(env: Environment) -> Path:
    return env.datastore / "bundles"


# ----- add ------------------------------------------------------------------------------------------


@dataclass
class _Checks:
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, check: str, problems: Sequence[str], detail: str = "") -> None:
        self.rows.append({"check": check, "ok": not problems, "detail": "; ".join(problems) or detail})
        self.problems.extend(f"{check}: {p}" for p in problems)


def bundle_add(
    *,
    source: IO[bytes],
    filename: str = "",
    size_hint: int | None = None,
    actor: Actor,
) -> Bundle:
    """Ingest one upload (streamed, hashed and verified while written) and check it completely.

    Always returns the recorded bundle: `accepted` (deployable) or `rejected` with every reason.
    """
    env = environment_load()
    store = artifact_store(env)
    _clean_interrupted(env, store)
    bundle = _bundle_begin(env, filename=filename, actor=actor)
    try:
        with owner_beats():  # the marker's owner on a web-only machine: alive for the others too
            return _bundle_check(env, store, bundle, source, size_hint)
    except Exception as exc:
        _mark_rejected(bundle.pk, f"ingest failed: {exc}", actor=actor)  # not left "ingesting" for the sweep
        raise
    finally:
        _ingest_marker(env, bundle.pk).unlink(missing_ok=True)


def _bundle_begin(env: Environment, *, filename: str, actor: Actor) -> Bundle:
    """The `ingesting` row, with a marker naming this process: a later ingest or gc can then
    tell an ingest that died (SIGKILL, power cut) from one still running elsewhere."""
    with transaction.atomic():
        bundle = Bundle.objects.create(filename=filename, actor=actor.as_json())
        # Written before the row commits: no one ever sees an `ingesting` row without its marker.
        marker = _ingest_marker(env, bundle.pk)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(owner_token())
        # Who uploaded it; the outcome (digest, signers, problems) follows as bundle.accepted/rejected.
        journal_append(
            kind="bundle.added", actor=actor, subject=f"bundle:{bundle.pk}", data={"filename": filename}
        )
    return bundle


def _ingest_marker(env: Environment, bundle_id: int) -> Path:
    return bundles_root(env) / ".ingesting" / str(bundle_id)


def _bundle_check(
    env: Environment, store: ArtifactStore, bundle: Bundle, source: IO[bytes], size_hint: int | None
) -> Bundle:
    filename = bundle.filename
    directory = bundles_root(env) / str(bundle.pk)
    checks = _Checks()
    keys = _keys(env, checks)
    try:
        # Known sizes (files, Content-Length) are checked up front; members are checked again
        # before each is written, which also covers compressed uploads.
        if size_hint is not None:
            store.ensure_space(size_hint, filename or "upload")
    except NoSpaceError as exc:
        checks.add("disk space", [str(exc)])
        return _bundle_reject(bundle, Intake(form=""), store, checks)
    intake = ingest(source, store, keys=keys, name=filename)
    _record_intake(bundle, intake)
    checks.add("archive and artifacts", intake.problems, _verified(intake))
    checks.add("signatures", [], _signatures(intake, keys))
    resolved = _check_manifest(env, intake, directory, checks)
    if checks.problems:
        return _bundle_reject(bundle, intake, store, checks)
    return _bundle_accept(bundle, intake, directory, checks, resolved)


def _keys(env: Environment, checks: _Checks) -> list[PublicKey]:
    try:
        return env.keys()
    except ArtifactError as exc:
        checks.add("verification keys", [str(exc)])
        return []


def _record_intake(bundle: Bundle, intake: Intake) -> None:
    bundle.form, bundle.sha256, bundle.size = intake.form, intake.sha256, intake.size
    bundle.manifest_member = intake.manifest_member
    bundle.manifest_raw = (intake.manifest or b"").decode("utf-8", "replace")
    bundle.topology_raw = (intake.topology or b"").decode("utf-8", "replace")


def _verified(intake: Intake) -> str:
    names = [f"{a.member} ({a.info.name})" for a in intake.artifacts]
    return (
        f"{len(names)} artifact(s) verified and stored: {', '.join(names)}"
        if names
        else "no artifacts carried"
    )


def _signatures(intake: Intake, keys: Sequence[PublicKey]) -> str:
    if not keys:
        return "no ArtifactVerifyKey(s) configured: signatures not required"
    every = list(intake.artifacts) + ([intake.manifest_artifact] if intake.manifest_artifact else [])
    return "; ".join(
        f"{a.member or 'manifest artifact'}: signed by {a.info.signer_fingerprint}" for a in every
    )


def _check_manifest(
    env: Environment, intake: Intake, directory: Path, checks: _Checks
) -> dict[str, list[str]]:
    if intake.manifest is None:
        return {}
    desired = _desired(env, intake, directory, checks)
    if desired is None:
        return {}
    _check_bundle_topology(intake, desired, checks)
    _check_manifest_artifact(env, intake, desired, checks)
    candidates = _resolve(env, intake, desired, directory, checks)
    if not checks.problems:
        _check_compatibility(env, desired, candidates, checks)
    return {ctype: [c.label for c in found] for ctype, found in candidates.items()}


def _desired(env: Environment, intake: Intake, directory: Path, checks: _Checks) -> DesiredState | None:
    assert intake.manifest is not None
    try:
        desired = desired_state_load(
            env,
            manifest_path=directory / intake.manifest_member,
            topology_components=None,
            manifest_data=intake.manifest,
        )
    except InputError as exc:
        # Name the file as it is in the bundle, not by the bundle directory it would have had.
        checks.add("manifest", [str(p).replace(f"{directory}/", "") for p in exc.problems])
        return None
    checks.add("manifest", [], f"{desired.manifest.name} ({desired.manifest.form} form)")
    return desired


def _check_bundle_topology(intake: Intake, desired: DesiredState, checks: _Checks) -> None:
    if intake.topology is None or intake.topology_member is None:
        return
    try:
        theirs = parse_topology(intake.topology, path=Path(intake.topology_member))
    except InputError as exc:
        checks.add("bundle topology", [str(p) for p in exc.problems])
        return
    ours = desired.topology.system_type
    problems = (
        []
        if ours in (None, theirs.system_type)
        else [
            f"{intake.topology_member}: made for system type {theirs.system_type!r}, this system is {ours!r}"
        ]
    )
    checks.add("bundle topology", problems, f"system type {theirs.system_type}")


def _check_manifest_artifact(
    env: Environment, intake: Intake, desired: DesiredState, checks: _Checks
) -> None:
    if intake.manifest_artifact is None:
        return
    info = intake.manifest_artifact.info
    problem, detail = manifest_artifact_fit(
        info.name,
        info.device_types,
        system_type=desired.topology.system_type,
        device_type_file=env.config.device_type_file,
    )
    checks.add("manifest artifact", [problem] if problem else [], detail)


# ----- artifacts: present or resolvable ---------------------------------------------------------------


def _resolve(
    env: Environment, intake: Intake, desired: DesiredState, directory: Path, checks: _Checks
) -> dict[str, list[Candidate]]:
    sources = artifact_sources(env)
    keys = env.keys()
    found: dict[str, list[Candidate]] = {}
    problems: list[str] = []
    for ctype, spec in desired.manifest.targets.items():
        candidates, problem = _candidates(intake, spec, directory, sources, keys)
        if problem:
            problems.append(f"component_types.{ctype}: {problem}")
        found[ctype] = candidates
    detail = "; ".join(f"{t}: {', '.join(c.label for c in cs)}" for t, cs in found.items())
    checks.add("artifacts present or resolvable", problems, detail)
    return found


def _candidates(
    intake: Intake,
    spec: TypeTarget,
    directory: Path,
    sources: Sequence[ArtifactSource],
    keys: Sequence[PublicKey],
) -> tuple[list[Candidate], str | None]:
    if spec.artifact_path is not None:
        member, problem = _by_path(intake, spec, directory)
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
    paths, failures = find_in_sources(sources, artifact_name=name, component_type=spec.component_type)
    if paths:
        return _read_headers(paths, keys)
    if failures:
        return [], f"artifact {name!r} is neither in the bundle nor in the store; " + "; ".join(failures)
    return [], f"artifact {name!r} is neither in the bundle nor in the store, nor on an artifact server"


def _carried(item: Carried) -> Candidate:
    return Candidate(label=item.member, info=item.info, size=item.stored.size, path=item.stored.path)


def _by_path(intake: Intake, spec: TypeTarget, directory: Path) -> tuple[Carried | None, str | None]:
    """The bundle member an artifact_path names; a problem, or (None, None) to go by name."""
    assert spec.artifact_path is not None
    inside = spec.artifact_path.is_relative_to(directory)
    relative = str(spec.artifact_path.relative_to(directory)) if inside else None
    member = next((a for a in intake.artifacts if a.member == relative), None)
    if member is not None:
        return member, None
    if not inside and spec.artifact_path.exists():
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


def _read_headers(paths: Sequence[Path], keys: Sequence[PublicKey]) -> tuple[list[Candidate], str | None]:
    # Store files were verified completely when they came in; the header (and signature) is enough.
    found, problems = [], []
    for path in paths:
        try:
            with open(path, "rb") as fileobj:
                info = ArtifactReader(fileobj, keys=keys).read_header()
            found.append(Candidate(f"store {path.name[:12]}", info, path.stat().st_size, path))
        except ArtifactError as exc:
            problems.append(f"{path}: {exc}")
    return found, "; ".join(problems) or None


# ----- compatibility with this system -------------------------------------------------------------------


def _check_compatibility(
    env: Environment, desired: DesiredState, found: dict[str, list[Candidate]], checks: _Checks
) -> None:
    """Reference §3.1 against what the components run now: device type, interface, depends."""
    try:
        with live_inspector(env) as inspector:
            inspected = inspector.inspect(desired.topology.components)
    except SelectionError as exc:
        checks.add("compatibility", [f"cannot ask the components what they run: {p}" for p in exc.problems])
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
    checks.add("compatibility", problems, "; ".join(notes))


# ----- outcome ---------------------------------------------------------------------------------------


def _bundle_reject(bundle: Bundle, intake: Intake, store: ArtifactStore, checks: _Checks) -> Bundle:
    """Keep the record and its reasons; take back every store file only this bundle brought."""
    with transaction.atomic():
        for stored in intake.new_objects():
            if not StoredArtifact.objects.filter(sha256=stored.sha256).exists():
                store.remove(stored.sha256)
        bundle.status, bundle.checks, bundle.problems = Bundle.Status.REJECTED, checks.rows, checks.problems
        bundle.save()
        _journal_outcome(bundle, bundle.who)
    return bundle


def _bundle_accept(
    bundle: Bundle, intake: Intake, directory: Path, checks: _Checks, resolved: dict[str, list[str]]
) -> Bundle:
    _materialise(intake, directory)
    with transaction.atomic():
        carried = list(intake.artifacts) + ([intake.manifest_artifact] if intake.manifest_artifact else [])
        for item in carried:
            row = stored_artifact_record(
                item.info, sha256=item.stored.sha256, size=item.stored.size, origin="bundle"
            )
            types = [t for t, labels in resolved.items() if item.member in labels]
            BundleArtifact.objects.create(
                bundle=bundle, artifact=row, member=item.member, component_types=types
            )
        bundle.status, bundle.checks, bundle.problems = Bundle.Status.ACCEPTED, checks.rows, []
        bundle.directory = str(directory)
        bundle.manifest_name = _manifest_name(checks)
        bundle.save()
        _journal_outcome(bundle, bundle.who)
    return bundle


def _journal_outcome(bundle: Bundle, actor: Actor) -> None:
    """The checks' verdict, as its uploader's (the ingest runs for them), or the appliance's
    when a sweep rejects an ingest that died."""
    journal_append(
        kind=f"bundle.{bundle.status}",
        actor=actor,
        subject=f"bundle:{bundle.pk}",
        data={
            "sha256": bundle.sha256,
            "size": bundle.size,
            "form": bundle.form,
            "manifest": bundle.manifest_name,
            "problems": list(bundle.problems),
            "artifacts": [
                {
                    "name": a.artifact.name,
                    "sha256": a.artifact.sha256,
                    "signer": a.artifact.signer_fingerprint,
                }
                for a in bundle.artifacts.select_related("artifact")
            ],
        },
    )


def _manifest_name(checks: _Checks) -> str:
    row = next((r for r in checks.rows if r["check"] == "manifest"), None)
    return row["detail"].split(" (")[0] if row else ""


def _materialise(intake: Intake, directory: Path) -> None:
    """The bundle directory: the manifest and read-only links to the store, at their bundle paths."""
    assert intake.manifest is not None
    directory.mkdir(parents=True, exist_ok=False)
    _write_read_only(directory / intake.manifest_member, intake.manifest)
    if intake.topology is not None and intake.topology_member is not None:
        _write_read_only(directory / intake.topology_member, intake.topology)
    for item in intake.artifacts:
        _link(item.stored.path, directory / item.member)


def _write_read_only(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o444)


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(target, link)  # same inode: the verified bytes, whatever happens to names
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        link.symlink_to(target)  # ArtifactsCache.Path on another file system


# ----- use -------------------------------------------------------------------------------------------


def bundle_manifest_path(*, bundle_id: int) -> Path:
    """The manifest `install` runs for an accepted bundle."""
    bundle = Bundle.objects.filter(pk=bundle_id).first()
    if bundle is None:
        raise BundleNotFound(f"bundle {bundle_id} does not exist")
    if bundle.status != Bundle.Status.ACCEPTED:
        raise BundleNotFound(f"bundle {bundle_id} is {bundle.status}: " + "; ".join(bundle.problems))
    path = Path(bundle.directory) / bundle.manifest_member
    if not path.is_file():
        raise BundleNotFound(f"bundle {bundle_id}: {path} is missing")
    StoredArtifact.objects.filter(bundles__bundle=bundle).update(last_used_at=timezone.now())
    return path


def bundle_delete(*, bundle_id: int, actor: Actor) -> Bundle:
    """Remove a bundle's files (its directory of links; the store keeps what others still name,
    and `gc` trims the rest) and keep its record, marked deleted, for the audit."""
    bundle = Bundle.objects.filter(pk=bundle_id).exclude(status=Bundle.Status.DELETED).first()
    if bundle is None:
        raise BundleNotFound(f"bundle {bundle_id} does not exist")
    in_use = [
        m.name for m in _kept_manifests() if bundle.directory and _inside(m.source_path, bundle.directory)
    ]
    if in_use:
        raise BundleInUse(
            f"bundle {bundle_id} holds manifest {in_use[0]!r}, which is active, previous or deploying"
        )
    with transaction.atomic():
        bundle.artifacts.all().delete()
        bundle.status, bundle.deleted_at, bundle.deleted_by = (
            Bundle.Status.DELETED,
            timezone.now(),
            actor.as_json(),
        )
        bundle.save(update_fields=["status", "deleted_at", "deleted_by"])
        journal_append(kind="bundle.deleted", actor=actor, subject=f"bundle:{bundle.pk}", data={})
    if bundle.directory:
        shutil.rmtree(bundle.directory, ignore_errors=True)
    return bundle


def _inside(path: str, directory: str) -> bool:
    return Path(path).is_relative_to(Path(directory))


def bundle_add_file(*, path: Path, actor: Actor) -> Bundle:
    with open(path, "rb") as fileobj:
        return bundle_add(source=fileobj, filename=path.name, size_hint=path.stat().st_size, actor=actor)


# ----- retention ---------------------------------------------------------------------------------------


def store_gc(*, actor: Actor, dry_run: bool = False) -> list[dict[str, Any]]:
    """Evict what the active, previous and in-progress manifests do not need, beyond the budget
    (ArtifactsCache.MaxSizeBytes; 0 = unlimited), oldest unused first. Ingests that died are
    marked rejected (journaled as `actor`'s); their temp files and store files no row records
    always go (unless another ingest is running: its files are not recorded yet). Returns what
    was (would be) removed."""
    return _store_retention(environment_load(), dry_run=dry_run, actor=actor)


def store_retention_after_deployment(env: Environment) -> None:
    """What `gc` does, run when a deployment has ended (reference §5.3: the cache is trimmed
    after each deployment). Never raises: retention must not change a deployment's outcome."""
    try:
        removed = _store_retention(env, dry_run=False, actor=SYSTEM)  # the appliance's own decision
    except Exception:
        log.exception("artifact store retention after the deployment failed")
        return
    if removed:
        log.info("artifact store retention: removed %d file(s)", len(removed))


def _store_retention(env: Environment, *, dry_run: bool, actor: Actor) -> list[dict[str, Any]]:
    store = artifact_store(env)
    if not dry_run:
        _reject_interrupted(env, actor=actor)
    rows = {r.sha256: r for r in StoredArtifact.objects.all()}
    gone = _debris(env, store) + _over_budget(env, store, rows)
    if not dry_run:
        _evict(store, gone, rows)
    return gone


def _clean_interrupted(env: Environment, store: ArtifactStore) -> None:
    """Before an ingest: what earlier ingests left when they died (records, temp and store files)."""
    _reject_interrupted(env, actor=SYSTEM)  # a sweep the appliance decides, whoever uploads
    _evict(store, _debris(env, store), {})


def _reject_interrupted(env: Environment, *, actor: Actor) -> list[int]:
    """Mark `ingesting` bundles whose process is gone as rejected; returns their ids."""
    stale = [
        b.pk
        for b in Bundle.objects.filter(status=Bundle.Status.INGESTING)
        if not owner_alive(_ingest_owner(env, b.pk))
    ]
    for bundle_id in stale:
        if _mark_rejected(bundle_id, INTERRUPTED, actor=actor):
            # A directory half made when it died; the store files it linked are unrecorded debris.
            shutil.rmtree(bundles_root(env) / str(bundle_id), ignore_errors=True)
        _ingest_marker(env, bundle_id).unlink(missing_ok=True)
    return stale


def _ingest_owner(env: Environment, bundle_id: int) -> str:
    try:
        return _ingest_marker(env, bundle_id).read_text().strip()
    except OSError:
        return ""  # no marker: its process removed it on the way out, or never got to write it


def _mark_rejected(bundle_id: int, reason: str, *, actor: Actor) -> bool:
    """Conditional on `ingesting`: a bundle that just finished (or another sweeper) wins."""
    with transaction.atomic():
        marked = Bundle.objects.filter(pk=bundle_id, status=Bundle.Status.INGESTING).update(
            status=Bundle.Status.REJECTED,
            checks=[{"check": "ingest", "ok": False, "detail": reason}],
            problems=[f"ingest: {reason}"],
        )
        if marked:
            _journal_outcome(Bundle.objects.get(pk=bundle_id), actor)
    return bool(marked)


def _ingest_running(env: Environment) -> bool:
    return any(
        owner_alive(_ingest_owner(env, b.pk)) for b in Bundle.objects.filter(status=Bundle.Status.INGESTING)
    )


def _debris(env: Environment, store: ArtifactStore) -> list[dict[str, Any]]:
    """Temp files no live writer holds, and store files no row records (a crash between naming
    and recording), unless an ingest is running: it records its files only when it is done."""
    gone = [
        _gone("", p.name, p.stat().st_size, "temp file of an interrupted write") for p in store.leftovers()
    ]
    # In this order: files listed before the check were either written by an ingest still
    # running (then nothing goes) or by one that has ended, so their rows are there by now.
    entries = store.entries()
    if _ingest_running(env):
        return gone
    recorded = set(StoredArtifact.objects.values_list("sha256", flat=True))
    return gone + [
        _gone(e.sha256, "", e.size, "not recorded (interrupted ingest)")
        for e in entries
        if e.sha256 not in recorded
    ]


def _over_budget(
    env: Environment, store: ArtifactStore, rows: dict[str, StoredArtifact]
) -> list[dict[str, Any]]:
    recorded = [e for e in store.entries() if e.sha256 in rows]
    last_used = {s: (r.last_used_at or r.created_at).timestamp() for s, r in rows.items()}
    budget = env.config.artifacts_cache_max_size_bytes
    plan = plan_eviction(recorded, needed=_needed(store), last_used=last_used, budget=budget)
    return [
        _gone(e.sha256, rows[e.sha256].name, e.size, f"over the {budget}-byte budget, unused longest")
        for e in plan.evict
    ]


def _gone(sha256: str, name: str, size: int, reason: str) -> dict[str, Any]:
    return {"sha256": sha256, "name": name, "size": size, "reason": reason}


def _needed(store: ArtifactStore) -> set[str]:
    inodes = {
        (p.stat().st_dev, p.stat().st_ino): e.sha256 for e in store.entries() for p in [store.path(e.sha256)]
    }
    needed: set[str] = set()
    for manifest in _kept_manifests():
        needed |= set(
            StoredArtifact.objects.filter(
                bundles__bundle__directory=str(Path(manifest.source_path).parent)
            ).values_list("sha256", flat=True)
        )
        for deployment in manifest.deployments.all():
            plan = deployment.planned()
            paths = [c["artifact"] for c in plan["components"]] if plan else []
            needed |= {sha for p in paths if p and (sha := _sha_of(Path(p), inodes))}
    return needed


def _kept_manifests() -> list[Any]:
    pointers = selectors.active_manifests()
    running = selectors.deployment_in_progress()
    kept = [pointers.active, pointers.previous] if pointers else []
    return [m for m in [*kept, running.manifest if running else None] if m is not None]


def _sha_of(path: Path, inodes: dict[tuple[int, int], str]) -> str | None:
    try:
        stat = path.stat()  # a store file, a bundle's hard link to one, or a symlink to one
    except OSError:
        return None
    return inodes.get((stat.st_dev, stat.st_ino))


def _evict(store: ArtifactStore, gone: list[dict[str, Any]], rows: dict[str, StoredArtifact]) -> None:
    for item in gone:
        sha = item["sha256"]
        if not sha:
            with contextlib.suppress(FileNotFoundError):
                (store.tmp_dir / item["name"]).unlink()
            continue
        row = rows.get(sha)
        if row is not None:
            for link in BundleArtifact.objects.filter(artifact=row).select_related("bundle"):
                if link.member and link.bundle.directory:
                    with contextlib.suppress(FileNotFoundError):
                        (Path(link.bundle.directory) / link.member).unlink()
            row.delete()
        store.remove(sha)

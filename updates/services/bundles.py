"""Bundles: one ingest path for every way a deployment's inputs arrive (a file on the command
line, a REST or browser upload, a Mender manifest artifact) into one artifact store, and every
check run before a bundle is accepted (the rules themselves: `updates.engine.acceptance`; what
the store keeps and evicts: `updates.services.retention`).

How a bundle becomes a deployment: an accepted bundle gets ``<datastore>/bundles/<id>/`` holding
its manifest (the raw bytes, read-only) at its path inside the bundle and, at their paths inside
the bundle, read-only hard links to the store files of the artifacts it carries. The manifest's
relative ``artifact_path`` therefore resolves, unchanged, to a store inode that was verified at
ingest and is never written again, and ``artifact_name`` resolves through the store source. Nothing
is rewritten, so the manifest a deployment records is byte for byte the one that was uploaded.
An artifact that came as a delta (docs/bytes.md) is the exception: the store holds the delta, and
the member is a stream reference, which Download rebuilds the artifact from.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple, cast

from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.db import transaction
from django.utils import timezone

from audit.services import journal_append
from updates.actors import Actor
from updates.engine.acceptance import Findings, Verdict, accept
from updates.engine.artifact import ArtifactError, ArtifactInfo, ArtifactReader, PublicKey
from updates.engine.bundle import Intake, ingest, read_device_type
from updates.engine.errors import ExitCode, InvalidInput, NotFound, OrchestratorError
from updates.engine.manifest import Component, DesiredState, InputError
from updates.engine.planner import Inspected, find_in_sources
from updates.engine.store import ArtifactStore, NoSpaceError
from updates.engine.streaming import StreamRef
from updates.engine.text import safe_json, safe_text
from updates.engine.transfer import CountingReader
from updates.liveness import owner_beats, owner_token
from updates.models import Bundle, BundleArtifact, StoredArtifact
from updates.services.deltas import delta_bases_check, delta_ref_write
from updates.services.environment import Environment, desired_state_load, environment_load, live_inspector
from updates.services.retention import (
    bundle_outcome_journal,
    bundles_root,
    ingest_marker,
    interrupted_clean,
    kept_manifests,
    mark_rejected,
)
from updates.services.sources import artifact_sources, artifact_store, stored_artifact_record


class BundleNotFound(NotFound):
    """No accepted bundle with that id (unknown, rejected, or its manifest is gone)."""


class BundleNotAccepted(InvalidInput):
    """The bundle exists but cannot be deployed: it was rejected (the reasons follow) or is
    still being checked."""

    code = "bundle_not_accepted"
    http_status = 409


class BundleInUse(OrchestratorError):
    """The bundle holds a manifest the system runs, went back to, or is deploying: kept."""

    code = "bundle_in_use"
    exit_code = ExitCode.INVALID
    http_status = 409


# ----- add ------------------------------------------------------------------------------------------


class BundleAdded(NamedTuple):
    bundle: Bundle
    existing: bool  # the same file (sha256) was an accepted bundle already: nothing was added


def bundle_add_once(
    *, source: IO[bytes], filename: str = "", size_hint: int | None = None, actor: Actor
) -> BundleAdded:
    """`bundle_add`, unless the very same bytes are an accepted bundle already: then that one,
    untouched (a second copy would only be a second name for one thing). A rejected or deleted
    bundle's file is checked again: the system, its keys or its store may have changed since."""
    same = _same_accepted(source)
    if same is not None:
        return BundleAdded(same, existing=True)
    return BundleAdded(bundle_add(source=source, filename=filename, size_hint=size_hint, actor=actor), False)


def _same_accepted(source: IO[bytes]) -> Bundle | None:
    """The accepted bundle whose upload had these bytes; None for a stream that cannot be read
    twice (it is ingested as it comes)."""
    if not source.seekable():
        return None
    start = source.tell()
    size = source.seek(0, os.SEEK_END) - start
    source.seek(start)
    accepted = Bundle.objects.filter(status=Bundle.Status.ACCEPTED)
    if not accepted.filter(size=size).exists():
        return None  # no accepted bundle this long: no need to hash it twice (intake hashes it)
    digest = hashlib.sha256()
    while chunk := source.read(1 << 20):
        digest.update(chunk)
    source.seek(start)
    found: Bundle | None = accepted.filter(sha256=digest.hexdigest(), size=size).order_by("id").first()
    return found


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
    interrupted_clean(env, store)
    filename = safe_text(filename)  # the client's name for it: made printable once, here
    bundle = _bundle_begin(env, filename=filename, actor=actor)
    try:
        with owner_beats():  # the marker's owner on a web-only machine: alive for the others too
            return _bundle_check(env, store, bundle, source, size_hint)
    except Exception as exc:
        mark_rejected(bundle.pk, f"ingest failed: {exc}", actor=actor)  # not left "ingesting" for the sweep
        raise
    finally:
        ingest_marker(env, bundle.pk).unlink(missing_ok=True)


def _bundle_begin(env: Environment, *, filename: str, actor: Actor) -> Bundle:
    """The `ingesting` row, with a marker naming this process: a later ingest or gc can then
    tell an ingest that died (SIGKILL, power cut) from one still running elsewhere."""
    with transaction.atomic():
        bundle = Bundle.objects.create(filename=filename, actor=actor.as_json())
        # Written before the row commits: no one ever sees an `ingesting` row without its marker.
        marker = ingest_marker(env, bundle.pk)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(owner_token())
        # Who uploaded it; the outcome (digest, signers, problems) follows as bundle.accepted/rejected.
        journal_append(
            kind="bundle.added", actor=actor, subject=f"bundle:{bundle.pk}", data={"filename": filename}
        )
    return bundle


def _bundle_check(
    env: Environment, store: ArtifactStore, bundle: Bundle, source: IO[bytes], size_hint: int | None
) -> Bundle:
    """Gather what the rules need (`engine.acceptance`), apply them, record the verdict."""
    filename = bundle.filename
    directory = bundles_root(env) / str(bundle.pk)
    keys, keys_problem = _keys(env)
    try:
        # Known sizes (files, Content-Length) are checked up front; members are checked again
        # before each is written, which also covers compressed uploads.
        if size_hint is not None:
            store.ensure_space(size_hint, filename or "upload")
    except NoSpaceError as exc:
        intake = Intake(form="")
        found = Findings(intake, directory, bool(keys), keys_problem, space_problem=str(exc))
        return _bundle_reject(bundle, intake, store, accept(found, _Lookups(env, keys)))
    intake = ingest(source, store, keys=keys, name=filename)
    _record_intake(bundle, intake)
    desired, manifest_problems = _desired(env, intake, directory)
    found = Findings(intake, directory, bool(keys), keys_problem, None, desired, manifest_problems)
    verdict = accept(found, _Lookups(env, keys))
    if not verdict.accepted:
        return _bundle_reject(bundle, intake, store, verdict)
    return _bundle_accept(bundle, intake, directory, verdict)


def _keys(env: Environment) -> tuple[list[PublicKey], str | None]:
    try:
        return env.keys(), None
    except ArtifactError as exc:
        return [], str(exc)


def _record_intake(bundle: Bundle, intake: Intake) -> None:
    bundle.form, bundle.sha256, bundle.size = intake.form, intake.sha256, intake.size
    bundle.manifest_member = intake.manifest_member
    bundle.manifest_raw = (intake.manifest or b"").decode("utf-8", "replace")
    bundle.topology_raw = (intake.topology or b"").decode("utf-8", "replace")


def _desired(env: Environment, intake: Intake, directory: Path) -> tuple[DesiredState | None, list[str]]:
    """The bundle's manifest loaded against this system's topology, or why it cannot be."""
    if intake.manifest is None:
        return None, []
    try:
        desired = desired_state_load(
            env,
            manifest_path=directory / intake.manifest_member,
            topology_components=None,
            manifest_data=intake.manifest,
        )
    except InputError as exc:
        return None, [str(p) for p in exc.problems]
    return desired, []


class _Lookups:
    """What the acceptance rules may ask this system, each only when a rule needs it."""

    def __init__(self, env: Environment, keys: Sequence[PublicKey]) -> None:
        self.env, self.keys = env, keys

    def device_type(self) -> tuple[str | None, str]:
        return read_device_type(self.env.config.device_type_file)

    def file_here(self, path: Path) -> bool:
        return path.exists()

    def in_sources(self, *, artifact_name: str, component_type: str) -> tuple[list[Path], list[str]]:
        sources = artifact_sources(self.env)
        return find_in_sources(sources, artifact_name=artifact_name, component_type=component_type)

    def read_header(self, path: Path) -> tuple[ArtifactInfo, int]:
        with open(path, "rb") as fileobj:
            info = ArtifactReader(fileobj, keys=self.keys).read_header()
        return info, path.stat().st_size

    def inspect(self, components: Sequence[Component]) -> list[Inspected]:
        with live_inspector(self.env) as inspector:
            return inspector.inspect(components)


# ----- outcome ---------------------------------------------------------------------------------------


def _bundle_reject(bundle: Bundle, intake: Intake, store: ArtifactStore, verdict: Verdict) -> Bundle:
    """Keep the record and its reasons; take back every store file only this bundle brought."""
    with transaction.atomic():
        for stored in intake.new_objects():
            if not StoredArtifact.objects.filter(sha256=stored.sha256).exists():
                store.remove(stored.sha256)
        checks = verdict.checks
        # Names in these came in as safe text (engine/text.py); this keeps any other text so too.
        rows, problems = safe_json(checks.rows), [safe_text(p) for p in checks.problems]
        bundle.status, bundle.checks, bundle.problems = Bundle.Status.REJECTED, rows, problems
        bundle.save()
        bundle_outcome_journal(bundle, bundle.who)
    return bundle


def _bundle_accept(bundle: Bundle, intake: Intake, directory: Path, verdict: Verdict) -> Bundle:
    _materialise(intake, directory)
    with transaction.atomic():
        carried = list(intake.artifacts) + ([intake.manifest_artifact] if intake.manifest_artifact else [])
        for item in carried:
            rebuilt = item.rebuilt.entry if item.rebuilt else None
            row = stored_artifact_record(
                item.info,
                sha256=item.stored.sha256,
                size=item.stored.size,
                origin="bundle",
                base_sha256=rebuilt.base_sha256 if rebuilt else "",
                full_sha256=rebuilt.sha256 if rebuilt else "",
            )
            types = [t for t, labels in verdict.resolved.items() if item.member in labels]
            BundleArtifact.objects.create(
                bundle=bundle, artifact=row, member=item.member, component_types=types
            )
        bundle.status, bundle.checks, bundle.problems = Bundle.Status.ACCEPTED, verdict.checks.rows, []
        bundle.directory = str(directory)
        bundle.manifest_name = verdict.manifest_name
        bundle.save()
        bundle_outcome_journal(bundle, bundle.who)
    return bundle


def _materialise(intake: Intake, directory: Path) -> None:
    """The bundle directory: the manifest and read-only links to the store, at their bundle paths."""
    assert intake.manifest is not None
    directory.mkdir(parents=True, exist_ok=False)
    _write_read_only(directory / intake.manifest_member, intake.manifest)
    if intake.topology is not None and intake.topology_member is not None:
        _write_read_only(directory / intake.topology_member, intake.topology)
    for item in intake.artifacts:
        if item.rebuilt is None:
            _link(item.stored.path, directory / item.member)
            continue
        (directory / item.member).parent.mkdir(parents=True, exist_ok=True)
        entry = item.rebuilt.entry
        ref = StreamRef(
            server="",
            id=item.stored.sha256,
            name=item.info.name,
            size=entry.size,
            head=item.rebuilt.head,
            base_sha256=entry.base_sha256,
            sha256=entry.sha256,
        )
        delta_ref_write(directory / item.member, ref)


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
    if bundle.status == Bundle.Status.DELETED:
        raise BundleNotFound(f"bundle {bundle_id} was deleted")
    if bundle.status == Bundle.Status.REJECTED:
        reasons = "; ".join(bundle.problems) or "see its checks"
        raise BundleNotAccepted(f"bundle {bundle_id} was rejected, it cannot be deployed: {reasons}")
    if bundle.status != Bundle.Status.ACCEPTED:
        raise BundleNotAccepted(f"bundle {bundle_id} is still being checked: deploy it once it is accepted")
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
    in_use = [m.name for m in kept_manifests() if any(d.bundle_id == bundle.pk for d in m.deployments.all())]
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


def bundle_add_upload(*, upload: UploadedFile[bytes], actor: Actor) -> BundleAdded:
    """An HTTP upload (the API's `POST /bundles` and the page's form alike): by path when the
    upload handler spooled it to disk (always, with ours: docs/api.md), so a delta bundle's bases
    are checked first (docs/bytes.md); otherwise as the stream it is."""
    name = Path(upload.name or "upload").name
    if isinstance(upload, TemporaryUploadedFile):
        path = Path(upload.temporary_file_path())
        return bundle_add_file_once(path=path, filename=name, actor=actor)
    source = cast(IO[bytes], upload.file)
    return bundle_add_once(source=source, filename=name, size_hint=upload.size, actor=actor)


def bundle_add_file(*, path: Path, actor: Actor, filename: str = "") -> Bundle:
    """`bundle_add_file_once`'s bundle: the new one, or the accepted one with the same bytes."""
    return bundle_add_file_once(path=path, actor=actor, filename=filename).bundle


def bundle_add_file_once(*, path: Path, actor: Actor, filename: str = "") -> BundleAdded:
    """A bundle file (named `filename`, else its own name), as `bundle_add_once`; a delta bundle
    (docs/bytes.md) whose bases the store lacks is refused first (DeltaError naming every missing
    base). A terminal shows the reading."""
    delta_bases_check(path)
    size = path.stat().st_size
    with open(path, "rb") as fileobj:
        source = cast(IO[bytes], CountingReader(fileobj, f"reading {path.name}", size))
        return bundle_add_once(source=source, filename=filename or path.name, size_hint=size, actor=actor)

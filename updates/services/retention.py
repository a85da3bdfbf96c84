"""Store retention: what the artifact store keeps, what it evicts, and what dead ingests leave.

docs/protocol.md §5.2: the store is trimmed after each deployment (and by `orchestrator gc`). Kept: every
artifact an active, previous or in-progress deployment needs (its bundle's artifacts and the
files its plan installs from). The rest goes oldest-unused first once the store is over
ArtifactsCache.MaxSizeBytes (0 = unlimited). An ingest that died (SIGKILL, power cut) leaves an
`ingesting` row, temp files and store files no row records: its marker under
`<datastore>/bundles/.ingesting/<id>` names the process that owned it, so a later ingest or `gc`
can tell a dead ingest from one still running elsewhere and clean up only after the dead.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

from django.db import transaction

from audit.services import journal_append
from updates import selectors
from updates.actors import SYSTEM, Actor
from updates.engine.store import ArtifactStore, plan_eviction
from updates.engine.text import safe_text
from updates.liveness import owner_alive
from updates.models import Bundle, BundleArtifact, StoredArtifact
from updates.services.deltas import delta_bases
from updates.services.environment import Environment, environment_load
from updates.services.sources import artifact_store

log = logging.getLogger("orchestrator")
INTERRUPTED = "interrupted during ingest (its process is gone)"


def bundles_root(env: Environment) -> Path:
    return env.datastore / "bundles"


def ingest_marker(env: Environment, bundle_id: int) -> Path:
    return bundles_root(env) / ".ingesting" / str(bundle_id)


def bundle_outcome_journal(bundle: Bundle, actor: Actor) -> None:
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


# ----- retention ---------------------------------------------------------------------------------------


def store_gc(*, actor: Actor, dry_run: bool = False) -> list[dict[str, Any]]:
    """Evict what the active, previous and in-progress manifests do not need, beyond the budget
    (ArtifactsCache.MaxSizeBytes; 0 = unlimited), oldest unused first. Ingests that died are
    marked rejected (journaled as `actor`'s); their temp files and store files no row records
    always go (unless another ingest is running: its files are not recorded yet). Returns what
    was (would be) removed."""
    return _store_retention(environment_load(), dry_run=dry_run, actor=actor)


def store_retention_after_deployment(env: Environment) -> None:
    """What `gc` does, run when a deployment has ended (docs/protocol.md §5.2: the cache is trimmed
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


def interrupted_clean(env: Environment, store: ArtifactStore) -> None:
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
        if mark_rejected(bundle_id, INTERRUPTED, actor=actor):
            # A directory half made when it died; the store files it linked are unrecorded debris.
            shutil.rmtree(bundles_root(env) / str(bundle_id), ignore_errors=True)
        ingest_marker(env, bundle_id).unlink(missing_ok=True)
    return stale


def _ingest_owner(env: Environment, bundle_id: int) -> str:
    try:
        return ingest_marker(env, bundle_id).read_text().strip()
    except OSError:
        return ""  # no marker: its process removed it on the way out, or never got to write it


def mark_rejected(bundle_id: int, reason: str, *, actor: Actor) -> bool:
    """Conditional on `ingesting`: a bundle that just finished (or another sweeper) wins."""
    reason = safe_text(reason)
    with transaction.atomic():
        marked = Bundle.objects.filter(pk=bundle_id, status=Bundle.Status.INGESTING).update(
            status=Bundle.Status.REJECTED,
            checks=[{"check": "ingest", "ok": False, "detail": reason}],
            problems=[f"ingest: {reason}"],
        )
        if marked:
            bundle_outcome_journal(Bundle.objects.get(pk=bundle_id), actor)
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
    needed = _needed(store) | delta_bases()  # a stored delta's base stays (docs/bytes.md)
    plan = plan_eviction(recorded, needed=needed, last_used=last_used, budget=budget)
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
    for manifest in kept_manifests():
        for deployment in manifest.deployments.all():
            if deployment.bundle_id is not None:  # all its bundle carries, whatever the plan skipped
                needed |= set(
                    StoredArtifact.objects.filter(bundles__bundle_id=deployment.bundle_id).values_list(
                        "sha256", flat=True
                    )
                )
            plan = deployment.planned()
            paths = [c["artifact"] for c in plan["components"]] if plan else []
            needed |= {sha for p in paths if p and (sha := _sha_of(Path(p), inodes))}
    return needed


def kept_manifests() -> list[Any]:
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

"""Store retention (updates.services.retention) called in-process against the demo system's
datastore: the budget evicts the least recently used, what a kept deployment came from stays,
what a dead ingest left goes, and a stored delta keeps its base (and resolves by name to its
stream reference, never to the delta itself)."""

from __future__ import annotations

import datetime
import tarfile
from pathlib import Path

import pytest
from django.utils import timezone

from tests.integration.conftest import DemoSystem
from updates.actors import Actor
from updates.engine.delta import make_delta_bundle
from updates.engine.streaming import is_stream_ref, read_ref
from updates.models import Bundle, Deployment, StoredArtifact
from updates.services import bundles, retention
from updates.services.deployments import deployment_create
from updates.services.environment import environment_load
from updates.services.sources import StoreSource, artifact_store
from updates.services.streams import _unused_cached

pytestmark = pytest.mark.django_db
TESTER = Actor("cli", "test")

OPERATOR = Actor("cli", "operator")


def _tar(demo: DemoSystem, version: str) -> Path:
    out = demo.root / f"{version}.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(demo.system / f"manifest-{version}.yaml", f"manifest-{version}.yaml")
        for name in (f"gateway-{version}.mender", f"rtos-{version}.mender"):
            tar.add(demo.system / "artifacts" / name, f"artifacts/{name}")
    return out


def _bundle(demo: DemoSystem, version: str) -> Bundle:
    bundle = bundles.bundle_add_file(path=_tar(demo, version), actor=OPERATOR)
    assert bundle.status == Bundle.Status.ACCEPTED, bundle.problems
    return bundle


def _budget(demo: DemoSystem, size: int) -> None:
    (demo.root / "conf" / "mender-orchestrator.conf").write_text(
        f'{{"ArtifactsCache": {{"MaxSizeBytes": {size}}}}}'
    )


def _shas(bundle: Bundle) -> set[str]:
    return set(StoredArtifact.objects.filter(bundles__bundle=bundle).values_list("sha256", flat=True))


def _size(bundle: Bundle) -> int:
    return sum(StoredArtifact.objects.filter(bundles__bundle=bundle).values_list("size", flat=True))


def _gone(removed: list[dict[str, object]]) -> set[str]:
    return {str(r["sha256"]) for r in removed}


def test_the_budget_evicts_the_bundle_used_longest_ago(system: DemoSystem) -> None:
    v1, v2 = _bundle(system, "v1"), _bundle(system, "v2")
    first, second = _shas(v1), _shas(v2)
    _budget(system, max(_size(v1), _size(v2)))  # room for one of them
    assert _gone(retention.store_gc(dry_run=True, actor=OPERATOR)) == first  # added first, never used
    bundles.bundle_manifest_path(bundle_id=v1.pk)  # a deployment read it: used just now
    assert _gone(retention.store_gc(dry_run=True, actor=OPERATOR)) == second
    store = artifact_store(environment_load())
    assert {e.sha256 for e in store.entries()} == first | second  # a dry run removes nothing
    assert _gone(retention.store_gc(actor=OPERATOR)) == second
    assert {e.sha256 for e in store.entries()} == first
    assert not StoredArtifact.objects.filter(sha256__in=second).exists()


def test_a_deployment_in_progress_keeps_the_bundle_it_came_from(system: DemoSystem) -> None:
    v1, v2 = _bundle(system, "v1"), _bundle(system, "v2")
    unneeded = _shas(v1)
    _budget(system, 1)  # nothing fits: only what is kept stays
    deployment = deployment_create(manifest_path=bundles.bundle_manifest_path(bundle_id=v2.pk), actor=TESTER)
    assert deployment.bundle_id == v2.pk  # the key is set from the bundle, once
    assert _gone(retention.store_gc(actor=OPERATOR)) == unneeded
    with pytest.raises(bundles.BundleInUse):
        bundles.bundle_delete(bundle_id=v2.pk, actor=TESTER)
    assert bundles.bundle_delete(bundle_id=v1.pk, actor=TESTER).status == Bundle.Status.DELETED


def test_a_deployment_outside_any_bundle_has_no_bundle(system: DemoSystem) -> None:
    deployment = deployment_create(manifest_path=system.system / "manifest-v2.yaml", actor=TESTER)
    assert Deployment.objects.get(pk=deployment.pk).bundle is None


def test_it_cleans_up_after_an_ingest_whose_process_is_gone(system: DemoSystem) -> None:
    env = environment_load()
    store = artifact_store(env)
    dead = Bundle.objects.create(filename="killed.tar", actor=OPERATOR.as_json())
    marker = retention.ingest_marker(env, dead.pk)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("not-a-live-owner")
    (retention.bundles_root(env) / str(dead.pk)).mkdir(parents=True)  # half made when it died
    stray = store.root / ("ab" * 32)  # named in the store, never recorded
    stray.write_bytes(b"half an artifact")
    part = store.tmp_dir / "in-x.part"
    part.write_bytes(b"half")
    removed = retention.store_gc(actor=OPERATOR)
    assert {r["reason"] for r in removed} == {
        "temp file of an interrupted write",
        "not recorded (interrupted ingest)",
    }
    dead.refresh_from_db()
    assert dead.status == Bundle.Status.REJECTED and dead.problems == [f"ingest: {retention.INTERRUPTED}"]
    assert not stray.exists() and not part.exists() and not marker.exists()
    assert not (retention.bundles_root(env) / str(dead.pk)).exists()


def test_it_leaves_an_ingest_that_is_still_running(system: DemoSystem) -> None:
    from updates.liveness import owner_token

    env = environment_load()
    store = artifact_store(env)
    running = Bundle.objects.create(filename="running.tar", actor=OPERATOR.as_json())
    marker = retention.ingest_marker(env, running.pk)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(owner_token())  # this process: alive
    unrecorded = store.root / ("cd" * 32)
    unrecorded.write_bytes(b"being written")
    assert _gone(retention.store_gc(actor=OPERATOR)) == set()
    running.refresh_from_db()
    assert running.status == Bundle.Status.INGESTING and unrecorded.exists()


def test_retention_after_a_deployment_never_raises(
    system: DemoSystem, caplog: pytest.LogCaptureFixture
) -> None:
    env = environment_load()
    lock = artifact_store(env).root / ".tmp.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()  # the store cannot take its lock
    retention.store_retention_after_deployment(env)
    assert "artifact store retention after the deployment failed" in caplog.text
    lock.rmdir()


def test_a_base_a_stored_delta_needs_stays_until_the_delta_goes(system: DemoSystem) -> None:
    bases = _shas(_bundle(system, "v1"))
    deltas = _delta_bundle(system)
    rows = StoredArtifact.objects.filter(bundles__bundle=deltas)
    assert {r.base_sha256 for r in rows} == bases  # each delta names its base
    stored_deltas = _shas(deltas)
    assert len(stored_deltas) == 2 and not stored_deltas & bases
    _budget(system, 1)  # nothing fits: all goes that may go
    assert _gone(retention.store_gc(actor=OPERATOR)) == stored_deltas
    store = artifact_store(environment_load())
    assert bases <= {e.sha256 for e in store.entries()}  # kept while the deltas were stored
    assert _gone(retention.store_gc(actor=OPERATOR)) == bases  # then they may go too


def test_the_artifacts_cache_never_counts_a_stored_deltas_base_as_unused(db: None) -> None:
    old = timezone.now() - datetime.timedelta(days=1)

    def row(sha: str, **fields: object) -> StoredArtifact:
        return StoredArtifact.objects.create(sha256=sha, size=1, name=sha[:4], last_used_at=old, **fields)

    row("a" * 64, origin="server", server_id="1")  # a cached artifact a delta needs
    row("b" * 64, origin="server", server_id="2")  # one no delta needs
    row("c" * 64, origin="bundle", base_sha256="a" * 64, full_sha256="d" * 64)
    assert [r.sha256 for r in _unused_cached(timezone.now())] == ["b" * 64]


def _delta_bundle(demo: DemoSystem) -> Bundle:
    made = demo.root / "v1-to-v2.tar"
    make_delta_bundle(demo.root / "v1.tar", _tar(demo, "v2"), made)
    bundle = bundles.bundle_add_file(path=made, actor=OPERATOR)
    assert bundle.status == Bundle.Status.ACCEPTED, bundle.problems
    return bundle


def test_an_artifact_named_only_by_name_that_came_as_a_delta_resolves_to_its_stream_reference(
    system: DemoSystem,
) -> None:
    _bundle(system, "v1")
    deltas = _shas(_delta_bundle(system))
    found = StoreSource(artifact_store(environment_load())).candidates(
        artifact_name="rtos-v2", component_type="rtos"
    )
    assert len(found) == 1 and is_stream_ref(found[0])  # never the delta's store file
    assert read_ref(found[0]).id in deltas

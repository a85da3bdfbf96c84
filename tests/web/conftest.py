"""Personas and data for the web UI tests: one user per role, the demo system's real interfaces
behind the pages that ask them (plan, upload), and deployments written as the engine writes them."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import Role
from audit.chain import iso, sha256_hex
from tests.integration.conftest import DemoSystem, build_demo, migrated_db
from tests.worker.conftest import (
    _configure_producer,
    _forget_broker_connections,
)
from updates.actors import SYSTEM, Actor
from updates.liveness import heartbeat_remove, heartbeat_write
from updates.models import Deployment, Manifest, Step
from worker.celery import app

__all__ = ["migrated_db"]  # shared fixtures
PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Path]:
    """The file-system broker in a temp dir: what the pages enqueue lands there as files."""
    _configure_producer("filesystem", tmp_path)
    yield tmp_path / "queue" / "messages"
    _forget_broker_connections()
    app.conf.broker_url = settings.CELERY_BROKER_URL  # type: ignore[misc]  # celery-types: read-only
    app.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS


@pytest.fixture
def worker_beat(tmp_path: Path, settings: Any) -> Iterator[None]:
    """A live worker's heartbeat (this process's: alive), in a data store of the test's own."""
    settings.DATASTORE_DIR = tmp_path / "beats"
    heartbeat_write(name="celery@web-test", broker="filesystem", started_at=timezone.now())
    yield
    heartbeat_remove(name="celery@web-test")


@pytest.fixture
def clients(db: None) -> dict[str, Client]:
    """A signed-in client per role, and "anonymous"."""
    out = {"anonymous": Client()}
    for role in Role:
        services.user_create(username=role.value, password=PASSWORD, role=role, actor=SYSTEM)
        client = Client()
        assert client.login(username=role.value, password=PASSWORD)
        out[role.value] = client
    return out


@pytest.fixture
def web_demo(tmp_path: Path, migrated_db: Path, settings: Any) -> Iterator[DemoSystem]:
    """The demo system's files and interfaces; the rows go to the test database."""
    system = build_demo(tmp_path / "demo", migrated_db)
    settings.DATASTORE_DIR = system.datastore
    settings.TOPOLOGY_DIR = system.datastore
    settings.DATA_DIR = system.root / "share"
    settings.CONF_DIR = system.root / "conf"
    settings.REBOOT_COMMAND = system.env["ORCH_REBOOT_COMMAND"]
    yield system


def demo_bundle(demo: DemoSystem, version: int) -> Path:
    """The demo's vN bundle: its manifest and the two artifacts it names, as a .tar.gz."""
    out = demo.root / f"system-core-v{version}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(demo.system / f"manifest-v{version}.yaml", f"manifest-v{version}.yaml")
        for ctype in ("gateway", "rtos"):
            name = f"{ctype}-v{version}.mender"
            tar.add(demo.system / "artifacts" / name, f"artifacts/{name}")
    return out


PLAN: dict[str, Any] = {
    "groups": [[10, ["gateway.G13"]], [20, ["rtos.R998", "rtos.R456"]]],
    "components": [
        {
            "key": k,
            "component_type": k.split(".")[0],
            "component_id": k.split(".")[1],
            "order": o,
            "action": "install",
            "current": f"{k.split('.')[0]}-v1",
            "target": f"{k.split('.')[0]}-v2",
            "interface_args": [k.split(".")[1]],
            "spec_id": None,
        }
        for o, k in ((10, "gateway.G13"), (20, "rtos.R998"), (20, "rtos.R456"))
    ],
}


def deployment_record(
    name: str, status: str, *, by: str = "cli", days_ago: int = 0, failed: str = "", running: bool = False
) -> Deployment:
    """A deployment with the rows a run leaves: a step per state and component."""
    manifest = Manifest.objects.create(name=name, form="current", sha256="0" * 64, raw="", source_path="")
    start = timezone.now() - timedelta(days=days_ago)
    deployment = Deployment.objects.create(
        manifest=manifest,
        status=status,
        plan=PLAN,
        started_at=start,
        actor=Actor("cli" if by == "cli" else "user", by).as_json(),
        finished_at=None if running else start + timedelta(seconds=3),
        slot=1 if status in Deployment.IN_PROGRESS else None,
    )
    Deployment.objects.filter(pk=deployment.pk).update(created_at=start, position=_position(status))
    for c in PLAN["components"]:
        for state in ("Download", "ArtifactInstall", "ArtifactCommit"):
            bad = c["key"] == failed and state == "ArtifactCommit"
            Step.objects.create(
                deployment=deployment,
                component=c["key"],
                state=state,
                argv=[c["component_type"], state],
                started_at=start,
                ended_at=None if running and state == "ArtifactCommit" else start,
                exit_code=1 if bad else 0,
                stdout=f"{state} output",
                error="exit 1" if bad else "",
            )
        if failed:
            Step.objects.create(
                deployment=deployment,
                component=c["key"],
                state="ArtifactRollback",
                argv=[],
                started_at=start,
                ended_at=start,
                exit_code=0,
            )
    _journal(deployment)
    return deployment


def _journal(deployment: Deployment) -> None:
    """The journal entries a run leaves for these rows (the audit reads the journal), each row
    sealed with its entry as the services do."""
    from audit.services import journal_append
    from updates.selectors import component_versions

    subject = f"deployment:{deployment.pk}"
    actor = deployment.who
    manifest = {"id": deployment.manifest_id, "name": deployment.manifest.name, "sha256": "0" * 64}
    previous = Deployment.objects.filter(pk__lt=deployment.pk, status="succeeded").order_by("-pk").first()
    created: dict[str, object] = {
        "status": "queued",
        "kind": deployment.kind,
        "manifest": manifest,
        "from": {"id": previous.manifest_id, "name": previous.manifest.name} if previous else None,
        "bundle": None,
        "forced": None,
    }
    journal_append(kind="deployment.created", actor=actor, subject=subject, data=created)
    journal_append(
        kind="deployment.planned", actor=actor, subject=subject, data={"components": PLAN["components"]}
    )
    for step in deployment.steps.order_by("id"):
        data = {
            "step": step.pk,
            "component": step.component,
            "state": step.state,
            "argv": step.argv,
            "started_at": iso(step.started_at),
            "ended_at": iso(step.ended_at) if step.ended_at else None,
            "duration_ms": 0,
            "exit_code": step.exit_code,
            "timed_out": False,
            "answer": "",
            "error": step.error,
            "stdout_sha256": sha256_hex(step.stdout.encode()),
            "stderr_sha256": sha256_hex(b""),
        }
        entry = journal_append(kind="step.finished", actor=actor, subject=subject, data=data)
        Step.objects.filter(pk=step.pk).update(seal=entry.hash)
    deployment.refresh_from_db()
    kind = "deployment.started" if deployment.status in Deployment.IN_PROGRESS else "deployment.finished"
    outcome: dict[str, object] = {
        "status": deployment.status,
        "reason": deployment.reason,
        "components": list(deployment.components),
        "versions": component_versions(deployment),
    }
    entry = journal_append(kind=kind, actor=actor, subject=subject, data=outcome)
    Deployment.objects.filter(pk=deployment.pk).update(seal=entry.hash)


def _position(status: str) -> dict[str, Any]:
    """The run position the engine leaves: what each component got through."""
    done = {
        "succeeded": dict.fromkeys(("entered", "downloaded", "install_started", "committed", "cleaned"), True)
    }
    undone = dict.fromkeys(("entered", "downloaded", "install_started", "rollback_ran", "rollback_ok"), True)
    progress = done.get(status, undone if status == "rolled_back" else {})
    return {"progress": {c["key"]: progress for c in PLAN["components"]}}

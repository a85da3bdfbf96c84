"""A delta bundle (docs/bytes.md) uploaded through the API, in-process: its bases are checked
before anything is recorded, and the missing ones are named in the 422 answer."""

from __future__ import annotations

import tarfile
from pathlib import Path

from django.test import Client

from accounts import services
from accounts.models import Role
from tests.api.conftest import SETUP
from updates.engine.artifact import write_artifact
from updates.engine.delta import make_delta_bundle
from updates.models import Bundle

MANIFEST = """api_version: mender/v1
kind: manifest
name: sys-{v}
system_types_compatible: [sys]
component_types:
  rtos:
    artifact_path: artifacts/rtos-{v}.mender
    update_strategy: {{order: 10}}
"""


def _bundle(tmp_path: Path, version: str) -> Path:
    (tmp_path / f"fw-{version}.img").write_text(f"firmware {version}\n" * 1000)
    write_artifact(
        tmp_path / f"rtos-{version}.mender",
        kind="module-image",
        name=f"rtos-{version}",
        device_types=["rtos"],
        payload_type="rtos",
        files=[tmp_path / f"fw-{version}.img"],
        compression="none",
    )
    (tmp_path / f"manifest-{version}.yaml").write_text(MANIFEST.format(v=version))
    out = tmp_path / f"{version}.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(tmp_path / f"manifest-{version}.yaml", "manifest.yaml")
        tar.add(tmp_path / f"rtos-{version}.mender", f"artifacts/rtos-{version}.mender")
    return out


def test_an_uploaded_delta_bundle_without_its_bases_is_refused_naming_them(db: None, tmp_path: Path) -> None:
    services.user_create(username="op", role=Role.OPERATOR, password="op-password-1", actor=SETUP)
    token = services.token_create(username="op", role=Role.OPERATOR, name="t", actor=SETUP).secret
    delta = tmp_path / "delta.tar"
    make_delta_bundle(_bundle(tmp_path, "v1"), _bundle(tmp_path, "v2"), delta)
    with open(delta, "rb") as upload:
        answer = Client().post("/api/v1/bundles", {"file": upload}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 422, answer.content
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert "missing base artifact(s): rtos-v1 (sha256 " in error["message"]
    assert "the base of artifacts/rtos-v2.mender" in error["message"]
    assert not Bundle.objects.exists()

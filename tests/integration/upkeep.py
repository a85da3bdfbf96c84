"""Shared by the backup/restore and migration tests: a demo appliance with real history (two
deployments, a bundle whose files are hard links into the artifact store, a user and a token,
journal entries), and what an operator would compare after a restore."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.integration.conftest import CLI, POSTGRES_URL, DemoSystem, _pg_admin


def ok(result: Any) -> str:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def populate(demo: DemoSystem) -> None:
    ok(demo.install("manifest-v2.yaml"))
    bundle = demo.root / "v3.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(demo.system / "manifest-v3.yaml", "manifest-v3.yaml")
        for artifact in ("gateway-v3.mender", "rtos-v3.mender"):
            tar.add(demo.system / "artifacts" / artifact, f"artifacts/{artifact}")
    ok(demo.run("bundle", "add", str(bundle)))
    ok(demo.run("install", "1"))
    create = ["user", "create", "ops", "--role", "operator", "--password-stdin"]
    ok(
        subprocess.run(
            [CLI, *create], env=demo.env, input="a long enough password\n", capture_output=True, text=True
        )
    )
    ok(demo.run("token", "create", "--user", "ops", "--role", "operator", "--name", "ci"))


def snapshot(demo: DemoSystem) -> dict[str, Any]:
    """History with every step, the active manifest, the users and tokens (without secrets)."""
    status = json.loads(ok(demo.run("status", "--json")))
    return {
        "history": json.loads(ok(demo.run("history", "--json"))),
        "manifests": status["manifests"],
        "system": status["system"],
        "components": status["components"],
        "users": ok(demo.run("user", "list")),
        "tokens": ok(demo.run("token", "list")),
        "bundles": ok(demo.run("bundle", "list")),
    }


def journal_verifies(demo: DemoSystem) -> bool:
    result = demo.run("audit", "verify", "--json")
    return result.returncode == 0 and bool(json.loads(result.stdout)["ok"])


def destroy(demo: DemoSystem) -> None:
    """The data store and the database are gone (a new disk, a wiped partition)."""
    shutil.rmtree(demo.datastore)
    demo.datastore.mkdir()
    url = demo.env.get("DATABASE_URL")
    if url and POSTGRES_URL:
        name = url.rsplit("/", 1)[1]
        _pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{name}"')


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` with its content (what "nothing changed" compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

"""The tests keep to their own data store whatever the caller's shell exported (issue 24): a
developer who sourced demo/env.sh and then ran pytest must not find test keys, hook secrets or
uploads in the demo's data store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.isolated_env import TEST_STORE
from updates.actors import Actor
from updates.services.hook_secret import hook_secret_set

ROOT = Path(__file__).resolve().parents[1]
INNER = "tests/test_test_isolation.py::test_the_app_writes_into_this_runs_own_store"


def _demo_env(root: Path) -> dict[str, str]:
    """What `DEMO_ROOT=<root> . demo/env.sh` exports (run, not copied here)."""
    script = f'DEMO_ROOT="{root}" && . "{ROOT / "demo" / "env.sh"}" && env -0'
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    exported = dict(line.split("=", 1) for line in out.decode().split("\0") if "=" in line)
    assert exported["MENDER_ORCHESTRATOR_DATASTORE_DIR"] == str(root / "datastore")
    return exported


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_app_writes_into_this_runs_own_store(db: None) -> None:
    """Run here and, with the demo's environment, by the test below in a pytest of its own
    (the settings' secret key, the test database and the hook secret are its writes)."""
    assert Path(TEST_STORE).resolve() == settings.DATASTORE_DIR
    assert os.environ["MENDER_ORCHESTRATOR_DATASTORE_DIR"] == TEST_STORE  # what subprocesses get
    hook_secret_set(
        secret="ab" * 32, actor=Actor("cli", "test")
    )  # a write into the data store, as the hooks tests do
    assert (settings.DATASTORE_DIR / "hook-secret").is_file()
    assert "DEMO_ROOT" not in os.environ


def test_a_shell_that_sourced_the_demo_env_keeps_its_data_store_untouched(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    for sub in ("datastore", "share", "conf"):
        (demo / sub).mkdir(parents=True)
    (demo / "datastore" / "orchestrator.sqlite3").write_bytes(b"the demo's database")
    before = _files(demo)
    env = {**os.environ, **_demo_env(demo)}
    env.pop("PYTEST_XDIST_WORKER", None)  # a pytest of its own, not one more worker of this run
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", INNER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sorted(set(_files(demo)) - set(before)) == []  # no secret_key, hook-secret, test database
    assert _files(demo) == before
    assert inner.returncode == 0, inner.stdout + inner.stderr
    assert "1 passed" in inner.stdout

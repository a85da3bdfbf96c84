"""`orchestrator hook-secret set|rotate` through the real command line (a subprocess)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.hooks.conftest import SECRET, status_changed
from tests.integration.conftest import CLI
from updates.engine.hooks import signature
from updates.services import hooks


def run(store: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store)}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [CLI, "hook-secret", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


def test_it_sets_the_secret_from_stdin_readable_only_by_the_service(tmp_path: Path) -> None:
    result = run(tmp_path, "set", stdin=SECRET.upper() + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert SECRET not in result.stderr and SECRET.upper() not in result.stderr
    path = tmp_path / "hook-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == SECRET + "\n"


def test_it_refuses_a_secret_mender_would_not_take_and_keeps_the_old_one(tmp_path: Path) -> None:
    assert run(tmp_path, "set", stdin=SECRET).returncode == 0
    result = run(tmp_path, "set", stdin="hunter2\n")
    assert result.returncode == 2
    assert "hook-secret set: the secret must be hexadecimal digits" in result.stderr
    assert (tmp_path / "hook-secret").read_text() == SECRET + "\n"


def test_it_rotates_printing_the_new_secret_once(tmp_path: Path) -> None:
    assert run(tmp_path, "set", stdin=SECRET).returncode == 0
    result = run(tmp_path, "rotate")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)
    new = result.stdout.strip()
    assert new != SECRET and new not in result.stderr
    assert "it is shown only now" in result.stderr
    path = tmp_path / "hook-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == new + "\n"
    assert run(tmp_path, "rotate").stdout.strip() not in (new, SECRET)


@pytest.mark.django_db
def test_a_rotated_secret_signs_the_next_webhook(tmp_path: Path, settings: Any) -> None:
    settings.DATASTORE_DIR = tmp_path
    old_body = status_changed()
    assert run(tmp_path, "set", stdin=SECRET).returncode == 0
    new = run(tmp_path, "rotate").stdout.strip()
    with pytest.raises(hooks.HookUnauthorized):
        hooks.hook_event_receive(body=old_body, signature=signature(SECRET, old_body), remote_addr="::1")
    answer = hooks.hook_event_receive(body=old_body, signature=signature(new, old_body), remote_addr="::1")
    assert answer.status == 200

"""What a newcomer does first, from a fresh checkout in a temporary directory: the README's run
command twice (`bin/run --no-web --no-worker`: the demo, without the servers), the token command
it prints in a new shell (no environment sourced), and the README's test command on a machine that
lacks what the tests need. The second `bin/run` must keep the admin, its token and the history."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A new shell: none of the appliance's variables (the test run's own data store included).
DROPPED = ("MENDER_ORCHESTRATOR_", "ORCH_", "DEMO_ROOT", "DATABASE_URL", "CELERY_", "DJANGO_SETTINGS_MODULE")


def _fresh_checkout(dest: Path) -> Path:
    """The checkout's files as a clone has them (tracked and new, not ignored: no var/, no
    .venv), with the shared virtualenv linked in, so `bin/setup-venv` has nothing to install."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    return dest


def _shell_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(DROPPED)}


def _run(checkout: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=checkout, env=_shell_env(), capture_output=True, text=True, timeout=300
    )


def test_a_second_bin_run_keeps_the_admin_its_token_and_the_history(tmp_path: Path) -> None:
    checkout = _fresh_checkout(tmp_path / "clone")
    first = _run(checkout, "bin/run", "--no-web", "--no-worker")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert re.search(r"^created user admin \(role admin\) with password: \S+$", first.stdout, re.M), (
        first.stdout
    )
    for bundle in ("system-core-v2.tar.gz", "system-core-v3.tar.gz"):
        assert (checkout / "var" / "demo" / "bundles" / bundle).is_file()
        assert f"var/demo/bundles/{bundle}" in first.stdout

    # The token command bin/run prints, in a new shell: the checkout's var/local.env leads it to
    # the demo's data store.
    token = _run(checkout, "bin/mender-orchestrator", "token", "create", "--user", "admin", "--role", "admin")
    assert token.returncode == 0, token.stderr
    history = _run(checkout, "bin/mender-orchestrator", "history")
    assert [line.split()[0] for line in history.stdout.splitlines()] == ["#2", "#1"], history.stdout

    second = _run(checkout, "bin/run", "--no-web", "--no-worker")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "created user admin" not in second.stdout
    assert "admin exists; reset with `bin/run --reset`" in second.stdout
    assert "demo: kept var/demo with its users, tokens, bundles and history" in second.stdout
    assert "== setup" not in second.stdout  # the walk did not run again
    assert _run(checkout, "bin/mender-orchestrator", "history").stdout == history.stdout
    tokens = _run(checkout, "bin/mender-orchestrator", "token", "list")
    assert tokens.returncode == 0 and "admin" in tokens.stdout, tokens.stdout + tokens.stderr

    # The uploadable v3 bundle carries its own failure: installed, the whole system rolls back.
    v3 = checkout / "var" / "demo" / "bundles" / "system-core-v3.tar.gz"
    installed = _run(checkout, "bin/mender-orchestrator", "install", str(v3))
    assert installed.returncode == 1, installed.stdout + installed.stderr
    assert "back on rtos-v2; rtos-v3 rolled back (failed in ArtifactCommit)" in installed.stdout
    assert "demo-fails: ArtifactCommit R456" in installed.stdout
    assert not list((checkout / "var" / "demo" / "devices" / "R456").glob("*.FAIL"))

    # A command pointed at a data store that does not exist says so instead of making one.
    elsewhere = tmp_path / "no-store"
    lost = subprocess.run(
        [str(checkout / "bin" / "mender-orchestrator"), "status"],
        env={**_shell_env(), "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(elsewhere)},
        capture_output=True,
        text=True,
    )
    assert lost.returncode == 2 and f"no data store at {elsewhere}" in lost.stderr, lost.stderr
    assert not (elsewhere / "orchestrator.sqlite3").exists()


def test_bin_test_stops_at_once_naming_the_setup_command_when_something_is_missing(tmp_path: Path) -> None:
    env = {**_shell_env(), "ORCH_CHROMIUM": str(tmp_path / "no-chromium")}
    result = subprocess.run([str(ROOT / "bin" / "test")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # nothing ran: no venv set-up, no pytest
    assert "  chromium (the browser tests)\n" in result.stderr
    assert re.search(
        r"install and start them \(Debian\), then run bin/test again:  (sudo )?\.ci/setup\n$", result.stderr
    )

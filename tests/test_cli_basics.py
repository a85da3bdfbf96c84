from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "bin" / "mender-orchestrator"), *args], capture_output=True, text=True)


def test_it_prints_its_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mender-orchestrator ")


def test_it_exits_2_on_usage_errors() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_manage_py_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "orchestrator", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout == run("--version").stdout


def test_a_reading_command_on_a_store_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    store = tmp_path / "new" / "store"
    env = {**os.environ, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store)}
    cli = str(ROOT / "bin" / "mender-orchestrator")
    for argv in (["status"], ["token", "create", "--user", "admin", "--role", "admin"], ["history"]):
        result = subprocess.run([cli, *argv], env=env, capture_output=True, text=True)
        assert (result.returncode, result.stdout) == (2, ""), argv
        assert result.stderr.startswith(f"mender-orchestrator: no data store at {store} (no database yet)")
        assert "`bin/run`" in result.stderr and "MENDER_ORCHESTRATOR_DATASTORE_DIR" in result.stderr
        assert not (store / "orchestrator.sqlite3").exists()


def test_it_prepares_a_fresh_data_store_on_first_use(tmp_path: Path) -> None:
    store = tmp_path / "new" / "store"
    env = {**os.environ, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store)}
    cli = str(ROOT / "bin" / "mender-orchestrator")
    first = subprocess.run([cli, "user", "ensure-admin"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert (store / "orchestrator.sqlite3").is_file()
    result = subprocess.run([cli, "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "in progress: none" in result.stdout
    assert f"(nothing deployed and no components known in the data store {store};" in result.stdout


def test_it_reports_an_unusable_data_store_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {**os.environ, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(blocker / "store")}
    result = subprocess.run(  # a command that may create the data store (CREATES_STORE)
        [str(ROOT / "bin" / "mender-orchestrator"), "user", "ensure-admin"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("mender-orchestrator: cannot open the data store")
    assert "Traceback" not in result.stderr


def test_it_accepts_manifest_components_as_the_old_name_of_topology_components() -> None:
    from updates.cli import build_parser

    for command in ("install", "plan"):
        args = build_parser().parse_args([command, "m.yaml", "--manifest-components", "c.yaml"])
        assert args.topology_components == Path("c.yaml")

"""`--version`, `show-provides` and `show-inventory` run on every inventory poll: they are served
by the engine alone, without loading Django or Celery (issue 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Runs manage.py as bin/mender-orchestrator does, then reports which frameworks were loaded.
PROBE = """
import atexit, runpy, sys
def report():
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"django", "celery", "kombu", "ninja"})
    print("LOADED:" + ",".join(loaded), file=sys.stderr)
atexit.register(report)
sys.argv = [MANAGE, "orchestrator", *sys.argv[1:]]
runpy.run_path(MANAGE, run_name="__main__")
""".replace("MANAGE", repr(str(ROOT / "manage.py")))


def probe(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=60
    )
    loaded = next(line for line in result.stderr.splitlines() if line.startswith("LOADED:"))
    return result, loaded.removeprefix("LOADED:")


def a_system(tmp_path: Path) -> dict[str, str]:
    """One component behind the `answers` test interface, its topology in the data store."""
    share, store, answers = tmp_path / "share", tmp_path / "store", tmp_path / "answers"
    (share / "interfaces" / "v1").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "engine" / "interfaces" / "answers", share / "interfaces" / "v1" / "answers")
    store.mkdir()
    answers.mkdir()
    (answers / "Identity").write_text("id=B7\n")
    (answers / "Provides").write_text("rootfs-image.answers.version=board-v2\nchannel=beta\n")
    (answers / "Inventory").write_text("serial=0042\n")
    (store / "topology.yaml").write_text(
        "api_version: mender/v1\nkind: topology\nsystem_type: kit\ncomponents:\n"
        f"  - component_type: board\n    interface: answers\n    interface_args: ['{answers}']\n"
    )
    return {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATA_DIR": str(share),
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store),
        "MENDER_ORCHESTRATOR_TOPOLOGY_DIR": str(store),
        "MENDER_ORCHESTRATOR_CONF_DIR": str(tmp_path / "conf"),
    }


def test_it_prints_its_version_without_django(tmp_path: Path) -> None:
    result, loaded = probe(a_system(tmp_path), "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mender-orchestrator ")
    assert loaded == ""


def test_it_shows_provides_without_django(tmp_path: Path) -> None:
    result, loaded = probe(a_system(tmp_path), "--log-level", "debug", "show-provides")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "board.B7.channel=beta",
        "board.B7.rootfs-image.answers.version=board-v2",
    ]
    assert loaded == ""


def test_it_shows_inventory_without_django(tmp_path: Path) -> None:
    result, loaded = probe(a_system(tmp_path), "show-inventory")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "mender-orchestrator-manifest.board.B7.component_type=board",
        "mender-orchestrator-manifest.board.B7.version=board-v2",
        "board.B7.serial=0042",
    ]
    assert loaded == ""


def test_a_broken_topology_is_reported_the_same_way(tmp_path: Path) -> None:
    env = a_system(tmp_path)
    (Path(env["MENDER_ORCHESTRATOR_TOPOLOGY_DIR"]) / "topology.yaml").write_text("kind: [\n")
    result, loaded = probe(env, "show-provides")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"mender-orchestrator: {env['MENDER_ORCHESTRATOR_TOPOLOGY_DIR']}/topology.yaml:"
    )
    assert loaded == ""


def test_other_commands_and_a_system_without_topology_go_through_django(tmp_path: Path) -> None:
    env = a_system(tmp_path)
    result, loaded = probe(env, "status")
    assert result.returncode == 2 and "no data store at" in result.stderr  # no database yet (docs/cli.md §1)
    assert "django" in loaded
    assert probe(env, "user", "ensure-admin")[0].returncode == 0  # creates the database
    result, loaded = probe(env, "status")
    assert result.returncode == 0, result.stderr
    assert "django" in loaded
    (Path(env["MENDER_ORCHESTRATOR_TOPOLOGY_DIR"]) / "topology.yaml").unlink()
    result, loaded = probe(env, "show-provides")
    assert result.returncode == 2
    assert "no topology" in result.stderr
    assert "django" in loaded


def test_install_runs_without_celery_kombu_or_ninja(tmp_path: Path) -> None:
    """The command line runs its deployments itself and sends no task: its start-up imports
    neither Celery (nor its kombu) nor the REST API's ninja (docs/performance.md)."""
    from updates.engine.artifact import write_artifact

    env = a_system(tmp_path)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"v3")
    artifact = tmp_path / "board-v3.mender"
    write_artifact(
        artifact,
        kind="module-image",
        name="board-v3",
        device_types=["board"],
        payload_type="answers",
        files=[payload],
    )
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "api_version: mender/v1\nkind: manifest\nname: kit-v3\nsystem_types_compatible: [kit]\n"
        f"component_types:\n  board:\n    artifact_path: {artifact}\n    update_strategy:\n      order: 1\n"
    )
    result, loaded = probe({**env, "ORCH_REBOOT_WAIT_SECONDS": "0"}, "install", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "board.B7" in result.stdout and "ArtifactCommit" in result.stdout
    assert loaded == "django"

"""A simulated system (the demo's gateway and RTOS boards) in a temp dir, driven through the
real command line as a subprocess, with its own data store and SQLite database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from updates.engine.artifact import write_artifact

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / "bin" / "mender-orchestrator")


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once per test process; each system copies the file (much faster than migrating)."""
    store = tmp_path_factory.mktemp("template-store")
    env = {**os.environ, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store)}
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    return store / "orchestrator.sqlite3"


@dataclass
class DemoSystem:
    root: Path
    env: dict[str, str]

    @property
    def system(self) -> Path:
        return self.root / "system"

    @property
    def datastore(self) -> Path:
        return self.root / "datastore"

    def device(self, device_id: str) -> Path:
        return self.root / "devices" / device_id

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def install(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("install", str(self.system / name), *args)

    def versions(self) -> dict[str, str]:
        return {
            d.name: (d / "version").read_text().strip() for d in sorted((self.root / "devices").iterdir())
        }

    def fail(self, device_id: str, state: str) -> None:
        (self.device(device_id) / f"{state}.FAIL").touch()

    def answer(self, device_id: str, query: str, value: str) -> None:
        (self.device(device_id) / "answers" / query).write_text(value)

    def calls(self) -> list[tuple[float, str, str, str]]:
        """(timestamp, device, state, start|end) for every logged interface call."""
        path = self.root / "calls.log"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            ts, dev, state, edge, *_ = line.split()
            rows.append((float(ts), dev, state, edge))
        return rows

    def states(self, device_id: str) -> list[str]:
        """The states (not queries) a device was driven through, in order."""
        queries = {
            "Identity",
            "Provides",
            "Inventory",
            "NeedsUnpackedArtifact",
            "ProvidePayloadFileSizes",
            "NeedsArtifactReboot",
            "SupportsRollback",
        }
        return [
            s for _, d, s, edge in self.calls() if d == device_id and edge == "start" and s not in queries
        ]

    def timeline(self) -> list[tuple[float, str, str]]:
        path = self.root / "timeline.log"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            ts, dev, _old, _arrow, new = line.split()
            rows.append((float(ts), dev, new))
        return rows


def build_demo(root: Path, db_template: Path) -> DemoSystem:
    subprocess.run(
        [str(ROOT / "demo" / "setup"), "--no-artifacts", str(root)], check=True, capture_output=True
    )
    build = root / "build"
    build.mkdir(exist_ok=True)
    for version in (1, 2, 3):
        for ctype in ("gateway", "rtos"):
            name = f"{ctype}-v{version}"
            payload = build / f"{name}.img"
            payload.write_text(f"demo firmware {name}\n")
            write_artifact(
                root / "system" / "artifacts" / f"{name}.mender",
                kind="module-image",
                name=name,
                device_types=[ctype],
                payload_type=ctype,
                files=[payload],
            )
    (root / "datastore").mkdir(exist_ok=True)
    shutil.copy(db_template, root / "datastore" / "orchestrator.sqlite3")
    (root / "conf").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(root / "datastore"),
        "MENDER_ORCHESTRATOR_TOPOLOGY_DIR": str(root / "datastore"),
        "MENDER_ORCHESTRATOR_DATA_DIR": str(root / "share"),
        "MENDER_ORCHESTRATOR_CONF_DIR": str(root / "conf"),
        "ORCH_REBOOT_COMMAND": f"touch {root / 'host-rebooted'}",
    }
    env.pop("MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE", None)
    return DemoSystem(root=root, env=env)


@pytest.fixture
def demo(tmp_path: Path, migrated_db: Path) -> Iterator[DemoSystem]:
    yield build_demo(tmp_path / "demo", migrated_db)

"""A simulated system (the demo's gateway and RTOS boards) in a temp dir, driven through the
real command line, with its own data store and SQLite database.

`demo.run(...)` runs the command line inside the test process (tests/inprocess_cli.py: same
environment, settings and database as the subprocess would have, without its start-up time);
`demo.run(..., subprocess=True)` runs `bin/mender-orchestrator` for the tests of the process
contract (exit codes of a real process, kills, crashes, the update module calling us)."""

from __future__ import annotations

import os
import shutil
import subprocess
import subprocess as _subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import dj_database_url
import pytest

from tests.inprocess_cli import run_cli
from updates.engine.artifact import write_artifact
from updates.engine.interface import QUERY_STATES

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / "bin" / "mender-orchestrator")


# The PostgreSQL pass of .ci/run sets DATABASE_URL: then every demo system gets a fresh database,
# cloned from a template migrated once per test process, instead of its SQLite file.
POSTGRES_URL = os.getenv("DATABASE_URL", "")


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Migrate once per test process; each system copies the file (much faster than migrating)."""
    store = tmp_path_factory.mktemp("template-store")
    env = {**os.environ, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store)}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    if not POSTGRES_URL:
        yield store / "orchestrator.sqlite3"
        return
    template = f"orch_tpl_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{template}"')
    env["DATABASE_URL"] = _pg_url(template)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    (store / "postgres-template").write_text(template)
    yield store / "orchestrator.sqlite3"
    _pg_admin(f'DROP DATABASE IF EXISTS "{template}"')


def _pg_url(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def _pg_admin(sql: str) -> None:
    import psycopg

    db = dj_database_url.parse(POSTGRES_URL)
    with psycopg.connect(
        dbname="postgres",
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    ) as conn:
        conn.execute(sql)


@dataclass
class DemoSystem:
    root: Path
    env: dict[str, str]
    # pytest-django's blocker: set by the `demo` fixture, whose commands then run in-process.
    db_blocker: Any = None

    @property
    def system(self) -> Path:
        return self.root / "system"

    @property
    def datastore(self) -> Path:
        return self.root / "datastore"

    def device(self, device_id: str) -> Path:
        return self.root / "devices" / device_id

    def run(self, *args: str, timeout: float = 120, subprocess: bool = False) -> CompletedProcess[str]:
        """The command line on this system: in this process unless `subprocess` (or the system
        was built without the blocker, e.g. for a worker); `timeout` bounds a subprocess."""
        if self.db_blocker is not None and not subprocess:
            return run_cli(args, self.env, db_blocker=self.db_blocker)
        return _subprocess.run([CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def install(self, name: str, *args: str) -> CompletedProcess[str]:
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
        return [
            s
            for _, d, s, edge in self.calls()
            if d == device_id and edge == "start" and s not in QUERY_STATES
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
        "ORCH_REBOOT_WAIT_SECONDS": "0",
    }
    env.pop("MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE", None)
    env.pop("DATABASE_URL", None)  # its own SQLite copy; the `demo` fixture may give it a PostgreSQL one
    return DemoSystem(root=root, env=env)


@pytest.fixture
def demo(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_db: Path, django_db_blocker: Any
) -> Iterator[DemoSystem]:
    system = build_demo(tmp_path / "demo", migrated_db)
    # Tests marked cli_subprocess (crashes, kills, the update module) and every test under
    # ORCH_TEST_CLI=subprocess run each command as a process; the others in this one.
    if not request.node.get_closest_marker("cli_subprocess") and os.getenv("ORCH_TEST_CLI") != "subprocess":
        system.db_blocker = django_db_blocker
    if not POSTGRES_URL:
        yield system
        return
    name = f"orch_demo_{uuid.uuid4().hex[:12]}"
    template = (migrated_db.parent / "postgres-template").read_text()
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    system.env["DATABASE_URL"] = _pg_url(name)
    yield system
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""The appliance's environment: paths, config, keys, and how inputs are loaded."""

from __future__ import annotations

import contextlib
import shlex
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from updates.engine.artifact import PublicKey, load_public_key
from updates.engine.config import OrchestratorConfig, load_config
from updates.engine.inspection import Inspector, NullJournal
from updates.engine.interface import InterfaceRunner
from updates.engine.machine import Journal
from updates.engine.manifest import DesiredState, load_desired_state
from updates.services.stored_inspection import StoredInspector

Echo = Callable[[str], None]
__all__ = ["NullJournal"]  # re-exported: its home is the engine


@dataclass(frozen=True)
class Environment:
    """The appliance's paths and knobs, from settings (env-driven) and mender-orchestrator.conf."""

    datastore: Path
    data_dir: Path
    topology_dir: Path
    config: OrchestratorConfig
    reboot_command: tuple[str, ...]
    reboot_wait_seconds: float

    @property
    def work_root(self) -> Path:
        return self.datastore / "work"

    @property
    def manifest_store(self) -> Path:
        return self.datastore / "manifests"

    def keys(self) -> list[PublicKey]:
        return [load_public_key(path) for path in self.config.verify_keys]

    def runner(self) -> InterfaceRunner:
        return InterfaceRunner(data_dir=self.data_dir, timeout=self.config.interface_timeout_seconds)


def environment_load() -> Environment:
    datastore = Path(settings.DATASTORE_DIR)
    return Environment(
        datastore=datastore,
        data_dir=Path(settings.DATA_DIR),
        topology_dir=Path(settings.TOPOLOGY_DIR),
        config=load_config(Path(settings.CONF_DIR), datastore),
        reboot_command=tuple(shlex.split(settings.REBOOT_COMMAND)),
        reboot_wait_seconds=settings.REBOOT_WAIT_SECONDS,
    )


def store_relative(text: str) -> str:
    """`text` with the data store's absolute path cut off the files it names: what a client is
    shown names `bundles/3/manifest.yaml`, not where this server keeps its files."""
    store = Path(settings.DATASTORE_DIR)
    for root in dict.fromkeys((str(store), str(store.resolve()))):
        if len(root) > 1:
            text = text.replace(root.rstrip("/") + "/", "")
    return text


def desired_state_load(
    env: Environment,
    *,
    manifest_path: Path,
    topology_components: Path | None,
    manifest_data: bytes | None = None,
) -> DesiredState:
    components = topology_components_file(env, explicit=topology_components)
    return load_desired_state(
        manifest_path.resolve(),
        topology_dir=env.topology_dir,
        topology_components=components,
        manifest_data=manifest_data,
        # Applied from where it lies (not a bundle being checked): its artifact files must be there.
        check_artifact_paths=manifest_data is None,
    )


def topology_components_file(env: Environment, *, explicit: Path | None = None) -> Path | None:
    """The separate topology components file, if any: CLI `-t` wins over the environment
    (MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE), which wins over config `TopologyComponents`."""
    from_env = Path(settings.TOPOLOGY_COMPONENTS_FILE) if settings.TOPOLOGY_COMPONENTS_FILE else None
    return explicit or from_env or env.config.topology_components


@contextlib.contextmanager
def live_inspector(
    env: Environment, *, journal: Journal | None = None, workdir: Path | None = None
) -> Iterator[Inspector]:
    """An Inspector for live questions to the components. Its queries' File-API trees go in
    `workdir` (a deployment's), or in a scratch directory removed afterwards."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = (
                Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orch-inspect-"))) / "_inspect"
            )
        if settings.INTERFACE_QUERIES == "stored":  # the unprivileged web server (deploy/systemd)
            yield StoredInspector(runner=env.runner(), workdir=workdir)
            return
        yield Inspector(runner=env.runner(), journal=journal or NullJournal(), workdir=workdir)

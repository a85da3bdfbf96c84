"""The appliance's directories, from Mender's environment variable names.

One reading shared by the Django settings and the Django-free entry (`updates.launch`), so
`show-provides` served without Django looks in exactly the places `install` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    datastore: Path
    data_dir: Path
    conf_dir: Path
    topology_dir: Path
    topology_components_file: str  # "" when unset


def paths_from_env(base_dir: Path) -> Paths:
    """`base_dir` is the checkout: a fresh clone keeps its data store under `var/`."""
    default_store = base_dir / "var" / "lib" / "mender-orchestrator"
    datastore = Path(os.getenv("MENDER_ORCHESTRATOR_DATASTORE_DIR", str(default_store))).resolve()
    return Paths(
        datastore=datastore,
        data_dir=Path(os.getenv("MENDER_ORCHESTRATOR_DATA_DIR", "/usr/share/mender-orchestrator")),
        conf_dir=Path(os.getenv("MENDER_ORCHESTRATOR_CONF_DIR", "/etc/mender-orchestrator")),
        topology_dir=Path(os.getenv("MENDER_ORCHESTRATOR_TOPOLOGY_DIR", str(datastore))),
        topology_components_file=os.getenv("MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE", ""),
    )

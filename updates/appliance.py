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


# Written by `bin/run`: the demo's environment, so commands run from the checkout find the demo's
# data store without sourcing demo/env.sh (docs/environment.md §1.6).
LOCAL_ENV = Path("var") / "local.env"
LOCAL_ENV_KEY = "MENDER_ORCHESTRATOR_DATASTORE_DIR"


def load_local_env(base_dir: Path) -> Path | None:
    """Adds the checkout's `var/local.env` to this process's environment and returns its path.

    Only when the environment names no data store: one named there brings its own settings, and
    a half-applied demo file would mix two appliances. Even then a variable already set wins.
    Lines are `NAME=value` (the value literal to the end of the line); `#` starts a comment line.
    """
    if LOCAL_ENV_KEY in os.environ:
        return None
    path = base_dir / LOCAL_ENV
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.isidentifier() and not name.startswith("#"):
            os.environ.setdefault(name, value)
    return path


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

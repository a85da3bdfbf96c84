"""The commands served without Django: `--version`, `show-provides`, `show-inventory`.

Mender's inventory script runs `show-provides`/`show-inventory` on every inventory poll and
tooling runs `--version`; on a small gateway every Python start costs seconds, and these need
only the engine. Everything else (and a seed-form system, whose components are in the active
manifest in the database) is handed to the Django command line: `serve` returns None for it.
Imports stay inside the functions, so each command loads only what it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def serve(argv: Sequence[str]) -> int | None:
    """The exit code if `argv` was served here; None to run it through Django."""
    args = _without_log_level(list(argv))
    if args == ["--version"]:
        from updates.engine.version import VERSION

        print(f"mender-orchestrator {VERSION}")
        return 0
    if args in (["show-provides"], ["show-inventory"]):
        return _live_query(args[0])
    return None


def _without_log_level(args: list[str]) -> list[str]:
    """Drop a leading global `--log-level LEVEL`; anything unusual goes the long way (argparse)."""
    if not args or not args[0].startswith("--log-level"):
        return args
    from updates.engine.config import LOG_LEVELS

    if args[0] == "--log-level" and len(args) > 1 and args[1] in LOG_LEVELS:
        return args[2:]
    if args[0].startswith("--log-level=") and args[0].split("=", 1)[1] in LOG_LEVELS:
        return args[1:]
    return args


def _live_query(command: str) -> int | None:
    import tempfile

    from updates.appliance import load_local_env, paths_from_env
    from updates.engine.config import load_config
    from updates.engine.errors import OrchestratorError
    from updates.engine.inspection import (
        Inspector,
        NullJournal,
        inventory_lines,
        provides_lines,
        topology_on_disk,
    )
    from updates.engine.interface import InterfaceRunner

    load_local_env(BASE_DIR)
    paths = paths_from_env(BASE_DIR)
    try:
        config = load_config(paths.conf_dir, paths.datastore)
        from_env = Path(paths.topology_components_file) if paths.topology_components_file else None
        topology = topology_on_disk(paths.topology_dir, from_env or config.topology_components)
        if topology is None:
            return None
        runner = InterfaceRunner(data_dir=paths.data_dir, timeout=config.interface_timeout_seconds)
        with tempfile.TemporaryDirectory(prefix="orch-show-") as tmp:
            inspector = Inspector(runner=runner, journal=NullJournal(), workdir=Path(tmp))
            inspected = inspector.inspect(topology.components)
            lines = (
                provides_lines(inspected)
                if command == "show-provides"
                else inventory_lines(inspector, inspected)
            )
    except OrchestratorError as exc:  # as the Django side's `_print_lines` reports them
        print(f"mender-orchestrator: {exc}", file=sys.stderr, flush=True)
        return int(exc.exit_code)
    print("\n".join(lines))
    return 0

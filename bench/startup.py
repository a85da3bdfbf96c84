#!/usr/bin/env python3
"""CLI start-up (issue 12): medians of 5 runs, measured in this run against their baselines.

- `bin/mender-orchestrator --version` over `.venv/bin/python -c pass` (target <= 4);
- `bin/mender-orchestrator show-provides` (three components on the demo interfaces) over a bare
  `django.setup()` (target < 1): Mender's inventory script runs it on every poll.

Usage: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / "bin" / "mender-orchestrator")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
DJANGO_SETUP = (
    "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'orchestrator_site.settings'; django.setup()"
)


def median_seconds(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def demo_env(root: Path) -> dict[str, str]:
    subprocess.run(
        [str(ROOT / "demo" / "setup"), "--no-artifacts", str(root)], check=True, capture_output=True
    )
    return {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATA_DIR": str(root / "share"),
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(root / "datastore"),
        "MENDER_ORCHESTRATOR_TOPOLOGY_DIR": str(root / "datastore"),
        "MENDER_ORCHESTRATOR_CONF_DIR": str(root / "conf"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-startup-"))
    try:
        env = demo_env(tmp / "demo")
        bare = median_seconds([PYTHON, "-c", "pass"], env, runs)
        version = median_seconds([CLI, "--version"], env, runs)
        django = median_seconds([PYTHON, "-c", DJANGO_SETUP], env, runs)
        provides = median_seconds([CLI, "show-provides"], env, runs)
    finally:
        shutil.rmtree(tmp)
    print(f"python -c pass        {bare:7.3f} s")
    print(f"--version             {version:7.3f} s   ratio {version / bare:5.2f} (target <= 4)")
    print(f"bare django.setup()   {django:7.3f} s")
    print(f"show-provides         {provides:7.3f} s   ratio {provides / django:5.2f} (target < 1)")


if __name__ == "__main__":
    main()

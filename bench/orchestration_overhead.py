#!/usr/bin/env python3
"""Orchestration overhead against the physical limit: the interfaces' own fork/exec (issues 3, 12, 25).

The baseline replays the argv lists recorded in the step rows with the engine's own concurrency:
the calls of one barrier (one state of one order group; the inspection of all components, at
most 16 at a time) run at once, one thread per component running that component's calls in
order, and the next barrier starts when the last call of this one ended. Measured and baseline
runs alternate (A B A B …, each install on a fresh copy of the same migrated data store) and
each figure is the median of the pairwise ratios with its spread (`bench/pairwise.py`).

1. 60 components in 6 order groups, no-op interface: the whole `install` process (start-up,
   inspection, every state, the work after the last call, exit) over the replay (goal <= 1.5).
2. 20 components in one group whose `Download` sleeps 0.5 s: the Download phase's wall time
   (from the step rows) over 0.5 s (goal <= 1.3), one run.
3. 1 000 components in 10 order groups: the whole `install` process over the replay (goal
   <= 1.5), and the peak RSS of the install process at 1 000 and at 250 components (memory
   must grow no faster than the system).

Usage: .venv/bin/python bench/orchestration_overhead.py [--only N] [--pairs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pairwise import alternate, figure, seconds  # noqa: E402

from updates.engine.artifact import write_artifact  # noqa: E402

NOOP = """#!/bin/sh
case "$1" in
  Identity) echo "id=$4" ;;
  Provides) echo "rootfs-image.noop.version=old" ;;
  Download) [ -f "$(dirname "$0")/download-sleep" ] && sleep "$(cat "$(dirname "$0")/download-sleep")" ;;
esac
exit 0
"""
# The calls a component makes inside one engine state (the engine's barrier is per state).
BARRIER = {
    "Identity": "inspect",
    "Provides": "inspect",
    "NeedsUnpackedArtifact": "Download",
    "ProvidePayloadFileSizes": "Download",
    "DownloadWithFileSizes": "Download",
    "ArtifactInstall": "ArtifactInstall",
    "NeedsArtifactReboot": "ArtifactInstall",
}
INSPECT_WIDTH = 16  # the inspector's pool (updates/engine/inspection.py)
Step = dict[str, object]


def build(root: Path, *, groups: int, per_group: int, download_sleep: float | None) -> dict[str, str]:
    share = root / "share" / "interfaces" / "v1"
    share.mkdir(parents=True)
    (share / "noop").write_text(NOOP)
    (share / "noop").chmod(0o755)
    if download_sleep:
        (share / "download-sleep").write_text(str(download_sleep))
    store = root / "datastore"
    store.mkdir()
    payload = root / "payload.bin"
    payload.write_bytes(b"x" * 1024)
    components, types = [], []
    for g in range(groups):
        ctype = f"type{g}"
        path = root / f"{ctype}.mender"
        write_artifact(
            path,
            kind="module-image",
            name=f"{ctype}-new",
            device_types=[ctype],
            payload_type="noop",
            files=[payload],
        )
        types.append(f"  {ctype}:\n    artifact_path: {path}\n    update_strategy:\n      order: {g + 1}\n")
        components += [
            f"  - component_type: {ctype}\n    interface: noop\n    interface_args: [c{g}x{i}]\n"
            for i in range(per_group)
        ]
    (store / "topology.yaml").write_text(
        "api_version: mender/v1\nkind: topology\nsystem_type: bench\ncomponents:\n" + "".join(components)
    )
    (root / "manifest.yaml").write_text(
        "api_version: mender/v1\nkind: manifest\nname: bench\nsystem_types_compatible: [bench]\ncomponent_types:\n"
        + "".join(types)
    )
    env = {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store),
        "MENDER_ORCHESTRATOR_TOPOLOGY_DIR": str(store),
        "MENDER_ORCHESTRATOR_DATA_DIR": str(root / "share"),
        "MENDER_ORCHESTRATOR_CONF_DIR": str(root / "conf"),
        "ORCH_REBOOT_COMMAND": "true",
        "ORCH_REBOOT_WAIT_SECONDS": "0",
    }
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
    return env


class System:
    """A built system whose migrated data store is copied fresh for every install."""

    def __init__(self, root: Path, *, groups: int, per_group: int, download_sleep: float | None = None):
        self.root = root
        self.env = build(root, groups=groups, per_group=per_group, download_sleep=download_sleep)
        self.template = root / "datastore.template"
        shutil.copytree(root / "datastore", self.template)
        self.steps: list[Step] = []
        self.rss: list[int] = []

    def install(self) -> float:
        """One whole `install` process on a fresh data store; wall seconds. Keeps the step rows."""
        store = self.root / "datastore"
        shutil.rmtree(store)
        shutil.copytree(self.template, store)
        wall, self.steps, rss = measured_install(self.env, self.root)
        self.rss.append(rss)
        return wall

    def replay(self) -> float:
        return replay(self.steps, self.root / "scratch")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin" / "mender-orchestrator"), *args], env=env, capture_output=True, text=True
    )


def measured_install(env: dict[str, str], root: Path) -> tuple[float, list[dict[str, object]], int]:
    """Wall time, the step rows, and the peak RSS (KiB) of the install process."""
    start = time.perf_counter()
    with open(root / "install.log", "w+") as log:
        argv = [str(ROOT / "bin" / "mender-orchestrator"), "install", str(root / "manifest.yaml")]
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            sys.exit(f"install failed ({proc.returncode}): {log.read()[-2000:]}")
    steps = json.loads(cli(env, "history", "--json").stdout)[0]["steps"]
    return wall, steps, usage.ru_maxrss


def steps_wall(steps: list[Step]) -> float:
    """From the first step row's start to the last one's end."""
    first = min(datetime.fromisoformat(str(s["started_at"])) for s in steps)
    last = max(datetime.fromisoformat(str(s["ended_at"])) for s in steps)
    return (last - first).total_seconds()


def barriers(steps: list[Step]) -> list[tuple[int, list[list[list[str]]]]]:
    """The step rows as the engine's barriers: (width, per component its argv lists in order).

    Consecutive rows of the same state of the same order group (the component type, argv[3])
    form one barrier; both inspections cover every component at once."""
    result: list[tuple[int, list[list[list[str]]]]] = []
    key: tuple[str, str] | None = None
    calls: dict[str, list[list[str]]] = {}
    for step in sorted(steps, key=lambda s: cast(int, s["id"])):
        argv = [str(a) for a in cast(list[object], step["argv"])]
        kind = BARRIER.get(str(step["state"]), str(step["state"]))
        this = (kind, "" if kind == "inspect" else argv[3])
        if this != key and calls:
            result.append(_barrier(key, calls))
            calls = {}
        key = this
        calls.setdefault(str(step["component"]).split("[")[-1], []).append(argv)
    if calls:
        result.append(_barrier(key, calls))
    return result


def _barrier(
    key: tuple[str, str] | None, calls: dict[str, list[list[str]]]
) -> tuple[int, list[list[list[str]]]]:
    width = min(INSPECT_WIDTH, len(calls)) if key and key[0] == "inspect" else len(calls)
    return width, list(calls.values())


def replay(steps: list[Step], scratch: Path) -> float:
    """The same calls with the engine's concurrency and nothing else: the physical limit."""
    scratch.mkdir(exist_ok=True)
    plan = barriers(steps)
    widest = max(width for width, _ in plan)

    def run(argvs: list[list[str]]) -> None:
        for argv in argvs:
            subprocess.run(argv, cwd=scratch, capture_output=True, check=False)

    with ThreadPoolExecutor(widest) as pool:
        start = time.perf_counter()
        for width, components in plan:
            for first in range(0, len(components), width):
                list(pool.map(run, components[first : first + width]))
        return time.perf_counter() - start


def download_phase(steps: list[Step]) -> float:
    return steps_wall([s for s in steps if s["state"] == "Download"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", type=int, choices=(1, 2, 3), help="run one figure only")
    parser.add_argument("--pairs", type=int, default=0, help="pairs per figure (default 7 for 1, 3 for 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        if args.only in (None, 1):
            sixty(Path(tmp), args.pairs or 7)
        if args.only in (None, 2):
            twenty(Path(tmp))
        if args.only in (None, 3):
            thousand(Path(tmp), args.pairs or 3)


def _pairs(system: System, pairs: int) -> list[float]:
    system.install()  # the step rows to replay, and a warm page cache for both sides
    run: Callable[[], float] = system.install
    return alternate(system.replay, run, pairs).ratios


def sixty(tmp: Path, pairs: int) -> None:
    system = System(tmp / "sixty", groups=6, per_group=10)
    ratios = _pairs(system, pairs)
    print(f"(1) 60 components / 6 groups, no-op interface: {len(system.steps)} interface calls")
    print(
        f"    install (start-up included) / replay at the engine's concurrency: {figure(ratios, goal='<= 1.5')}"
    )
    shutil.rmtree(system.root)


def twenty(tmp: Path) -> None:
    system = System(tmp / "twenty", groups=1, per_group=20, download_sleep=0.5)
    wall = system.install()
    phase = download_phase(system.steps)
    print("(2) 20 components in one group, Download sleeps 0.5 s")
    print(f"    Download phase wall {phase:.2f} s, ratio {phase / 0.5:.2f} (goal <= 1.3)")
    print(f"    whole install wall {wall:.2f} s (start-up, inspection, install, commit, cleanup)")
    shutil.rmtree(system.root)


def thousand(tmp: Path, pairs: int) -> None:
    system = System(tmp / "large-1000", groups=10, per_group=100)
    pairs_1000 = alternate(system.replay, system.install, pairs) if system.install() else None
    assert pairs_1000 is not None
    print(f"(3) 1000 components / 10 groups, no-op interface: {len(system.steps)} interface calls")
    print(
        f"    install (start-up included) {seconds(pairs_1000.measured)}, replay {seconds(pairs_1000.baseline)}:"
        f" {figure(pairs_1000.ratios, goal='<= 1.5')}"
    )
    rss_1000 = max(system.rss)
    shutil.rmtree(system.root)
    small = System(tmp / "large-250", groups=10, per_group=25)
    small_ratios = _pairs(small, pairs)
    rss_250 = max(small.rss)
    print(
        f"    peak RSS of install: {rss_1000 / 1024:.0f} MiB at 1000 components, {rss_250 / 1024:.0f} MiB at 250"
        f" (x{rss_1000 / rss_250:.2f} for x4 the components)"
    )
    print(f"    250 components: {figure(small_ratios, goal='<= 1.5')}")
    shutil.rmtree(small.root)


if __name__ == "__main__":
    main()

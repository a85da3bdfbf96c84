#!/usr/bin/env python3
"""Orchestration overhead, both figures from one run (issue #3).

1. 60 components in 6 order groups with a no-op interface: `install` wall time divided by the
   time of a plain loop that executes the same interface calls (the argv lists recorded in the
   step rows) one by one with `subprocess`.
2. 20 components in one group whose `Download` sleeps 0.5 s: the Download phase's wall time (first
   Download start to last Download end, from the step rows) divided by 0.5 s, plus the whole
   `install` wall time divided by 0.5 s for context (it includes process start-up and inspection).
3. 1 000 components in 10 order groups (issue 12): the install's wall time without start-up (first
   step row start to last step row end) over the plain loop, and the peak RSS of the `install`
   process; the same for 250 components shows how memory grows with the system.

Usage: .venv/bin/python bench/orchestration_overhead.py
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
from datetime import datetime
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from updates.engine.artifact import write_artifact  # noqa: E402

NOOP = """#!/bin/sh
case "$1" in
  Identity) echo "id=$4" ;;
  Provides) echo "rootfs-image.noop.version=old" ;;
  Download) [ -f "$(dirname "$0")/download-sleep" ] && sleep "$(cat "$(dirname "$0")/download-sleep")" ;;
esac
exit 0
"""


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


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin" / "mender-orchestrator"), *args], env=env, capture_output=True, text=True
    )


def timed_install(env: dict[str, str], root: Path) -> tuple[float, list[dict[str, object]]]:
    wall, steps, _ = measured_install(env, root)
    return wall, steps


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


def steps_wall(steps: list[dict[str, object]]) -> float:
    """From the first step row's start to the last one's end: the run without process start-up."""
    first = min(datetime.fromisoformat(str(s["started_at"])) for s in steps)
    last = max(datetime.fromisoformat(str(s["ended_at"])) for s in steps)
    return (last - first).total_seconds()


def plain_loop(steps: list[dict[str, object]], scratch: Path) -> float:
    scratch.mkdir(exist_ok=True)
    argvs = [[str(a) for a in cast(list[object], step["argv"])] for step in steps]
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, cwd=scratch, capture_output=True, check=False)
    return time.perf_counter() - start


def download_phase(steps: list[dict[str, object]]) -> float:
    return steps_wall([s for s in steps if s["state"] == "Download"])


def large_system(tmp: Path, components: int) -> tuple[float, float, int, int]:
    """(steps wall, plain loop, peak RSS KiB, calls) for `components` in 10 order groups."""
    root = tmp / f"large-{components}"
    env = build(root, groups=10, per_group=components // 10, download_sleep=None)
    _, steps, rss = measured_install(env, root)
    wall = steps_wall(steps)
    loop = plain_loop(steps, root / "scratch")
    shutil.rmtree(root)
    return wall, loop, rss, len(steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", type=int, choices=(1, 2, 3), help="run one figure only")
    only = parser.parse_args().only
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        if only in (None, 1):
            sixty(Path(tmp))
        if only in (None, 2):
            twenty(Path(tmp))
        if only in (None, 3):
            thousand(Path(tmp))


def sixty(tmp: Path) -> None:
    root1 = tmp / "sixty"
    env = build(root1, groups=6, per_group=10, download_sleep=None)
    wall, steps = timed_install(env, root1)
    loop = plain_loop(steps, root1 / "scratch")
    print(f"(1) 60 components / 6 groups, no-op interface: {len(steps)} interface calls")
    print(
        f"    install wall {wall:.2f} s, plain subprocess loop {loop:.2f} s, ratio {wall / loop:.2f} (target <= 1.5)"
    )
    shutil.rmtree(root1)


def twenty(tmp: Path) -> None:
    root2 = tmp / "twenty"
    env = build(root2, groups=1, per_group=20, download_sleep=0.5)
    wall, steps = timed_install(env, root2)
    phase = download_phase(steps)
    print("(2) 20 components in one group, Download sleeps 0.5 s")
    print(f"    Download phase wall {phase:.2f} s, ratio {phase / 0.5:.2f} (target <= 1.3)")
    print(
        f"    whole install wall {wall:.2f} s, ratio {wall / 0.5:.2f} (includes start-up, inspection, install, commit, cleanup)"
    )


def thousand(tmp: Path) -> None:
    wall, loop, rss, calls = large_system(tmp, 1000)
    print(f"(3) 1000 components / 10 groups, no-op interface: {calls} interface calls")
    print(
        f"    install wall (step rows, no start-up) {wall:.2f} s, plain loop {loop:.2f} s, ratio {wall / loop:.2f} (target <= 1.5)"
    )
    small_wall, small_loop, small_rss, _ = large_system(tmp, 250)
    print(
        f"    peak RSS of install: {rss / 1024:.0f} MiB at 1000 components, {small_rss / 1024:.0f} MiB at 250"
    )
    print(
        f"    (250 components: wall {small_wall:.2f} s, loop {small_loop:.2f} s, ratio {small_wall / small_loop:.2f})"
    )


if __name__ == "__main__":
    main()

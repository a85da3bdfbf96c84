"""Throughput and peak memory of verify-and-extract against `sha256sum` on the same payload.

    .venv/bin/python bench/artifact_throughput.py [--size MiB] [--gzip-size MiB]

Builds a single-file artifact (uncompressed, then gzip) in a temp dir, times `sha256sum` of the
raw payload (baseline) and `read_artifact(..., extract_to=...)` in a child process, and prints
the speed ratio (ours / sha256sum) and the child's peak RSS. Targets (uncompressed): ratio >= 0.8,
RSS < 64 MiB. Each measurement is the best of --repeat runs, after one warm-up of the page cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from updates.engine.artifact import write_artifact  # noqa: E402

MIB = 1 << 20
# The child reports its own VmHWM too: ru_maxrss of a child includes its parent's RSS at fork time.
CHILD = (
    "import sys, time, re; from pathlib import Path; t = time.perf_counter();"
    "from updates.engine.artifact import read_artifact;"
    "read_artifact(sys.argv[1], extract_to=Path(sys.argv[2])); print(time.perf_counter() - t);"
    "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
)


def _payload(path: Path, size_mib: int) -> None:
    # Incompressible data, so gzip cannot shrink the work the reader has to do.
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for index in range(size_mib):
            out.write(block[index % 251 :] + block[: index % 251])


def _timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB) of exactly this child, and its stdout."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{argv[0]} failed with {child.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss, out


def _best(argv: list[str], repeat: int) -> tuple[float, int, str]:
    runs = [_timed(argv) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs), min(runs)[2]


def _measure(tmp: Path, size_mib: int, compression: str, repeat: int) -> None:
    payload = tmp / f"payload-{compression}.bin"
    artifact = tmp / f"bench-{compression}.mender"
    _payload(payload, size_mib)
    write_artifact(
        artifact,
        kind="module-image",
        name="bench-1",
        device_types=["bench"],
        files=[payload],
        payload_type="single-file",
        compression=compression,  # type: ignore[arg-type]  # one of the writer's, from argparse choices
    )
    _timed(["sha256sum", str(payload)])  # warm the page cache for both sides
    base = _best(["sha256sum", str(payload)], repeat)[0]
    ours_runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(dir=tmp) as out:
            ours_runs.append(_timed([sys.executable, "-c", CHILD, str(artifact), out]))
    ours, _, inner = min(ours_runs)
    rss = max(r[1] for r in ours_runs)
    hwm = max(int(r[2].split()[1]) for r in ours_runs)
    bytes_ = size_mib * MIB
    print(f"[{compression}] payload {size_mib} MiB, artifact {artifact.stat().st_size / MIB:.1f} MiB")
    print(f"  sha256sum            {base:7.3f} s  {bytes_ / base / MIB:8.1f} MiB/s")
    print(
        f"  read_artifact+extract{ours:7.3f} s  {bytes_ / ours / MIB:8.1f} MiB/s"
        f"  (in-process {float(inner.split()[0]):.3f} s, incl. fsync)"
    )
    print(
        f"  ratio ours/sha256sum {base / ours:7.3f}   peak RSS {rss / 1024:.1f} MiB (ru_maxrss),"
        f" {hwm / 1024:.1f} MiB (VmHWM)"
    )
    payload.unlink()
    artifact.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512, help="uncompressed run payload, MiB (default 512)")
    parser.add_argument("--gzip-size", type=int, default=128, help="gzip run payload, MiB (default 128)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: system temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="artifact-bench-") as tmp:
        _measure(Path(tmp), args.size, "none", args.repeat)
        if args.gzip_size:
            _measure(Path(tmp), args.gzip_size, "gzip", args.repeat)


if __name__ == "__main__":
    main()

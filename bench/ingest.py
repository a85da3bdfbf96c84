"""Bundle ingest throughput and peak memory against `cp` + the SHA-256 limit (issue 25).

    .venv/bin/python bench/ingest.py [--size MiB] [--pairs N] [--gzip]

Builds a bundle (.tar; .tar.gz with --gzip) holding a manifest and one artifact with an
incompressible, uncompressed payload of --size MiB (default 1024). The baseline is `cp BUNDLE
COPY` plus hashing the bundle once as fast as this machine can (the faster of `openssl dgst
-sha256` and `hashlib` with 1 MiB reads); measured is `updates.engine.bundle.ingest` into a fresh
artifact store in a child process (hashing the upload, verifying the artifact, writing and
fsync'ing it into the store). The two alternate (A B A B …); the figure is the median of the
pairwise speed ratios (baseline time / ingest time) with its spread (`bench/pairwise.py`), goal
>= 0.7, and the child's peak RSS (goal < 100 MiB). For scale it also prints a copy with the fsync
that `cp` leaves out and ingest owes the durability contract (`dd conv=fsync`). The Django side (records, compatibility
queries) is constant-cost and not measured here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from artifact_throughput import HASHLIB  # noqa: E402
from pairwise import alternate, figure, seconds  # noqa: E402

from updates.engine.artifact import write_artifact  # noqa: E402

MIB = 1 << 20
MANIFEST = b"""api_version: mender/v1
kind: manifest
name: bench-v1
system_types_compatible: [bench]
component_types:
  bench:
    artifact_path: artifacts/bench-v1.mender
    update_strategy: {order: 10}
"""
CHILD = (
    "import sys, time, re; from pathlib import Path; t = time.perf_counter();"
    "from updates.engine.bundle import ingest; from updates.engine.store import ArtifactStore;"
    "r = ingest(open(sys.argv[1], 'rb'), ArtifactStore(Path(sys.argv[2])));"
    "assert not r.problems, r.problems; print(time.perf_counter() - t);"
    "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
)


def _payload(path: Path, size_mib: int) -> None:
    block = os.urandom(MIB)  # incompressible: no compression layer can shrink the work
    with open(path, "wb") as out:
        for index in range(size_mib):
            out.write(block[index % 251 :] + block[: index % 251])


def _bundle(tmp: Path, size_mib: int, gz: bool) -> Path:
    payload, artifact = tmp / "payload.bin", tmp / "bench-v1.mender"
    _payload(payload, size_mib)
    write_artifact(
        artifact,
        kind="module-image",
        name="bench-v1",
        device_types=["bench"],
        payload_type="bench",
        files=[payload],
        compression="none",
    )
    payload.unlink()
    (tmp / "manifest.yaml").write_bytes(MANIFEST)
    bundle = tmp / ("bundle.tar.gz" if gz else "bundle.tar")
    with tarfile.open(bundle, "w:gz", compresslevel=1) if gz else tarfile.open(bundle, "w") as tar:
        tar.add(tmp / "manifest.yaml", "manifest.yaml")
        tar.add(artifact, "artifacts/bench-v1.mender")
    artifact.unlink()
    return bundle


def _timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB) of exactly this child, and its stdout."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{argv[0]} failed")
    return time.perf_counter() - start, usage.ru_maxrss, out


def _baseline(bundle: Path, tmp: Path) -> float:
    copy = tmp / "copy"
    elapsed = _timed(["cp", str(bundle), str(copy)])[0]
    openssl = _timed(["openssl", "dgst", "-sha256", str(bundle)])[0]
    copy.unlink()
    return elapsed + min(openssl, _timed([sys.executable, "-c", HASHLIB, str(bundle)])[0])


def _dd(bundle: Path, tmp: Path) -> float:
    """cp with the fsync ingest owes the durability contract: the disk's share, for scale."""
    start = time.perf_counter()
    subprocess.run(
        ["dd", f"if={bundle}", f"of={tmp / 'dd'}", "bs=1M", "conv=fsync"], capture_output=True, check=True
    )
    (tmp / "dd").unlink()
    return time.perf_counter() - start


def _ours(bundle: Path, tmp: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(dir=tmp) as store:
        wall, _, out = _timed([sys.executable, "-c", CHILD, str(bundle), store])
        subprocess.run(["chmod", "-R", "u+w", store], check=True)  # stored files are read-only
    return wall, int(out.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="payload MiB (default 1024)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--gzip", action="store_true", help="a .tar.gz bundle instead of a .tar")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(
        prefix="bench-ingest-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None
    ) as tmp_name:
        tmp = Path(tmp_name)
        bundle = _bundle(tmp, args.size, args.gzip)
        os.sync()  # the setup's dirty pages would compete with the ingest's fsync, not the baseline
        _baseline(bundle, tmp)  # warm the page cache for both sides
        hwm: list[int] = []

        def ours() -> float:
            wall, peak = _ours(bundle, tmp)
            hwm.append(peak)
            return wall

        result = alternate(lambda: _baseline(bundle, tmp), ours, args.pairs)
        size = bundle.stat().st_size / MIB
        base, mine = statistics.median(result.baseline), statistics.median(result.measured)
        print(f"bundle {bundle.name}: {size:.1f} MiB (payload {args.size} MiB)")
        print(f"  cp + sha256 limit {seconds(result.baseline)}  {size / base:8.1f} MiB/s")
        print(
            f"  ingest            {seconds(result.measured)}  {size / mine:8.1f} MiB/s  (hash + verify + store + fsync)"
        )
        print(f"  baseline / ingest: {figure(result.speeds, goal='>= 0.7')}")
        disk = statistics.median(_dd(bundle, tmp) for _ in range(3))
        print(f"  for scale: copying the bundle with dd conv=fsync takes {disk:.3f} s here")
        print(f"  peak RSS {max(hwm) / 1024:.1f} MiB (goal < 100)")


if __name__ == "__main__":
    main()

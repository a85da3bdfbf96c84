"""Throughput and peak memory of verify-and-extract against the SHA-256 limit (issue 25).

    .venv/bin/python bench/artifact_throughput.py [--size MiB] [--gzip-size MiB] [--pairs N]

Builds a single-file artifact (uncompressed, then gzip) in a temp dir. The limit is hashing the
payload once as fast as this machine can: the faster of `openssl dgst -sha256` and `hashlib`
(1 MiB reads) in a child process; for gzip, `zcat` of the same gzip stream piped into
`openssl dgst -sha256`. Measured: `read_artifact(..., extract_to=...)` in a child process (verify
the whole artifact, write the payload, fsync it). Limit and measured runs alternate (A B A B …);
the figure is the median of the pairwise speed ratios (limit time / ours) with its spread
(`bench/pairwise.py`), goal >= 0.8, and the child's peak RSS (goal < 64 MiB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pairwise import alternate, figure, seconds  # noqa: E402

from updates.engine.artifact import write_artifact  # noqa: E402

MIB = 1 << 20
# The child reports its own VmHWM too: ru_maxrss of a child includes its parent's RSS at fork time.
CHILD = (
    "import sys, time, re; from pathlib import Path; t = time.perf_counter();"
    "from updates.engine.artifact import read_artifact;"
    "read_artifact(sys.argv[1], extract_to=Path(sys.argv[2])); print(time.perf_counter() - t);"
    "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
)
VERIFY = "import sys; from updates.engine.artifact import read_artifact; read_artifact(sys.argv[1])"
HASHLIB = (
    "import hashlib, sys\n"
    "h, buf = hashlib.sha256(), bytearray(1 << 20)\n"
    "with open(sys.argv[1], 'rb', buffering=0) as f:\n"
    "    while n := f.readinto(buf):\n"
    "        h.update(memoryview(buf)[:n])\n"
    "print(h.hexdigest())"
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


def _dd(source: Path, target: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync"], capture_output=True, check=True
    )
    target.unlink()
    return time.perf_counter() - start


def _limit(payload: Path, gz: Path | None) -> float:
    """Hashing the payload once: the faster of openssl and hashlib (gzip: zcat | openssl)."""
    if gz is not None:
        return _timed(["sh", "-c", f"zcat '{gz}' | openssl dgst -sha256"])[0]
    openssl = _timed(["openssl", "dgst", "-sha256", str(payload)])[0]
    return min(openssl, _timed([sys.executable, "-c", HASHLIB, str(payload)])[0])


def _measure(tmp: Path, size_mib: int, compression: str, pairs: int) -> None:
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
    gz = None
    if compression == "gzip":  # the same gzip stream the artifact carries, for zcat
        gz = tmp / "payload.gz"
        subprocess.run(["sh", "-c", f"gzip -6 -n -c '{payload}' > '{gz}'"], check=True)
    # Flushed before measuring: a gigabyte of the setup's own dirty pages written back meanwhile
    # competes with the extraction's fsync for the disk (2x slower at times), and not with the limit.
    os.sync()
    runs: list[tuple[float, int, str]] = []

    def ours() -> float:
        with tempfile.TemporaryDirectory(dir=tmp) as out:
            runs.append(_timed([sys.executable, "-c", CHILD, str(artifact), out]))
        return runs[-1][0]

    _limit(payload, gz)  # warm the page cache for both sides
    result = alternate(lambda: _limit(payload, gz), ours, pairs)
    rss = max(r[1] for r in runs)
    hwm = max(int(r[2].split()[1]) for r in runs)
    bytes_ = size_mib * MIB
    limit_name = "zcat | openssl dgst -sha256" if gz else "openssl / hashlib"
    print(f"[{compression}] payload {size_mib} MiB, artifact {artifact.stat().st_size / MIB:.1f} MiB")
    base, mine = statistics.median(result.baseline), statistics.median(result.measured)
    print(f"  limit ({limit_name}) {seconds(result.baseline)}  {bytes_ / base / MIB:8.1f} MiB/s")
    print(
        f"  read_artifact+extract {seconds(result.measured)}  {bytes_ / mine / MIB:8.1f} MiB/s (incl. fsync;"
        f" {statistics.median(float(r[2].split()[0]) for r in runs):.3f} s inside the child, its imports included)"
    )
    print(f"  limit / ours: {figure(result.speeds, goal='>= 0.8')}")
    disk = statistics.median(_dd(payload, tmp / "dd") for _ in range(3))
    print(f"  for scale: writing the payload with dd conv=fsync takes {disk:.3f} s here")
    verify = alternate(
        lambda: _limit(payload, gz), lambda: _timed([sys.executable, "-c", VERIFY, str(artifact)])[0], pairs
    )
    print(
        f"  verify only (no extract) {seconds(verify.measured)}, limit / ours: {figure(verify.speeds, goal='>= 0.8')}"
    )
    print(f"  peak RSS {rss / 1024:.1f} MiB (ru_maxrss), {hwm / 1024:.1f} MiB (VmHWM)")
    payload.unlink()
    artifact.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512, help="uncompressed run payload, MiB (default 512)")
    parser.add_argument("--gzip-size", type=int, default=128, help="gzip run payload, MiB (default 128)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: system temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="artifact-bench-") as tmp:
        _measure(Path(tmp), args.size, "none", args.pairs)
        if args.gzip_size:
            _measure(Path(tmp), args.gzip_size, "gzip", args.pairs)


if __name__ == "__main__":
    main()

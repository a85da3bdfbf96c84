"""Fewer bytes (docs/bytes.md): streamed server artifacts, and delta bundles.

    .venv/bin/python bench/bytes.py stream [--size MiB] [--repeat N] [--port P]
    .venv/bin/python bench/bytes.py delta [--sizes 1,16,64] [--changed 0.05] [--repeat N] [--pair OLD NEW]

`delta`: for each size, an artifact whose uncompressed payload has --changed of its 4 KiB blocks
rewritten against the one before (and, with --pair, two files given, e.g. two builds of a
binary), the zstd patch-from delta (`updates/engine/delta.py`) is made; then alternating
--repeat times, `sha256sum` of the full artifact (baseline) and the rebuild from base + delta with
its sha256 check (a child process: time, peak RSS). Prints delta size / full artifact size (the
--pair's artifacts both uncompressed and gzip-compressed, `mender-artifact`'s default), make
time, rebuild MiB/s, peak RSS against base size, and the median baseline/rebuild time ratio.

`stream`:
Builds an artifact with an incompressible, uncompressed payload of --size MiB (default 1024) and
serves it from a local HTTP server (a child process speaking the Mender device deployments API
subset: list, download link, file with Range). Then, alternating, --repeat times (default 3):

- baseline: `curl -s URL | sha256sum` of the artifact file from the same server;
- streamed: what a deployment does with `ArtifactsCache.Enabled: false`: the header read at
  planning, then the artifact streamed and verified (manifest, payload checksums) while its
  payload is read to the end, as an interface reading its stream would;
- stored: the old path, also the cache's: download whole into the artifact store (verified,
  fsync'd), then read the payload back from there.

Each measured run is a child process: wall time, its peak RSS, and the peak bytes under its data
store (sampled every 10 ms). Prints per run and the median of the pairwise ratios
(baseline time / measured time: 1.0 = as fast as curl | sha256sum) with their spread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from updates.engine.artifact import ArtifactReader, Limits, read_artifact, write_artifact  # noqa: E402
from updates.engine.delta import DeltaEntry, Reconstruction, file_sha256, make_delta  # noqa: E402
from updates.engine.server import LIST_PATH, ArtifactServer, ServerSettings  # noqa: E402
from updates.engine.store import ArtifactStore  # noqa: E402
from updates.engine.streaming import StreamRef, read_ref, ref_path, streamed_payloads, write_ref  # noqa: E402

MIB = 1 << 20
NAME = "bench-v2"
Compression = Literal["none", "gzip"]


# -- the server (a child process, so it does not share the measured process's GIL) ----------------


def serve(directory: Path, port: int) -> None:
    artifact = directory / f"{NAME}.mender"
    listing = json.loads((directory / "listing.json").read_text())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == LIST_PATH:
                return self._json(listing)
            if url.path.endswith("/download"):
                return self._json({"uri": f"http://127.0.0.1:{port}/files/{NAME}.mender"})
            size = artifact.stat().st_size
            start = int(self.headers.get("Range", "bytes=0-")[6:-1] or 0)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            with open(artifact, "rb") as file, contextlib.suppress(ConnectionError):
                file.seek(start)
                shutil.copyfileobj(file, self.wfile, MIB)  # a head read hangs up early: fine

        def _json(self, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# -- the measured children ---------------------------------------------------------------------


class _Opener:
    def __init__(self, server: ArtifactServer) -> None:
        self.server = server

    def open(self, ref: StreamRef) -> object:
        return self.server.stream(ref.id, ref.size)


def child(mode: str, url: str, datastore: Path) -> None:
    peak = _DiskPeak(datastore)
    start = time.perf_counter()
    server = ArtifactServer(ServerSettings(url=url))
    [remote] = server.list_artifacts(release_name=NAME, device_type="bench")
    read = 0
    if mode == "streamed":
        ref, info = server.read_head(remote, keys=())
        path = ref_path(datastore / "streams", server.base, remote.id)
        write_ref(path, ref)
        assert read_ref(path).id == remote.id
        for payload in streamed_payloads(_Opener(server), path, info, unpacked=True, keys=()):  # type: ignore[arg-type]
            while chunk := payload.read(MIB):
                read += len(chunk)
    else:
        stored, _ = server.fetch(remote, ArtifactStore(datastore / "artifacts"), keys=(), limits=Limits())
        with open(stored.path, "rb") as file:
            reader = ArtifactReader(file)
            reader.read_header()
            for payload in reader.payloads():
                while chunk := payload.read(MIB):
                    read += len(chunk)
            reader.finish()
    elapsed = time.perf_counter() - start
    peak.stop()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]
    print(json.dumps({"seconds": elapsed, "rss_kib": hwm, "disk_peak": peak.peak, "payload": read}))


class _DiskPeak(threading.Thread):
    """The largest number of bytes under `root` seen while the run lasts."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, _du(self.root))

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.peak = max(self.peak, _du(self.root))


def _du(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                total += (Path(dirpath) / name).lstat().st_blocks * 512
            except FileNotFoundError:
                pass
    return total


# -- delta ------------------------------------------------------------------------------------------


def delta_child(base: Path, delta: Path, sha256: str, size: int) -> None:
    start = time.perf_counter()
    entry = DeltaEntry("artifact", "bench", sha256, size, "", "", "delta")
    with open(delta, "rb") as source:
        rebuilt = Reconstruction(base, source, entry)
        while rebuilt.read(MIB):
            pass
    hwm = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]
    print(json.dumps({"seconds": time.perf_counter() - start, "rss_kib": hwm}))


def _changed_pair(tmp: Path, size_mib: int, changed: float) -> tuple[Path, Path]:
    rnd = random.Random(size_mib)
    base = bytearray(os.urandom(size_mib * MIB))
    new = bytearray(base)
    blocks = len(base) // 4096
    for index in rnd.sample(range(blocks), int(blocks * changed)):
        new[index * 4096 : (index + 1) * 4096] = os.urandom(4096)
    old_path, new_path = tmp / f"old-{size_mib}.img", tmp / f"new-{size_mib}.img"
    old_path.write_bytes(base)
    new_path.write_bytes(new)
    return old_path, new_path


def _as_artifact(payload: Path, name: str, compression: Compression) -> Path:
    out = payload.with_name(f"{name}.mender")
    copy = payload.with_name(f"{name}.img")
    if copy != payload:
        shutil.copyfile(payload, copy)
    write_artifact(
        out,
        kind="module-image",
        name=name,
        device_types=["bench"],
        payload_type="bench",
        files=[copy],
        compression=compression,
    )
    return out


def _delta_case(label: str, old: Path, new: Path, repeat: int, compression: Compression) -> None:
    base = _as_artifact(old, "bench-v1", compression)
    full = _as_artifact(new, "bench-v2", compression)
    delta = full.with_suffix(".delta")
    start = time.perf_counter()
    with open(delta, "wb") as sink:
        make_delta(base, full, sink)
    made = time.perf_counter() - start
    size, mib = full.stat().st_size, full.stat().st_size / MIB
    sha = file_sha256(full)
    ratios, runs = [], []
    for _ in range(repeat):
        b = time.perf_counter()
        subprocess.run(["sha256sum", str(full)], check=True, capture_output=True)
        b = time.perf_counter() - b
        out = subprocess.run(
            [sys.executable, __file__, "delta-child", str(base), str(delta), sha, str(size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        m = json.loads(out)
        runs.append(m)
        ratios.append(b / m["seconds"])
    rebuild = statistics.median(r["seconds"] for r in runs)
    rss = max(r["rss_kib"] for r in runs) / 1024
    print(
        f"{label}: artifact {mib:.1f} MiB, delta {delta.stat().st_size / MIB:.3f} MiB "
        f"({100 * delta.stat().st_size / size:.2f} %), made in {made:.1f} s; rebuild {mib / rebuild:.0f} MiB/s, "
        f"peak RSS {rss:.0f} MiB (base {base.stat().st_size / MIB:.1f} MiB + {rss - base.stat().st_size / MIB:.0f})"
    )
    print("  " + _summary("sha256sum vs rebuild (time)", ratios))
    for path in (base, full, delta):
        path.unlink()


def delta_bench(sizes: list[int], changed: float, repeat: int, pair: list[Path] | None) -> None:
    with tempfile.TemporaryDirectory(
        prefix="bench-delta-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None
    ) as tmp_name:
        tmp = Path(tmp_name)
        for size in sizes:
            old, new = _changed_pair(tmp, size, changed)
            _delta_case(f"{size} MiB, {100 * changed:g} % of 4 KiB blocks changed", old, new, repeat, "none")
        if pair:
            old, new = (tmp / "pair-old.bin", tmp / "pair-new.bin")
            shutil.copyfile(pair[0], old)
            shutil.copyfile(pair[1], new)
            for compression in ("none", "gzip"):  # type: Compression
                label = f"pair {pair[0].name} -> {pair[1].name} ({compression} artifacts)"
                _delta_case(label, old, new, repeat, compression)


# -- the driver --------------------------------------------------------------------------------


def _build(tmp: Path, size_mib: int) -> Path:
    payload = tmp / "payload.bin"
    block = os.urandom(MIB)
    with open(payload, "wb") as out:
        for index in range(size_mib):
            out.write(block[index % 251 :] + block[: index % 251])
    artifact = _as_artifact(payload, NAME, "none")
    payload.unlink()
    payload.with_name(f"{NAME}.img").unlink()
    info = read_artifact(artifact)
    listing = [
        {
            "id": "a1",
            "name": NAME,
            "device_types_compatible": ["bench"],
            "artifact_provides": info.all_provides(),
            "size": artifact.stat().st_size,
        }
    ]
    (tmp / "listing.json").write_text(json.dumps(listing))
    return artifact


def _wait_for(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the bench server did not start on port {port}")


def _baseline(url: str) -> float:
    start = time.perf_counter()
    subprocess.run(f"curl -s {url} | sha256sum", shell=True, check=True, capture_output=True)
    return time.perf_counter() - start


def _measured(mode: str, url: str, tmp: Path) -> dict[str, float]:
    datastore = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{mode}-"))
    out = subprocess.run(
        [sys.executable, __file__, "child", mode, url, str(datastore)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    subprocess.run(["chmod", "-R", "u+w", str(datastore)], check=True)  # stored files are read-only
    shutil.rmtree(datastore)
    result: dict[str, float] = json.loads(out)
    return result


def _summary(label: str, ratios: list[float]) -> str:
    return (
        f"{label}: median ratio {statistics.median(ratios):.2f} "
        f"(spread {min(ratios):.2f}..{max(ratios):.2f}, {len(ratios)} pairs)"
    )


def stream_bench(size: int, repeat: int, port: int) -> None:
    with tempfile.TemporaryDirectory(
        prefix="bench-bytes-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None
    ) as tmp_name:
        tmp = Path(tmp_name)
        artifact = _build(tmp, size)
        mib = artifact.stat().st_size / MIB
        server = subprocess.Popen([sys.executable, __file__, "serve", str(tmp), str(port)])
        try:
            _wait_for(port)
            base = f"http://127.0.0.1:{port}"
            url = f"{base}/files/{NAME}.mender"
            _baseline(url)  # warm the page cache
            ratios: dict[str, list[float]] = {"streamed": [], "stored": []}
            print(f"artifact {mib:.1f} MiB (payload {size} MiB), {repeat} rounds, alternating")
            for _ in range(repeat):
                for mode in ("streamed", "stored"):
                    b = _baseline(url)
                    m = _measured(mode, base, tmp)
                    ratios[mode].append(b / m["seconds"])
                    print(
                        f"  curl|sha256sum {b:6.2f} s {mib / b:7.1f} MiB/s   {mode:8} {m['seconds']:6.2f} s "
                        f"{mib / m['seconds']:7.1f} MiB/s  peak disk {m['disk_peak'] / MIB:8.1f} MiB  "
                        f"peak RSS {m['rss_kib'] / 1024:6.1f} MiB"
                    )
            for mode, values in ratios.items():
                print(_summary(f"{mode} vs curl|sha256sum (throughput)", values))
        finally:
            server.terminate()
            server.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        return serve(Path(sys.argv[2]), int(sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == "delta-child":
        return delta_child(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        return child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    stream = sub.add_parser("stream", help="streamed vs stored server artifacts")
    stream.add_argument("--size", type=int, default=1024, help="payload MiB (default 1024)")
    stream.add_argument("--repeat", type=int, default=3)
    stream.add_argument("--port", type=int, default=8120)
    delta = sub.add_parser("delta", help="delta size, rebuild speed and memory")
    delta.add_argument("--sizes", default="1,16,64", help="MiB, comma-separated (default 1,16,64)")
    delta.add_argument("--changed", type=float, default=0.05, help="share of 4 KiB blocks changed")
    delta.add_argument("--repeat", type=int, default=3)
    delta.add_argument("--pair", type=Path, nargs=2, metavar=("OLD", "NEW"), help="two real files as well")
    args = parser.parse_args()
    if args.what == "stream":
        stream_bench(args.size, args.repeat, args.port)
    else:
        delta_bench([int(s) for s in args.sizes.split(",")], args.changed, args.repeat, args.pair)


if __name__ == "__main__":
    main()

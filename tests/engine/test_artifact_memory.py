"""Peak memory of verify-and-extract must not grow with the payload size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from updates.engine.artifact import write_artifact

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
# VmHWM rather than the parent's ru_maxrss of the child: Linux carries the forked parent's RSS
# into the child's ru_maxrss across exec, which would measure pytest instead of the reader.
CHILD = (
    "import sys, re; from pathlib import Path; from updates.engine.artifact import read_artifact;"
    "read_artifact(sys.argv[1], extract_to=Path(sys.argv[2]));"
    "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
)


def _peak_rss_kib(tmp_path: Path, size_mib: int, compression: Literal["none", "gzip"]) -> int:
    payload = tmp_path / f"p{size_mib}.bin"
    with open(payload, "wb") as out:
        for index in range(size_mib):
            out.write(bytes([index % 251]) * MIB)
    artifact = tmp_path / f"a{size_mib}.mender"
    write_artifact(
        artifact,
        kind="module-image",
        name="m",
        device_types=["d"],
        files=[payload],
        payload_type="single-file",
        compression=compression,
    )
    payload.unlink()
    (tmp_path / f"out{size_mib}").mkdir()
    argv = [sys.executable, "-c", CHILD, str(artifact), str(tmp_path / f"out{size_mib}")]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_it_does_not_grow_memory_with_payload_size(
    tmp_path: Path, compression: Literal["none", "gzip"]
) -> None:
    small = _peak_rss_kib(tmp_path, 8, compression)
    large = _peak_rss_kib(tmp_path, 64, compression)
    assert large - small < 4 * 1024, (small, large)
    assert large < 64 * 1024

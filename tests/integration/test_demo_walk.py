from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_walk_ends_with_the_whole_system_back_on_v2(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = subprocess.run(
        [str(ROOT / "demo" / "walk"), str(root)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "walk OK" in result.stdout
    for device, version in (("G13", "gateway-v2"), ("R998", "rtos-v2"), ("R456", "rtos-v2")):
        assert (root / "devices" / device / "version").read_text().strip() == version

"""docs/architecture.md's import rules, checked on the real source tree: no cycle, no arrow that
climbs a floor, the worker and devices apps on their side of the line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _map(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "import-map"), *args], capture_output=True, text=True, check=False
    )


def test_it_finds_no_cycle_and_no_upward_arrow() -> None:
    result = _map("--check")
    assert result.returncode == 0, result.stdout
    assert " 0 upward, 0 import cycles" in result.stdout


def test_nothing_imports_the_worker_and_devices_only_the_engine_of_updates() -> None:
    arrows = [line.split()[1:4:2] for line in _map("-v").stdout.splitlines() if line.startswith("arrow: ")]
    into_worker = [
        (a, b)
        for a, b in arrows
        if b.startswith("worker") and not a.startswith(("worker", "orchestrator_site"))
    ]
    assert into_worker == [], into_worker
    devices_out = [(a, b) for a, b in arrows if a.startswith("devices") and b.startswith("updates.")]
    assert all(b.startswith("updates.engine.") for _, b in devices_out), devices_out


def test_it_fails_on_a_cycle_and_on_an_upward_arrow(tmp_path: Path) -> None:
    """The check itself can fail: a model importing a view climbs two floors, and two services
    importing each other (one of them inside a function) are a cycle."""
    files = {
        "updates/__init__.py": "",
        "updates/models.py": "from updates.web.views import page\n",
        "updates/web/__init__.py": "",
        "updates/web/views.py": "def page() -> None: ...\n",
        "updates/services/__init__.py": "",
        "updates/services/a.py": "from updates.services.b import g\n",
        "updates/services/b.py": "def g() -> None:\n    from updates.services.a import g as h\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = _map("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "upward: updates.models (floor 1) -> updates.web.views (floor 3)" in result.stdout
    assert "cycle: updates.services.a <-> updates.services.b" in result.stdout
    assert "inside a function: updates.services.b -> updates.services.a" in result.stdout

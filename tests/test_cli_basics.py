from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "bin" / "mender-orchestrator"), *args], capture_output=True, text=True)


def test_it_prints_its_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mender-orchestrator ")


def test_it_exits_2_on_usage_errors() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_manage_py_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "orchestrator", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout == run("--version").stdout

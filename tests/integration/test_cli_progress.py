"""Long work on a terminal shows bytes done / total and the rate on stderr (updates/cli/progress.py);
piped, the same command prints nothing extra. A real pseudo-terminal, a real backup and restore."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / "bin" / "mender-orchestrator")
PROGRESS = re.compile(
    r"\r(backup|restore|reading \S+): \d+\.\d MiB / \d+\.\d MiB \(\d+%\), \d+\.\d MiB/s\x1b\[K"
)


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal showed on stderr)."""
    main, side = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=side)
    os.close(side)
    shown = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        shown += data
    os.close(main)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    return proc.wait(timeout=120), stdout, shown.decode()


def test_backup_restore_and_bundle_add_show_progress_on_a_terminal_only(tmp_path: Path) -> None:
    store = tmp_path / "store"
    # Redrawn at every read after the first: small files draw on however fast a machine.
    env = {
        **os.environ,
        "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(store),
        "TERM": "xterm",
        "ORCH_TEST_PROGRESS_SECONDS": "0.000001",
    }
    assert subprocess.run([CLI, "user", "ensure-admin"], env=env, capture_output=True).returncode == 0
    (store / "artifacts").mkdir()
    (store / "artifacts" / "big").write_bytes(os.urandom(8 * 2**20))

    code, stdout, shown = _on_a_terminal([CLI, "backup", "-o", str(tmp_path / "b.tar.gz")], env)
    assert code == 0 and stdout.startswith(f"wrote {tmp_path / 'b.tar.gz'}"), stdout + shown
    drawn = PROGRESS.findall(shown)
    assert drawn and set(drawn) == {"backup"}, repr(shown)
    assert shown.endswith("\r\x1b[K")  # cleared: the terminal keeps only the command's report

    piped = subprocess.run(
        [CLI, "backup", "-o", str(tmp_path / "c.tar.gz")], env=env, capture_output=True, text=True
    )
    assert piped.returncode == 0 and piped.stderr == "", repr(piped.stderr)

    code, stdout, shown = _on_a_terminal([CLI, "restore", str(tmp_path / "b.tar.gz"), "--yes"], env)
    assert code == 0 and stdout.startswith("restored "), stdout + shown
    assert "restore" in PROGRESS.findall(shown), repr(shown)

    code, stdout, shown = _on_a_terminal([CLI, "bundle", "add", str(tmp_path / "c.tar.gz")], env)
    assert code == 2 and "rejected" in stdout  # a backup is no bundle, but it was read in full
    assert "reading c.tar.gz" in PROGRESS.findall(shown), repr(shown)

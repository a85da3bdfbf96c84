#!/usr/bin/env python3
"""What the audit journal costs the step writes (issue 11), both figures from one run.

The journal's group writer records 2 000 interface calls (started + finished, as the engine does
from 10 threads at once) into a fresh SQLite database: once with the journal entries (each
finished step also appends a hash-chained entry in the same transaction), once without (the
append replaced by a no-op). Prints both wall times and their ratio.

Usage: .venv/bin/python bench/journal_append.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CALLS, THREADS = 2000, 10


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        os.environ["MENDER_ORCHESTRATOR_DATASTORE_DIR"] = tmp
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
        env = {**os.environ}
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
        import django

        django.setup()
        from types import SimpleNamespace

        from updates import step_journal as journal

        # Without the journal: the row gets an empty seal, nothing is appended or signed.
        real = journal.step_journal
        off: Any = lambda *args, **kwargs: SimpleNamespace(hash="")  # noqa: E731
        runs: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(3):  # alternated, so a busy moment of the machine hits both alike
            for on in (True, False):
                journal.step_journal = real if on else off
                runs[on].append(_run())
        journal.step_journal = real
        with_journal, without = min(runs[True]), min(runs[False])
        print(f"{CALLS} interface calls from {THREADS} threads, best of 3")
        print(f"    step rows only {without:.2f} s, with journal entries {with_journal:.2f} s")
        print(f"    ratio {with_journal / without:.2f}")


def _run() -> float:
    from updates.actors import SYSTEM
    from updates.engine.interface import CallResult
    from updates.models import Deployment, Manifest
    from updates.step_journal import DbJournal

    manifest = Manifest.objects.create(name="bench", form="current", sha256="0" * 64, raw="", source_path="")
    deployment = Deployment.objects.create(
        manifest=manifest, slot=None, status="succeeded", actor=SYSTEM.as_json()
    )
    db = DbJournal(deployment)
    result = CallResult(
        argv=("noop", "Download"),
        exit_code=0,
        stdout="ok\n",
        stderr="",
        started_at=0,
        ended_at=0,
        timed_out=False,
    )

    def call(i: int) -> None:
        step = db.call_started(component=f"c{i % THREADS}", state="Download", argv=["noop", "Download"])
        db.call_finished(step, result=result)

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(call, range(CALLS)))
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


if __name__ == "__main__":
    main()

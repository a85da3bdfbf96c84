#!/usr/bin/env python3
"""What the audit journal costs the step writes (issues 11, 25), both sides from one run.

The journal's group writer records 2 000 interface calls (started + finished, as the engine does
from 10 threads at once) into a fresh SQLite database: once with the journal entries (each
finished step also appends a hash-chained entry in the same transaction), once without (the
append replaced by a no-op). Both sides time the same span, the same step writes: from the
first call to the writer's close (the writes still queued after the last step included); the
deployment row and the writer's thread are made before the clock starts on both. The two
alternate (A B A B …) and the figure is the median of the pairwise ratios, with its spread
(`bench/pairwise.py`); goal <= 1.2.

Usage: .venv/bin/python bench/journal_append.py [--pairs N]
"""

from __future__ import annotations

import argparse
import logging
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
sys.path.insert(0, str(ROOT / "bench"))

from pairwise import alternate, figure, seconds  # noqa: E402

CALLS, THREADS = 2000, 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        os.environ["MENDER_ORCHESTRATOR_DATASTORE_DIR"] = tmp
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
        env = {**os.environ}
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True)
        import django

        django.setup()
        logging.getLogger("orchestrator.audit").setLevel(logging.WARNING)  # no anchor lines
        from types import SimpleNamespace

        from updates import step_journal as journal

        # Without the journal: the row gets an empty seal, nothing is appended or signed.
        real = journal.step_journal
        off: Any = lambda *args, **kwargs: SimpleNamespace(hash="")  # noqa: E731

        def run(on: bool) -> float:
            journal.step_journal = real if on else off
            return _run()

        pairs = alternate(lambda: run(False), lambda: run(True), args.pairs)
        journal.step_journal = real
        print(f"{CALLS} interface calls from {THREADS} threads")
        print(f"    step rows only {seconds(pairs.baseline)}, with journal entries {seconds(pairs.measured)}")
        print(f"    with / without the journal: {figure(pairs.ratios, goal='<= 1.2')}")


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
    db.close()  # the writes still queued (finished steps are not waited for) count too
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

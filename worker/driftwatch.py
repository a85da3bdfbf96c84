"""The consumer step that keeps the drift watch of `policy.yaml` (docs/policy.md): every
DRIFT_TICK_SECONDS each worker asks whether `drift.interval` has passed since the last refresh
(the time is on the system's row, so it survives restarts and one worker of several claims it)
and then sends a refresh task; the refresh itself holds a lease, so only one runs at a time.
Runs on the consumer's timer, like the takeover check (`worker.takeover.TimerStep`).
"""

from __future__ import annotations

import logging

from worker.takeover import TimerStep

log = logging.getLogger("orchestrator.drift")
DRIFT_TICK_SECONDS = 5.0


class DriftWatch(TimerStep):
    seconds = DRIFT_TICK_SECONDS
    what = "check whether a drift refresh is due"

    def tick(self) -> None:
        # Imported here: worker.celery (which adds this step) loads before Django's apps are ready.
        from updates.services.dispatch import drift_watch_tick

        drift_watch_tick()

"""A deployment run as seen in the logs (journald): its id on every line while it runs, one line
when it starts and one when it ends. The per-state lines come from the journal
(`updates/step_journal.py`); the CLI's own report to the user is on stdout and is not repeated here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from updates.engine.errors import OrchestratorError
from updates.engine.manifest import parse_manifest
from updates.logcontext import deployment_context
from updates.models import Deployment

log = logging.getLogger("orchestrator.deployment")

# How loud each end is: an operator greps the journal for WARNING and ERROR.
_END_LEVEL: dict[str, int] = {
    Deployment.Status.ROLLED_BACK: logging.WARNING,
    Deployment.Status.REJECTED: logging.WARNING,
    Deployment.Status.INCONSISTENT: logging.ERROR,
}


@contextmanager
def deployment_logged(deployment: Deployment, *, action: str, actor: str) -> Iterator[None]:
    """Run the body as this deployment: `action` is what this process does with it (started,
    resumed, rolling back), `actor` who asked for it."""
    started = time.monotonic()
    with deployment_context(deployment.pk):
        _log_start(deployment, action=action, actor=actor)
        try:
            yield
        except OrchestratorError:  # a refusal (rejected plan): the row says why
            _log_end(deployment.pk, started)
            raise
        except BaseException:
            seconds = time.monotonic() - started
            log.error("deployment %d crashed after %.1f s", deployment.pk, seconds, exc_info=True)
            raise
        _log_end(deployment.pk, started)


def _log_start(deployment: Deployment, *, action: str, actor: str) -> None:
    system = deployment.manifest.topology.get("system_type") or "?"
    targets = _targets(deployment)
    log.info(
        "deployment %d %s by %s: system %s, manifest %s, targets %s",
        deployment.pk,
        action,
        actor,
        system,
        deployment.manifest.name,
        ", ".join(f"{k}={v}" for k, v in targets.items()) or "none",
        extra={"actor": actor, "system": system, "targets": targets},
    )


def _targets(deployment: Deployment) -> dict[str, str]:
    """Per component once planned (resume, rollback); before that per component type, as the
    manifest names them."""
    planned = deployment.plan.get("components") if deployment.plan else None
    if planned:
        return {c["key"]: c["target"] for c in planned if c["action"] == "install"}
    manifest = deployment.manifest
    parsed, _ = parse_manifest(manifest.raw.encode(), path=Path(manifest.source_path))
    return {t: target.artifact_name or "?" for t, target in parsed.targets.items()}


def _log_end(pk: int, started: float) -> None:
    status, reason = Deployment.objects.values_list("status", "reason").get(pk=pk)
    seconds = round(time.monotonic() - started, 3)
    log.log(
        _END_LEVEL.get(status, logging.INFO),
        "deployment %d ended (%s) after %.1f s: %s",
        pk,
        status,
        seconds,
        reason or "-",
        extra={"outcome": status, "duration_s": seconds},
    )

"""The crash-recovery decision: what to do with a deployment a dead runner left behind.

Beside `updates/liveness.py` (owner tokens, heartbeats), whose answers it acts on. A worker
that starts (`deployments_recover`), a worker's takeover timer (worker/takeover.py) and
`orchestrator resume --interrupted` at boot all ask `deployment_interrupted` and do what it says
(docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from updates.liveness import owner_alive
from updates.models import Deployment
from updates.selectors.deployments import deployment_in_progress


@dataclass(frozen=True)
class Interrupted:
    """What a dead runner left behind, and what to do with it: `run` a queued deployment whose
    message was lost, `resume` a running one by the crash rules, or nothing (`why` says why)."""

    action: Literal["run", "resume", "none"]
    deployment: Deployment | None
    why: str


def deployment_interrupted(*, dead_owner: str = "") -> Interrupted:
    """The one recovery decision, made alike when a worker starts (`deployments_recover`), by a
    worker's takeover timer, and by `orchestrator resume --interrupted` at boot.

    Stopped and reboot-required deployments wait for their operator or update module, a running
    one with a live owner (another worker, another host's worker, the CLI) is none of ours, and
    a queued one the CLI created is the CLI's (it runs it at once; `resume` picks it up).
    `dead_owner`: an owner token another process found dead (a worker of the owner's own host,
    which could look at the process): dead for good, whatever its host's beats say here.
    """
    deployment = deployment_in_progress()
    if deployment is None:
        return Interrupted("none", None, "no deployment in progress")
    status, pk = deployment.status, deployment.pk
    if status == Deployment.Status.QUEUED and not deployment.started_from_command_line:
        return Interrupted("run", deployment, f"deployment {pk} is queued and its message may be lost")
    dead = bool(dead_owner) and deployment.owner == dead_owner
    if status in Deployment.RUNNABLE and (dead or not owner_alive(deployment.owner)):
        return Interrupted("resume", deployment, f"deployment {pk} was left running by a dead process")
    return Interrupted("none", deployment, _left_alone(deployment))


def _left_alone(deployment: Deployment) -> str:
    pk, Status = deployment.pk, Deployment.Status
    if deployment.status == Status.STOPPED:
        return f"deployment {pk} is stopped: `resume` or `rollback` it"
    if deployment.status == Status.REBOOT_REQUIRED:
        return f"deployment {pk} waits for a host reboot: the update module resumes it"
    if deployment.status == Status.QUEUED:
        return f"deployment {pk} was queued by the command line: `resume` runs it"
    return f"deployment {pk} is running (owner {deployment.owner})"

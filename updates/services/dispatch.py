"""Deployments on Celery workers: hand work to a worker after commit, and the task bodies.

The web UI, the REST API and hooks call the `*_start` functions: they write (or check) the row
and enqueue a message carrying only ids once the transaction commits. The worker's tasks call
the other functions, which re-read the row and let the conditional claims of `deployments.py`
decide, so a redelivered or duplicated message does nothing. The CLI does not come here: it
runs its deployments in its own process.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from audit.services import journal_append
from updates import recovery, selectors
from updates.actors import SYSTEM, Actor
from updates.celeryapp import celery_app
from updates.engine.errors import BusyError, CleanupStarted, InvalidInput, NothingInProgress
from updates.engine.manifest import InputError
from updates.engine.planner import SelectionError
from updates.liveness import owner_alive
from updates.models import Deployment
from updates.services.bundles import bundle_manifest_path
from updates.services.constraints import forced_override
from updates.services.deployments import (
    deployment_busy_check,
    deployment_create,
    deployment_create_previous,
    deployment_create_reconcile,
    deployment_execute,
    deployment_resume,
    deployment_rollback,
)
from updates.services.drift import drift_refresh_due, system_refresh
from updates.services.system import plan_constraints_check
from updates.tasknames import TASK_FETCH, TASK_RECOVER, TASK_REFRESH, TASK_RESUME, TASK_ROLLBACK, TASK_RUN

log = logging.getLogger("orchestrator.dispatch")

# ----- callers (web, API, hooks): write or check, then enqueue after commit ---------------------


def deployment_start(
    *,
    manifest_path: Path,
    actor: Actor,
    topology_components: Path | None = None,
    stop_before: Sequence[str] = (),
    force: bool = False,
    force_reason: str = "",
    require_changes: bool = False,
) -> Deployment:
    """Queue a deployment and hand it to a worker once the row is committed.

    Raises InputError / SelectionError (nothing recorded) and BusyError (one is in progress:
    the API answers 409). Inside the caller's transaction the message waits for its commit.
    A plan that violates the declared constraints raises ConstraintViolation (a SelectionError:
    the API's 422) unless `force` (operator role; `force_reason` required, else
    ForceWithoutReason); `actor` is then recorded as who forced it. `require_changes` (the
    pages and the API): NothingToDeploy when the system runs every version already.
    """
    _not_cli(actor)
    forced = forced_override(force=force, reason=force_reason)
    deployment_busy_check()  # before asking the components: the slot refuses it anyway
    if forced is None or require_changes:
        plan_constraints_check(
            manifest_path=manifest_path,
            topology_components=topology_components,
            require_changes=require_changes,
            constraints=forced is None,
        )
    deployment = deployment_create(
        manifest_path=manifest_path,
        topology_components=topology_components,
        stop_before=stop_before,
        forced=forced,
        actor=actor,
    )
    _enqueue_on_commit(TASK_RUN, deployment.pk)
    return deployment


def deployment_start_bundle(
    *,
    bundle_id: int,
    actor: Actor,
    stop_before: Sequence[str] = (),
    force: bool = False,
    force_reason: str = "",
) -> Deployment:
    """Queue an accepted bundle's manifest (the pages and the API: never one that changes
    nothing). Raises BundleNotFound, BundleNotAccepted, NothingToDeploy and what
    `deployment_start` raises."""
    manifest_path = bundle_manifest_path(bundle_id=bundle_id)
    return deployment_start(
        manifest_path=manifest_path,
        actor=actor,
        stop_before=stop_before,
        force=force,
        force_reason=force_reason,
        require_changes=True,
    )


def deployment_start_previous(
    *, actor: Actor, stop_before: Sequence[str] = (), force: bool = False, force_reason: str = ""
) -> Deployment:
    """Queue the previous manifest again on a worker. Raises NothingInProgress (there is no
    previous manifest), InputError, BusyError; and, like `deployment_start`, ConstraintViolation
    unless `force` (with its `force_reason`)."""
    _not_cli(actor)
    forced = forced_override(force=force, reason=force_reason)
    deployment_busy_check()
    pointers = selectors.active_manifests()
    previous = pointers.previous if pointers else None
    if previous is not None:  # none: deployment_create_previous says so
        plan_constraints_check(
            manifest_path=Path(previous.source_path),
            manifest_data=previous.raw.encode(),
            require_changes=True,
            constraints=forced is None,
        )
    deployment = deployment_create_previous(stop_before=stop_before, actor=actor, forced=forced)
    _enqueue_on_commit(TASK_RUN, deployment.pk)
    return deployment


def deployment_start_reconcile(*, actor: Actor) -> Deployment:
    """Queue the active manifest again on a worker, so only drifted components are installed
    (docs/policy.md). Raises NothingInProgress (no active manifest), InputError, BusyError."""
    _not_cli(actor)
    deployment = deployment_create_reconcile(actor=actor)
    _enqueue_on_commit(TASK_RUN, deployment.pk)
    return deployment


def _not_cli(actor: Actor) -> None:
    if actor.from_command_line:
        raise InvalidInput("the command line runs its deployments itself; name the web user or hook")


def deployment_resume_start(
    *, deployment_id: int, actor: Actor, stop_before: Sequence[str] = ()
) -> Deployment:
    """Ask a worker to continue a stopped (or crashed) deployment. Raises NothingInProgress, BusyError."""
    deployment = _continuable(deployment_id)
    _request_record(deployment, "resume", actor)
    _enqueue_on_commit(TASK_RESUME, deployment.pk, deployment_fingerprint(deployment), list(stop_before))
    return deployment


def deployment_rollback_start(*, deployment_id: int, actor: Actor) -> Deployment:
    """Ask a worker to roll back the deployment in progress. Raises NothingInProgress, BusyError."""
    deployment = _continuable(deployment_id)
    _request_record(deployment, "rollback", actor)
    _enqueue_on_commit(TASK_ROLLBACK, deployment.pk, deployment_fingerprint(deployment))
    return deployment


def _request_record(deployment: Deployment, action: str, actor: Actor) -> None:
    """Who asked for a resume or rollback, on the deployment row (appended: never rewritten);
    the worker that carries it out acts as that actor (`_requester`)."""
    entry = {"action": action, "actor": actor.as_json(), "at": timezone.now().isoformat()}
    with transaction.atomic():
        row = Deployment.objects.select_for_update().get(pk=deployment.pk)
        Deployment.objects.filter(pk=deployment.pk).update(requests=[*row.requests, entry])
        journal_append(
            kind=f"deployment.{action}_requested",
            actor=actor,
            subject=f"deployment:{deployment.pk}",
            data={"via": "worker"},
        )


def _asked_by(deployment_id: int) -> Actor:
    """Who a worker acts for when it runs a queued deployment: whoever asked for it."""
    row = Deployment.objects.filter(pk=deployment_id).only("actor").first()
    return row.who if row is not None else SYSTEM


def _requester(deployment: Deployment, action: str) -> Actor:
    """The actor of the latest `action` request on the row (`_request_record`), else the row's."""
    for entry in reversed(deployment.requests):
        if entry.get("action") == action:
            return Actor.from_json(entry.get("actor"))
    return deployment.who


def components_refresh_start() -> None:
    _enqueue_on_commit(TASK_REFRESH)


def deployments_recover_start() -> None:
    """Sent when a worker starts: the recovery itself runs in a pool process, like any task."""
    _enqueue(TASK_RECOVER)


def _continuable(deployment_id: int) -> Deployment:
    deployment = selectors.deployment_in_progress()
    if deployment is None or deployment.pk != deployment_id:
        raise NothingInProgress(f"deployment {deployment_id} is not in progress")
    if not selectors.deployment_waits(deployment):
        raise BusyError(f"deployment {deployment_id} is {deployment.status}; a worker has it")
    return deployment


def deployment_fingerprint(deployment: Deployment) -> str:
    """Status + run position: a resume/rollback message acts only on the state its sender saw, so
    a duplicate delivered after the first one moved the deployment on finds a different print."""
    position = json.dumps(deployment.position, sort_keys=True)
    return hashlib.sha256(f"{deployment.status}\n{position}".encode()).hexdigest()[:16]


def webhook_fetch_start(*, event_pk: int) -> None:
    """Hand a deployment request's URL to a worker once its event row (the job) commits."""
    _enqueue_on_commit(TASK_FETCH, event_pk)


def _enqueue_on_commit(name: str, *args: object) -> None:
    # Outside a transaction on_commit runs at once; inside, the worker never sees an uncommitted row.
    transaction.on_commit(partial(_enqueue, name, *args))


def _enqueue(name: str, *args: object) -> None:
    queue_folders_create()
    # By name through the app orchestrator_site registered (`updates.celeryapp`): `updates` does
    # not import the worker package (docs/architecture.md: the worker depends on us, not back).
    celery_app().send_task(name, args=args)


def queue_folders_create() -> None:
    """The file-system transport neither creates its folders nor works without them."""
    options = celery_app().conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


# ----- task bodies (worker side): re-read, claim, run; a second delivery does nothing -----------


def deployment_run(*, deployment_id: int) -> str:
    """Run a queued deployment. A redelivery after the pool process running it died finds it
    running with a dead owner and continues it by the crash rules instead."""
    try:
        deployment = deployment_execute(deployment_id=deployment_id, actor=_asked_by(deployment_id))
    except (InputError, SelectionError) as exc:
        return f"deployment {deployment_id} rejected: {exc}"
    if deployment.status in Deployment.RUNNABLE and not owner_alive(deployment.owner):
        return _resume_crashed(deployment)
    return f"deployment {deployment_id}: {deployment.status}"


def deployment_continue(
    *, deployment_id: int, fingerprint: str, rollback: bool, stop_before: Sequence[str] = ()
) -> str:
    deployment = selectors.deployment_in_progress()
    if deployment is None or deployment.pk != deployment_id:
        return f"deployment {deployment_id} is no longer in progress: nothing to do"
    if deployment_fingerprint(deployment) != fingerprint:
        return f"deployment {deployment_id} moved on since the request: nothing to do"
    action = deployment_rollback if rollback else deployment_resume
    # The worker carries out the request as whoever made it (the row's latest request of that kind).
    actor = _requester(deployment, "rollback" if rollback else "resume")
    try:
        return f"deployment {deployment_id}: {action(stop_before=stop_before, actor=actor).status}"
    except (BusyError, NothingInProgress, CleanupStarted) as exc:
        return str(exc)


def deployments_recover(*, dead_owner: str = "") -> str:
    """After a worker start, and on a worker's takeover timer: run what a dead worker left
    queued, continue what a dead owner left running (`recovery.deployment_interrupted`).
    `dead_owner`: the token the sending worker found dead (it may run on the owner's host, where
    the process can be looked at; this worker may run on another)."""
    interrupted = recovery.deployment_interrupted(dead_owner=dead_owner)
    if interrupted.deployment is None:
        return "nothing to recover"
    if interrupted.action == "run":
        return deployment_run(deployment_id=interrupted.deployment.pk)
    if interrupted.action == "resume":
        return _resume_crashed(interrupted.deployment, dead_owner=dead_owner)
    deployment = interrupted.deployment
    return f"deployment {deployment.pk} ({deployment.status}) left alone"


def deployment_takeover_start() -> Deployment | None:
    """Called every few seconds by every worker (worker/takeover.py): when the deployment in
    progress was left running by a dead owner, send the recovery to a pool process. Returns that
    deployment, or None. Queued deployments are not taken: their message is on its way."""
    interrupted = recovery.deployment_interrupted()
    if interrupted.action != "resume":
        return None
    log.warning("%s: sending the recovery", interrupted.why)
    # With the token: a worker of another host that takes the message could not check it.
    _enqueue(TASK_RECOVER, interrupted.deployment.owner if interrupted.deployment else "")
    return interrupted.deployment


def _resume_crashed(deployment: Deployment, *, dead_owner: str = "") -> str:
    # The run's own options still hold: a crash must not skip a stop the operator asked for.
    log.warning(
        "deployment %s was left running by a dead process: resuming it",
        deployment.pk,
        extra={"deployment_id": deployment.pk},
    )
    try:
        # Continuing a run is done for whoever asked for it: the row's actor, not the appliance.
        resumed = deployment_resume(
            stop_before=deployment.stop_before,
            exit_on_reboot=deployment.exit_on_reboot,
            actor=deployment.who,
            dead_owner=dead_owner,
        )
    except (BusyError, NothingInProgress) as exc:
        return str(exc)
    return f"deployment {resumed.pk} resumed after a crash: {resumed.status}"


def components_refresh() -> str:
    """Ask every component for its Provides and Inventory and store the answers.

    Skipped while a deployment runs: its interfaces are busy, and it records Provides itself.
    """
    try:
        asked = system_refresh(actor=SYSTEM, inventory=True)
    except BusyError as exc:
        return f"refresh skipped: {exc}"
    return f"refreshed {asked} components"


def drift_watch_tick() -> None:
    """The worker's timer: send a refresh when the policy's `drift.interval` has passed."""
    if drift_refresh_due():
        _enqueue(TASK_REFRESH)

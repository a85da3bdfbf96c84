"""The policy's waits on the database (docs/policy.md): approval gates and the health window.

The engine's `Machine` asks its `Watch` at a gate; `DbWatch` persists the wait on the deployment
row (status `waiting_approval`, the gate and its expiry), then polls the row until a person's
decision (`deployment_gate_decide`, from the CLI, the API or a page) or the expiry. The decision
is journaled by whoever made it, in the transaction that records it on the row.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import journal_append
from updates import selectors
from updates.actors import SYSTEM, Actor
from updates.engine.errors import NotFound, NothingInProgress, NotWaiting
from updates.engine.health import health_window
from updates.engine.machine import Journal
from updates.engine.policy import Gate, Policy, format_duration, policy_file
from updates.models import Deployment
from updates.services.environment import Echo, Environment

GATE_COMPONENT = "system"
GATE_STATE = "ApprovalGate"
POLL_SECONDS = 0.5


def policy_snapshot(env: Environment) -> dict[str, Any] | None:
    """The policy a new deployment runs with, validated now (InputError: nothing recorded)."""
    policy = policy_file(env.topology_dir, data_dir=env.data_dir)
    return policy.to_json() if policy is not None else None


def deployment_policy(deployment: Deployment) -> Policy | None:
    return Policy.from_json(deployment.policy) if deployment.policy else None


class DbWatch:
    """The engine's `Watch` for one deployment: gates wait on its row, checks run as subprocesses."""

    def __init__(
        self, deployment: Deployment, policy: Policy, *, env: Environment, journal: Journal, echo: Echo
    ) -> None:
        self.deployment = deployment
        self.policy = policy
        self.env = env
        self.journal = journal
        self.echo = echo

    def health(self) -> str | None:
        assert self.policy.health is not None
        health = self.policy.health
        self.echo(
            f"health window: {len(health.checks)} check(s) every {format_duration(health.interval)} "
            f"for {format_duration(health.window)} before the first ArtifactCommit"
        )
        return health_window(
            health, journal=self.journal, data_dir=self.env.data_dir, cwd=Path(self.deployment.work_dir)
        )

    def gate(self, before: str) -> str | None:
        gate = self.policy.gate(before)
        assert gate is not None
        expires = _gate_open(self.deployment, gate)
        pk = self.deployment.pk
        step = self.journal.call_started(
            component=GATE_COMPONENT,
            state=GATE_STATE,
            argv=[f"before={before}", f"expires={expires.isoformat()}"],
        )
        self.echo(
            f"waiting for approval before {before} until {timezone.localtime(expires):%Y-%m-%d %H:%M:%S} "
            f"(then {gate.on_timeout}): run `mender-orchestrator approve {pk}` or "
            f"`mender-orchestrator reject {pk} --reason TEXT`, or use the deployment's page"
        )
        decision, actor, reason = _wait_for_decision(pk, expires)
        error = _gate_close(self.deployment, gate, decision=decision, actor=actor, reason=reason)
        if error:
            self.journal.call_finished(step, result=None, error=error)
        else:
            self.journal.call_finished(step, result=None, answer=_passed_text(decision, actor, reason)[:200])
        return error


def _gate_open(deployment: Deployment, gate: Gate) -> datetime:
    """Mark the row as waiting at `gate`; a wait already persisted for it keeps its expiry."""
    with transaction.atomic():
        row = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if row.gate == gate.before and row.gate_expires_at is not None:
            expires = row.gate_expires_at
        else:
            expires = timezone.now() + timedelta(seconds=gate.timeout)
        entry = journal_append(
            kind="deployment.waiting",
            actor=deployment.who,
            subject=f"deployment:{deployment.pk}",
            data={
                "status": Deployment.Status.WAITING_APPROVAL,
                "gate": gate.before,
                "expires_at": expires.isoformat(),
                "on_timeout": gate.on_timeout,
            },
        )
        Deployment.objects.filter(pk=deployment.pk).update(
            status=Deployment.Status.WAITING_APPROVAL,
            gate=gate.before,
            gate_expires_at=expires,
            seal=entry.hash,
        )
    return expires


def _wait_for_decision(pk: int, expires: datetime) -> tuple[str, Actor, str]:
    """Poll the row until a person decided or the wait expired: (decision, who, why)."""
    while True:
        row = Deployment.objects.filter(pk=pk).values("gate_decision", "gate_decided_by", "gate_reason").get()
        if row["gate_decision"]:
            return row["gate_decision"], Actor.from_json(row["gate_decided_by"]), row["gate_reason"]
        if timezone.now() >= expires:
            return "expired", SYSTEM, ""
        time.sleep(POLL_SECONDS)


def _gate_close(
    deployment: Deployment, gate: Gate, *, decision: str, actor: Actor, reason: str
) -> str | None:
    """The run goes on (running again, the gate cleared); the reason to roll back, if any."""
    if decision == "approved" or (decision == "expired" and gate.on_timeout == "proceed"):
        error = None
    elif decision == "expired":
        error = f"the approval gate before {gate.before} expired after {format_duration(gate.timeout)} (on_timeout: rollback)"
    else:
        error = f"rejected at the gate before {gate.before} by {actor.label}" + (
            f": {reason}" if reason else ""
        )
    with transaction.atomic():
        entry = journal_append(
            kind="deployment.continued",
            actor=actor if decision != "expired" else SYSTEM,
            subject=f"deployment:{deployment.pk}",
            data={
                "status": Deployment.Status.RUNNING,
                "gate": gate.before,
                "decision": decision,
                "on_timeout": gate.on_timeout if decision == "expired" else None,
                "reason": reason,
                "rolls_back": error is not None,
            },
        )
        Deployment.objects.filter(pk=deployment.pk).update(
            status=Deployment.Status.RUNNING,
            gate="",
            gate_expires_at=None,
            gate_decision="",
            gate_decided_by=None,
            gate_reason="",
            seal=entry.hash,
        )
    return error


def _passed_text(decision: str, actor: Actor, reason: str) -> str:
    if decision == "expired":
        return "expired: proceeding (on_timeout: proceed)"
    return f"approved by {actor.label}" + (f": {reason}" if reason else "")


# ----- the decision: approve or reject ----------------------------------------------------------


def deployment_gate_decide(
    *, deployment_id: int | None, approve: bool, actor: Actor, reason: str = ""
) -> Deployment:
    """Record a person's decision at the gate the deployment waits at (None: the one in
    progress), journaled with `actor` in the same transaction. The waiting run acts on it;
    if its process is gone, the next `resume` does. Raises NotFound, NothingInProgress, NotWaiting."""
    decision = "approved" if approve else "rejected"
    with transaction.atomic():
        deployment = _waiting(deployment_id)
        updated = Deployment.objects.filter(
            pk=deployment.pk, status=Deployment.Status.WAITING_APPROVAL, gate_decision=""
        ).update(gate_decision=decision, gate_decided_by=actor.as_json(), gate_reason=reason)
        if updated != 1:
            raise NotWaiting(f"deployment {deployment.pk} was just decided by someone else")
        journal_append(
            kind=f"gate.{decision}",
            actor=actor,
            subject=f"deployment:{deployment.pk}",
            data={"gate": deployment.gate, "reason": reason},
        )
    deployment.refresh_from_db()
    return deployment


def _waiting(deployment_id: int | None) -> Deployment:
    if deployment_id is None:
        deployment = selectors.deployment_in_progress()
        if deployment is None:
            raise NothingInProgress("no deployment in progress: nothing to approve or reject")
    else:
        found = selectors.deployment_get(deployment_id).first()
        if found is None:
            raise NotFound(f"deployment {deployment_id} does not exist")
        deployment = found
    if deployment.status != Deployment.Status.WAITING_APPROVAL:
        raise NotWaiting(
            f"deployment {deployment.pk} is not waiting for approval (it is {deployment.status})"
        )
    if deployment.gate_decision:
        who = Actor.from_json(deployment.gate_decided_by).label if deployment.gate_decided_by else "someone"
        raise NotWaiting(f"deployment {deployment.pk} was already {deployment.gate_decision} by {who}")
    return deployment

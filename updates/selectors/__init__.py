"""Reads: status and history, straight from the database rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db.models import Count, Prefetch, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from devices.models import System
from devices.selectors import component_list
from updates.actors import Actor
from updates.engine.artifact import ArtifactError, key_fingerprint, load_public_key
from updates.engine.constraints import Constraints, constraints_file, constraints_from_manifest
from updates.engine.interface import QUERY_STATES
from updates.engine.manifest import InputError
from updates.engine.planner import TargetJson, target_versions
from updates.liveness import WorkerBeat as WorkerBeat
from updates.liveness import live_workers as live_workers  # re-exported: workers that answer
from updates.liveness import owner_alive
from updates.models import (
    ActiveManifests,
    Bundle,
    BundleArtifact,
    Deployment,
    Manifest,
    Step,
    StepEvent,
    WebhookEvent,
)
from updates.services.environment import environment_load


def deployment_in_progress() -> Deployment | None:
    # The slot is 1 exactly while in progress (a check constraint holds it): a unique-index lookup,
    # where filtering on the status scans every finished deployment first.
    return Deployment.objects.select_related("manifest").filter(slot=1).first()


def deployment_list(*, limit: int = 50) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").order_by("-id")[:limit]


def deployment_steps(deployment: Deployment) -> QuerySet[Step]:
    return deployment.steps.order_by("id")


def active_manifests() -> ActiveManifests | None:
    return ActiveManifests.objects.select_related("active", "previous").filter(pk=1).first()


@dataclass(frozen=True)
class SystemVersion:
    """Which declared working system the components' last known versions form (issue 13).

    `state`: "working" (an end state matches: `system_version` names it), "outside" (none
    matches), "undeclared" (no constraints document), "invalid" (the document has errors) or
    "unknown" (no component versions recorded yet). `message` is the line `status` prints.
    """

    state: Literal["working", "outside", "undeclared", "invalid", "unknown"]
    message: str
    system_version: str | None = None
    row: str | None = None
    line: int | None = None
    constraints_file: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


def system_version() -> SystemVersion:
    """The system version shown by `status`, the API's `/system` and the UI's System page."""
    components = list(component_list())
    versions = {c.key: c.version for c in components}
    try:
        constraints = _active_constraints()
    except InputError as exc:
        return SystemVersion("invalid", f"the constraints document has errors:\n{exc}", versions=versions)
    if constraints is None:
        return SystemVersion("undeclared", "no constraints declared (constraints.yaml)", versions=versions)
    if not versions:
        return SystemVersion("unknown", "no component versions known yet", constraints_file=constraints.file)
    row = constraints.end_state([(c.component_type, c.version) for c in components])
    if row is None:
        message = "outside every declared working state (no end_states row matches)"
        return SystemVersion("outside", message, constraints_file=constraints.file, versions=versions)
    return SystemVersion(
        "working",
        f"system {row.system_version}",
        system_version=row.system_version,
        row=row.where,
        line=row.line,
        constraints_file=constraints.file,
        versions=versions,
    )


def _active_constraints() -> Constraints | None:
    """As for a deployment: the active manifest's section wins over constraints.yaml."""
    pointers = active_manifests()
    active = pointers.active if pointers else None
    if active is not None:
        section = constraints_from_manifest(active.raw.encode(), path=Path(active.source_path))
        if section is not None:
            return section
    return constraints_file(Path(settings.TOPOLOGY_DIR))


def status_report() -> dict[str, Any]:
    """What runs now, what is in flight, and how the last deployment ended."""
    pointers = active_manifests()
    running = deployment_in_progress()
    last = Deployment.objects.select_related("manifest").filter(status__in=Deployment.TERMINAL).first()
    flight = {o["key"]: o for o in deployment_components(running)} if running else {}
    return {
        "system": system_version().as_json(),
        "manifests": {
            "active": pointers.active.name if pointers and pointers.active else None,
            "previous": pointers.previous.name if pointers and pointers.previous else None,
        },
        "components": [
            {
                "key": c.key,
                "version": c.version,
                "provides": c.provides,
                "refreshed_at": c.refreshed_at,
                # What it runs as far as we know: during a paused deployment the new, uncommitted one.
                "running": flight[c.key]["version"] if c.key in flight else c.version,
                "uncommitted": bool(flight.get(c.key, {}).get("uncommitted")),
                "drifted": c.drifted,
            }
            for c in component_list()
        ],
        "in_progress": (
            {
                "id": running.pk,
                "status": running.status,
                "reason": running.reason,
                "position": running.position,
                "manifest": running.manifest.name,
                "owner_alive": owner_alive(running.owner),
                "started_at": running.started_at,
            }
            if running
            else None
        ),
        "last": _summary(last) if last else None,
    }


def history_report(*, limit: int = 50, deployment_id: int | None = None) -> list[dict[str, Any]]:
    """Past deployments, newest first, each with every interface call (`history --json`)."""
    deployments = deployment_list(limit=limit) if deployment_id is None else deployment_get(deployment_id)
    return [{**_summary(d), "steps": [_step(s) for s in deployment_steps(d)]} for d in deployments]


def deployment_get(deployment_id: int) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").filter(pk=deployment_id)


def _summary(d: Deployment) -> dict[str, Any]:
    """One deployment in a line's worth of fields: who, what, from -> to, how it ended."""
    return {
        "id": d.pk,
        "manifest": d.manifest.name,
        "kind": d.kind,
        "status": d.status,
        "reason": d.reason,
        "components": d.components,
        "actor": d.who.as_json(),
        "actor_label": d.who.label,
        "forced_reason": d.forced_reason,
        "created_at": d.created_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "outcomes": deployment_components(d),
    }


def _step(s: Step) -> dict[str, Any]:
    return {
        "component": s.component,
        "state": s.state,
        "argv": s.argv,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "exit_code": s.exit_code,
        "answer": s.answer,
        "error": s.error,
        "ok": s.ok,
        "stderr": s.stderr,
    }


# ----- what happened to each component -----------------------------------------------------------


def deployment_components(deployment: Deployment) -> list[dict[str, Any]]:
    """Per planned component: what happened (installed, rolled back, failed in STATE, skipped, …)
    and the version it runs now as far as the records tell."""
    plan = deployment.planned()
    if plan is None:
        return []
    progress: dict[str, dict[str, Any]] = deployment.position.get("progress", {})
    failed = _failed_states(deployment)
    answers = {c.key: c for c in component_list()} if _is_latest_finished(deployment) else {}
    outcomes = []
    for target in plan["components"]:
        key = target["key"]
        what, version, uncommitted = _outcome(target, progress.get(key), deployment.status, failed.get(key))
        refreshed = answers[key].refreshed_at if key in answers else None
        if refreshed and deployment.finished_at and refreshed >= deployment.finished_at:
            version = answers[key].version  # its own answer after the end beats our deduction
        outcomes.append(
            {
                "key": key,
                "outcome": what,
                "from": target["current"],
                "to": target["target"],
                "version": version,
                "uncommitted": uncommitted,
                "failed_in": failed.get(key),
            }
        )
    return outcomes


def _is_latest_finished(deployment: Deployment) -> bool:
    """Only the last deployment's components still run what it left (later ones changed them)."""
    if deployment.status not in Deployment.TERMINAL:
        return False
    return Deployment.objects.order_by("-id").values_list("pk", flat=True).first() == deployment.pk


def _failed_states(deployment: Deployment) -> dict[str, str]:
    """The first update state (not a query) that failed, per component."""
    failed: dict[str, str] = {}
    for step in deployment_steps(deployment).exclude(state__in=QUERY_STATES):
        if not step.ok and step.ended_at is not None:
            failed.setdefault(step.component, step.state)
    return failed


def _outcome(
    target: TargetJson, progress: dict[str, Any] | None, status: str, failed_in: str | None
) -> tuple[str, str, bool]:
    """(what happened, the version it runs, whether that version is uncommitted)."""
    old, new = target["current"], target["target"]
    if target["action"] == "skip":
        return f"skipped (already {old})", old, False
    p = progress or {}
    failure = f"failed in {failed_in}, " if failed_in else ""
    if not p.get("install_started"):
        if status in Deployment.IN_PROGRESS:
            return ("downloaded, not installed yet" if p.get("downloaded") else "not started yet"), old, False
        return (f"failed in {failed_in}, not installed" if failed_in else "not installed"), old, False
    if p.get("rollback_ran") or p.get("rollback_ok"):
        if p.get("rollback_ok"):
            return f"{failure}rolled back", old, False
        return f"{failure}rollback FAILED", "unknown", False
    if status == Deployment.Status.SUCCEEDED or (p.get("committed") and status not in Deployment.IN_PROGRESS):
        return "installed", new, False
    if status in Deployment.IN_PROGRESS:
        if p.get("committed"):
            return "committed", new, False
        return f"{failure}installed, not committed", new, True
    return f"{failure}NOT rolled back", "unknown", False


# ----- bundles and the artifact store (issue #5) ---------------------------------------------------


def bundle_list(*, limit: int = 50) -> QuerySet[Bundle]:
    return Bundle.objects.order_by("-id")[:limit]


def bundle_get(*, bundle_id: int) -> Bundle | None:
    return Bundle.objects.filter(pk=bundle_id).first()


def bundle_artifacts(bundle: Bundle) -> QuerySet[BundleArtifact]:
    # `.all()` uses what a list prefetched (bundle_page); ordered and joined either way.
    if "artifacts" in getattr(bundle, "_prefetched_objects_cache", {}):
        return bundle.artifacts.all()
    return bundle.artifacts.select_related("artifact").order_by("id")


def bundle_report(bundle: Bundle) -> dict[str, Any]:
    return {
        "id": bundle.pk,
        "status": bundle.status,
        "form": bundle.form,
        "filename": bundle.filename,
        "sha256": bundle.sha256,
        "size": bundle.size,
        "manifest": bundle.manifest_name,
        "manifest_member": bundle.manifest_member,
        "directory": bundle.directory,
        "actor": bundle.who.as_json(),
        "actor_label": bundle.who.label,
        "created_at": bundle.created_at,
        "checks": bundle.checks,
        "problems": bundle.problems,
        "artifacts": [
            {
                "member": ba.member,
                "name": ba.artifact.name,
                "sha256": ba.artifact.sha256,
                "size": ba.artifact.size,
                "device_types": ba.artifact.device_types,
                "signed": ba.artifact.signed,
                "signer_fingerprint": ba.artifact.signer_fingerprint,
                "component_types": ba.component_types,
            }
            for ba in bundle_artifacts(bundle)
        ],
    }


# ----- the REST API and the web UI (issue #9) -------------------------------------------------------


def _manifest_ref(manifest: Manifest | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {
        "id": manifest.pk,
        "name": manifest.name,
        "sha256": manifest.sha256,
        "created_at": manifest.created_at,
    }


def _actor(row: Deployment | Bundle) -> dict[str, str]:
    """The API's actor shape: {"kind", "name"} and how pages name it (`Actor.label`)."""
    who = row.who
    return {"kind": who.kind, "name": who.name, "label": who.label}


def system_report() -> dict[str, Any]:
    """The system as the database knows it: components with their last answers, the active and
    previous manifests (with the topology the active one was applied with), the run in progress."""
    pointers = active_manifests()
    active = pointers.active if pointers else None
    running = deployment_in_progress()
    system = System.objects.filter(pk=1).first()
    return {
        "system_type": (system.system_type if system else "")
        or (active.topology.get("system_type") if active else "")
        or "",
        "topology": active.topology if active else None,
        "components": [
            {
                "key": c.key,
                "component_type": c.component_type,
                "component_id": c.component_id,
                "interface": c.interface,
                "interface_args": c.interface_args,
                "provides": c.provides,
                "version": c.version,
                "last_seen": c.refreshed_at,
            }
            for c in component_list()
        ],
        "active_manifest": _manifest_ref(active),
        "previous_manifest": _manifest_ref(pointers.previous if pointers else None),
        "in_progress": deployment_summary(running) if running else None,
        "system_version": system_version().as_json(),
    }


def deployment_summary(d: Deployment) -> dict[str, Any]:
    """One list row (needs `manifest` joined)."""
    return {
        "id": d.pk,
        "kind": d.kind,
        "status": d.status,
        "reason": d.reason,
        "manifest": d.manifest.name,
        "actor": _actor(d),
        "created_at": d.created_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
    }


@dataclass(frozen=True)
class DeploymentFilter:
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    manifest: str | None = None


def deployment_page(*, filters: DeploymentFilter, page: int, page_size: int) -> tuple[list[Deployment], int]:
    """One page of deployments, newest first, and how many match (two queries whatever the size)."""
    rows = Deployment.objects.select_related("manifest").order_by("-id")
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.since:
        rows = rows.filter(created_at__gte=filters.since)
    if filters.until:
        rows = rows.filter(created_at__lt=filters.until)
    if filters.manifest:
        rows = rows.filter(manifest__name=filters.manifest)
    start = (page - 1) * page_size
    # The heavy JSON columns (plan, position) stay in the database: a list shows none of them.
    page_rows = list(
        rows.defer("plan", "position", "manifest__raw", "manifest__topology")[start : start + page_size]
    )
    return page_rows, rows.count()


def deployment_find(*, deployment_id: int) -> Deployment | None:
    return Deployment.objects.select_related("manifest").filter(pk=deployment_id).first()


TAIL = 2000


def step_report(s: Step) -> dict[str, Any]:
    duration = (s.ended_at - s.started_at).total_seconds() if s.ended_at else None
    return {
        "id": s.pk,
        "component": s.component,
        "state": s.state,
        "argv": s.argv,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "duration_seconds": duration,
        "exit_code": s.exit_code,
        "timed_out": s.timed_out,
        "answer": s.answer,
        "error": s.error,
        "ok": s.ok,
        "output_tail": (s.stdout + s.stderr)[-TAIL:],
    }


def deployment_detail(d: Deployment) -> dict[str, Any]:
    """Order groups -> components (from the plan) -> their steps. Steps under names the plan does
    not know (Identity queries, before a component's ID is known; a run refused while inspecting)
    come first, in a group of their own (order None)."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for s in deployment_steps(d):
        steps.setdefault(s.component, []).append(step_report(s))
    plan = d.planned()
    planned = {c["key"]: c for c in plan["components"]} if plan else {}
    groups: list[dict[str, Any]] = [
        {"order": order, "components": [_planned(planned[k], steps.pop(k, [])) for k in keys if k in planned]}
        for order, keys in (plan["groups"] if plan else [])
    ]
    if steps:  # Identity queries come first, naming a component by its interface args
        groups.insert(0, {"order": None, "components": [_unplanned(k, v) for k, v in steps.items()]})
    return deployment_summary(d) | {
        "components_concerned": d.components,
        "position": d.position,
        "options": {"stop_before": d.stop_before, "exit_on_reboot": d.exit_on_reboot},
        "requests": d.requests,
        "groups": groups,
    }


def _planned(c: TargetJson, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {**target_versions(c), "steps": steps}


def _unplanned(key: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    ctype, _, cid = key.partition(".")
    return {
        "key": key,
        "component_type": ctype,
        "component_id": cid,
        "action": "",
        "current": "",
        "target": "",
        "steps": steps,
    }


def step_get(*, deployment_id: int, step_id: int) -> Step | None:
    return Step.objects.filter(deployment_id=deployment_id, pk=step_id).first()


def step_events_after(*, deployment_id: int, after: int) -> list[StepEvent]:
    """The step changes of a deployment committed after event `after`, oldest first."""
    return list(
        StepEvent.objects.select_related("step")
        .filter(deployment_id=deployment_id, pk__gt=after)
        .order_by("id")
    )


def deployment_status(*, deployment_id: int) -> str | None:
    return Deployment.objects.filter(pk=deployment_id).values_list("status", flat=True).first()


def bundle_page(*, page: int, page_size: int) -> tuple[list[Bundle], int]:
    rows = Bundle.objects.order_by("-id").prefetch_related(
        Prefetch("artifacts", queryset=BundleArtifact.objects.select_related("artifact").order_by("id"))
    )
    start = (page - 1) * page_size
    return list(rows[start : start + page_size]), Bundle.objects.count()


def bundle_summary(bundle: Bundle) -> dict[str, Any]:
    """`bundle_report` plus who added or deleted it; uses prefetched artifacts when present."""
    return bundle_report(bundle) | {
        "actor": _actor(bundle),
        "deleted_at": bundle.deleted_at,
        "deleted_by": bundle.deleted_by_actor.label if bundle.deleted_by_actor else "",
    }


# ----- audit: one row per deployment (REST `GET /audit`, the UI, `audit report`) --------------------


def audit_rows(*, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Who or what started each deployment, manifest from -> to, outcome, start, duration, every
    component's version before and after, and the bundle it came from (sha256, signers).

    "From" is the manifest active when the deployment was created: the last one that succeeded
    before it. "After" is what each component runs by the run's records (the target once
    committed, the version before after a rollback or a refusal, "unknown" when a rollback
    failed). Four queries, whatever the number of rows.
    """
    rows = (
        Deployment.objects.select_related("manifest")
        .defer("manifest__raw", "manifest__topology")
        .order_by("id")
    )
    if since:
        rows = rows.filter(created_at__gte=since)
    if until:
        rows = rows.filter(created_at__lt=until)
    deployments = list(rows)
    active = _active_before(deployments[0].pk) if deployments else None
    bundles = _bundles_by_directory()
    result = []
    for d in deployments:
        result.append(_audit_row(d, active, bundles))
        if d.status == Deployment.Status.SUCCEEDED:
            active = d.manifest.name
    return result


def _active_before(deployment_id: int) -> str | None:
    return (
        Deployment.objects.filter(pk__lt=deployment_id, status=Deployment.Status.SUCCEEDED)
        .order_by("-id")
        .values_list("manifest__name", flat=True)
        .first()
    )


def _bundles_by_directory() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    bundles = Bundle.objects.exclude(directory="").prefetch_related(
        Prefetch("artifacts", queryset=BundleArtifact.objects.select_related("artifact"))
    )
    for b in bundles:
        signers = sorted(
            {a.artifact.signer_fingerprint for a in b.artifacts.all() if a.artifact.signer_fingerprint}
        )
        found[b.directory] = {"id": b.pk, "sha256": b.sha256, "signers": signers}
    return found


def _audit_row(d: Deployment, active: str | None, bundles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    start = d.started_at or d.created_at
    plan = d.planned()
    targets = plan["components"] if plan else []
    progress: dict[str, dict[str, Any]] = d.position.get("progress", {})
    return {
        "deployment": d.pk,
        "actor_kind": d.who.kind,
        "actor": d.who.name,
        "actor_label": d.who.label,
        "requests": d.requests,
        "manifest_from": active,
        "manifest_to": d.manifest.name,
        "outcome": d.status,
        "reason": d.reason,
        "started_at": start,
        "duration_seconds": (d.finished_at - start).total_seconds() if d.finished_at else None,
        "versions_before": {t["key"]: t["current"] for t in targets},
        # From the run position alone (no step query per row), by the rules `deployment_components` uses.
        "versions_after": {t["key"]: _outcome(t, progress.get(t["key"]), d.status, None)[1] for t in targets},
        "bundle": _bundle_of(d.manifest.source_path, bundles),
    }


def _bundle_of(source_path: str, bundles: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    for directory, bundle in bundles.items():
        if source_path.startswith(directory.rstrip("/") + "/"):
            return bundle
    return None


AUDIT_CSV_COLUMNS = (
    "deployment",
    "actor_kind",
    "actor",
    "manifest_from",
    "manifest_to",
    "outcome",
    "reason",
    "started_at",
    "duration_seconds",
    "versions_before",
    "versions_after",
    "bundle_id",
    "bundle_sha256",
    "bundle_signers",
)


def audit_csv_record(row: dict[str, Any]) -> list[str]:
    """A row as CSV cells: versions as `key=version` joined by spaces, missing values empty."""
    bundle = row["bundle"] or {}
    cells: dict[str, object] = row | {
        "versions_before": " ".join(f"{k}={v}" for k, v in row["versions_before"].items()),
        "versions_after": " ".join(f"{k}={v}" for k, v in row["versions_after"].items()),
        "started_at": row["started_at"].isoformat() if row["started_at"] else "",
        "bundle_id": bundle.get("id", ""),
        "bundle_sha256": bundle.get("sha256", ""),
        "bundle_signers": " ".join(bundle.get("signers", [])),
    }
    return ["" if cells[c] is None else str(cells[c]) for c in AUDIT_CSV_COLUMNS]


# ----- webhooks (issue #9): events as actors, for the audit ---------------------------------------------


def webhook_events(*, since: datetime | None = None, until: datetime | None = None) -> QuerySet[WebhookEvent]:
    """Signed events received, newest first (unsigned calls are never recorded)."""
    rows = WebhookEvent.objects.order_by("-received_at", "-id")
    if since is not None:
        rows = rows.filter(received_at__gte=since)
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    return rows


def webhook_event_for_actor(actor: Actor) -> WebhookEvent | None:
    """The event behind a webhook actor (what it started names it), else None."""
    if actor.kind != "webhook":
        return None
    event: WebhookEvent | None = WebhookEvent.objects.filter(event_id=actor.name).first()
    return event


def webhook_event_report(event: WebhookEvent) -> dict[str, Any]:
    """One audit row: who (actor kind "webhook" and the event id), what, when, and the outcome."""
    return {
        "actor": {"kind": "webhook", "id": event.event_id, "remote_addr": event.remote_addr},
        "type": event.type,
        "device_id": event.device_id,
        "own_device": event.own_device,
        "event_time": event.event_time,
        "received_at": event.received_at,
        "action": event.action,
        "status": event.answer_status,
        "answer": json.loads(event.answer_body) if event.answer_body else None,
        "bundle_id": event.bundle_id,
        "deployment_id": event.deployment_id,
        "replays": event.replays,
    }


# ----- the web UI's pages (issue #10), on top of the API's reads above ----------------------------

# Mender states of the rollback path: drawn amber on the timeline, whatever their exit code.
ROLLBACK_STATES = frozenset(
    {"ArtifactRollback", "ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot", "ArtifactFailure"}
)
# What a deployment's run position records per installing component, in the order it happens.
MILESTONES = ("entered", "downloaded", "install_started", "committed", "cleaned")
CHART_OUTCOMES = ("succeeded", "rolled_back", "inconsistent", "rejected", "other")


def system_overview() -> dict[str, Any]:
    """`system_report` with its components grouped by the update order of the active manifest
    (components it does not name come last, under None) and the run's progress."""
    report = system_report()
    orders = _component_orders(report["active_manifest"])
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for component in report["components"]:
        groups.setdefault(orders.get(component["key"]), []).append(component)
    running = deployment_in_progress()
    return report | {
        "groups": sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0)),
        "progress": deployment_progress(running) if running else 0,
    }


def _component_orders(manifest: dict[str, Any] | None) -> dict[str, int]:
    """`update_strategy.order` per component key, from the plan the active manifest ran with."""
    if manifest is None:
        return {}
    last = Deployment.objects.filter(manifest_id=manifest["id"]).exclude(plan={}).order_by("-id").first()
    components = last.plan.get("components", []) if last else []
    return {c["key"]: int(c["order"]) for c in components}


def deployment_waits(deployment: Deployment) -> bool:
    """In progress with nobody running it: stopped, waiting for a reboot, or left running by a
    dead runner. Only then can it be resumed or rolled back (a queued one waits for its worker)."""
    if deployment.status not in Deployment.IN_PROGRESS or deployment.status == Deployment.Status.QUEUED:
        return False
    return deployment.status != Deployment.Status.RUNNING or not owner_alive(deployment.owner)


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
    if status == Deployment.Status.RUNNING and (dead or not owner_alive(deployment.owner)):
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


def deployment_progress(deployment: Deployment) -> int:
    """Percent of the installing components' milestones reached (100 once the run has ended)."""
    if deployment.status not in Deployment.IN_PROGRESS:
        return 100
    installing = [c["key"] for c in deployment.plan.get("components", []) if c.get("action") == "install"]
    if not installing:
        return 0
    progress = (deployment.position or {}).get("progress", {})
    reached = sum(bool(progress.get(key, {}).get(m)) for key in installing for m in MILESTONES)
    return round(100 * reached / (len(installing) * len(MILESTONES)))


def step_status(step: dict[str, Any]) -> str:
    """One word per timeline block (a `step_report`): running, rollback, failed, query or done."""
    if step["ended_at"] is None:
        return "running"
    if step["state"] in ROLLBACK_STATES:
        return "rollback"
    if not step["ok"]:
        return "failed"
    return "query" if step["state"] in QUERY_STATES else "done"


def deployment_timeline(deployment: Deployment) -> dict[str, Any]:
    """`deployment_detail` (order groups -> components -> steps) with a status per step, and
    whether a step still runs (the queries that refresh the components after a run are journaled
    under it after its status is final)."""
    detail = deployment_detail(deployment)
    running = False
    for group in detail["groups"]:
        for component in group["components"]:
            for step in component["steps"]:
                step["status"] = step_status(step)
                running = running or step["status"] == "running"
    return detail | {"running": running}


def deployment_rows(deployments: Sequence[Deployment]) -> list[dict[str, Any]]:
    """History rows (`deployment_summary` + the manifest it started from + duration) for one page
    of deployments: "from" is the last success before each, found with two queries per page."""
    if not deployments:
        return []
    succeeded = Deployment.objects.filter(status=Deployment.Status.SUCCEEDED).order_by("-id")
    floor = succeeded.filter(pk__lt=min(d.pk for d in deployments)).values_list("pk", flat=True).first()
    successes = list(
        succeeded.filter(pk__gte=floor or 0, pk__lt=max(d.pk for d in deployments)).values_list(
            "pk", "manifest__name"
        )
    )
    rows = []
    for d in deployments:
        start = d.started_at or d.created_at
        rows.append(
            deployment_summary(d)
            | {
                "manifest_from": next((name for pk, name in successes if pk < d.pk), None),
                "duration_seconds": (d.finished_at - start).total_seconds() if d.finished_at else None,
            }
        )
    return rows


def deployments_per_week(*, weeks: int = 12, today: date | None = None) -> list[dict[str, Any]]:
    """Counts per week (Monday first) and outcome, oldest week first, empty weeks included."""
    today = today or timezone.now().date()
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    counts = (
        Deployment.objects.filter(created_at__date__gte=first)
        .annotate(week=TruncWeek("created_at"))
        .values("week", "status")
        .annotate(n=Count("id"))
    )
    table = {first + timedelta(weeks=i): dict.fromkeys(CHART_OUTCOMES, 0) for i in range(weeks)}
    for row in counts:
        outcome = row["status"] if row["status"] in CHART_OUTCOMES else "other"
        table[row["week"].date()][outcome] += row["n"]
    return [{"week": week, "counts": c, "total": sum(c.values())} for week, c in table.items()]


def audit_report(*, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """`audit_rows` with every step of each deployment (`step_report`s) and the versions as one
    list of before/after pairs, for the printable page."""
    rows = audit_rows(since=since, until=until)
    steps: dict[int, list[dict[str, Any]]] = {}
    for step in Step.objects.filter(deployment_id__in=[r["deployment"] for r in rows]).order_by("id"):
        report = step_report(step)
        steps.setdefault(step.deployment_id, []).append(report | {"status": step_status(report)})
    for row in rows:
        row["steps"] = steps.get(row["deployment"], [])
        after = row["versions_after"]
        row["versions"] = [
            {"key": k, "before": v, "after": after.get(k, "")} for k, v in row["versions_before"].items()
        ]
    return rows


def plan_overview(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan (`plan --json` shape, with the dry run's answers) for the bundle page: its order
    groups of components, and which components change, reboot and cannot roll back."""
    components = {c["key"]: c for c in plan.get("components", [])}
    installing = [c for c in components.values() if c["action"] == "install"]
    return {
        "groups": [
            {"order": o, "components": [components[k] for k in keys]} for o, keys in plan.get("groups", [])
        ],
        "changes": [c["key"] for c in installing],
        "reboots": [c["key"] for c in installing if c.get("reboot", "No") != "No"],
        "no_rollback": [c["key"] for c in installing if c.get("rollback") != "Yes"],
    }


def trusted_keys() -> list[dict[str, str]]:
    """The configured `ArtifactVerifyKey(s)`: path and sha256 fingerprint (or why it is unreadable)."""
    # Imported here: updates.services imports this module (a cycle at import time).
    rows = []
    for path in environment_load().config.verify_keys:
        try:
            rows.append(
                {"path": str(path), "fingerprint": key_fingerprint(load_public_key(path)), "error": ""}
            )
        except (OSError, ValueError, ArtifactError) as exc:
            rows.append({"path": str(path), "fingerprint": "", "error": str(exc)})
    return rows

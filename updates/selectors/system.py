"""Reads of the system: its components, the active manifests, the declared system version, the
run in progress (`status`, the API's `/system`, the System page) and the trusted keys."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from django.conf import settings

from devices.models import System
from devices.selectors import component_list
from updates.engine.artifact import ArtifactError, key_fingerprint, load_public_key
from updates.engine.constraints import Constraints, constraints_file, constraints_from_manifest
from updates.engine.manifest import InputError
from updates.liveness import live_workers, owner_alive
from updates.models import ActiveManifests, Deployment, Manifest
from updates.selectors.deployments import (
    DeploymentRecord,
    DeploymentSummary,
    GateWait,
    deployment_components,
    deployment_in_progress,
    deployment_last_finished,
    deployment_progress,
    deployment_record,
    deployment_summary,
    deployment_waits,
    gate_wait,
)
from updates.services.environment import environment_load

VersionState = Literal["working", "outside", "undeclared", "invalid", "unknown"]


class SystemVersionJson(TypedDict):
    """`SystemVersion` as JSON (the API's `SystemVersionOut`, `status --json`'s `system`)."""

    state: VersionState
    message: str
    system_version: str | None
    row: str | None
    line: int | None
    constraints_file: str | None
    versions: dict[str, str]


@dataclass(frozen=True)
class SystemVersion:
    """Which declared working system the components' last known versions form (issue 13).

    `state`: "working" (an end state matches: `system_version` names it), "outside" (none
    matches), "undeclared" (no constraints document), "invalid" (the document has errors) or
    "unknown" (no component versions recorded yet). `message` is the line `status` prints.
    """

    state: VersionState
    message: str
    system_version: str | None = None
    row: str | None = None
    line: int | None = None
    constraints_file: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> SystemVersionJson:
        return {
            "state": self.state,
            "message": self.message,
            "system_version": self.system_version,
            "row": self.row,
            "line": self.line,
            "constraints_file": self.constraints_file,
            "versions": dict(self.versions),
        }


class StatusComponent(TypedDict):
    key: str
    version: str
    provides: dict[str, str]
    refreshed_at: datetime | None
    running: str  # what it runs as far as we know: during a paused deployment the new one
    uncommitted: bool
    drifted: bool


class StatusInProgress(TypedDict):
    id: int
    status: str
    reason: str
    position: dict[str, Any]
    manifest: str
    owner_alive: bool
    started_at: datetime | None
    gate: GateWait | None


class ManifestNames(TypedDict):
    active: str | None
    previous: str | None


class Drift(TypedDict):
    """A drifted component (docs/policy.md): what the last deployment left, what it runs, since when."""

    component: str
    expected: str
    actual: str
    since: datetime | None


def drift_list() -> list[Drift]:
    return [
        {"component": c.key, "expected": c.deployed_version, "actual": c.version, "since": c.drifted_since}
        for c in component_list()
        if c.drifted
    ]


class StatusReport(TypedDict):
    """What `status --json` prints."""

    system: SystemVersionJson
    manifests: ManifestNames
    components: list[StatusComponent]
    in_progress: StatusInProgress | None
    last: DeploymentRecord | None
    drift: list[Drift]


class SystemComponent(TypedDict):
    """A component as the API's `ComponentOut` (and the System page) show it."""

    key: str
    component_type: str
    component_id: str
    interface: str
    interface_args: list[str]
    provides: dict[str, str]
    version: str
    last_seen: datetime | None


class ManifestRef(TypedDict):
    id: int
    name: str
    sha256: str
    created_at: datetime


class SystemReport(TypedDict):
    """The API's `SystemOut`."""

    system_type: str
    topology: dict[str, Any] | None
    components: list[SystemComponent]
    active_manifest: ManifestRef | None
    previous_manifest: ManifestRef | None
    in_progress: DeploymentSummary | None
    system_version: SystemVersionJson
    drift: list[Drift]


class SystemOverview(SystemReport):
    """The System page: components grouped by update order, and the run's progress."""

    groups: list[tuple[int | None, list[SystemComponent]]]
    progress: int


class PageComponent(SystemComponent):
    """A System page box: what `status` says of it too."""

    running: str  # during a stopped deployment: the new, uncommitted version
    uncommitted: bool
    drifted: bool


class SystemPage(SystemOverview):
    """The System page: `system_overview` told as `status` tells it (one read model): each
    box's running version, the deployment in progress (`status.in_progress`: stopped, where,
    whether it can be resumed or rolled back), the last outcome with its reason."""

    boxes: list[tuple[int | None, list[PageComponent]]]
    status: StatusReport
    can_continue: bool  # stopped, waiting for a reboot, or left by a dead runner
    workers_alive: bool


class TrustedKey(TypedDict):
    path: str
    fingerprint: str
    error: str  # why the key is unreadable, "" when it is not


def active_manifests() -> ActiveManifests | None:
    return ActiveManifests.objects.select_related("active", "previous").filter(pk=1).first()


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
        section = _manifest_constraints(active.raw.encode(), active.source_path)
        if section is not None:
            return section
    return constraints_file(Path(settings.TOPOLOGY_DIR))


@functools.lru_cache(maxsize=8)
def _manifest_constraints(raw: bytes, source_path: str) -> Constraints | None:
    """A manifest's text never changes, so its constraints section is parsed once per process,
    keyed by the text itself: the System page, `/system` and `status` ask on every request, and
    parsing the YAML was most of their time (a document with errors raises, and is not kept)."""
    return constraints_from_manifest(raw, path=Path(source_path))


def status_report() -> StatusReport:
    """What runs now, what is in flight, and how the last deployment ended."""
    pointers = active_manifests()
    running = deployment_in_progress()
    last = deployment_last_finished()
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
                "uncommitted": c.key in flight and flight[c.key]["uncommitted"],
                "drifted": c.drifted,
            }
            for c in component_list()
        ],
        "in_progress": _in_flight(running) if running else None,
        "last": deployment_record(last) if last else None,
        "drift": drift_list(),
    }


def _in_flight(running: Deployment) -> StatusInProgress:
    return {
        "id": running.pk,
        "status": running.status,
        "reason": running.reason,
        "position": running.position,
        "manifest": running.manifest.name,
        "owner_alive": owner_alive(running.owner),
        "started_at": running.started_at,
        "gate": gate_wait(running),
    }


def _manifest_ref(manifest: Manifest | None) -> ManifestRef | None:
    if manifest is None:
        return None
    return {
        "id": manifest.pk,
        "name": manifest.name,
        "sha256": manifest.sha256,
        "created_at": manifest.created_at,
    }


def system_report() -> SystemReport:
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
        "drift": drift_list(),
    }


def system_overview() -> SystemOverview:
    """`system_report` with its components grouped by the update order of the active manifest
    (components it does not name come last, under None) and the run's progress."""
    report = system_report()
    orders = _component_orders(report["active_manifest"])
    groups: dict[int | None, list[SystemComponent]] = {}
    for component in report["components"]:
        groups.setdefault(orders.get(component["key"]), []).append(component)
    running = deployment_in_progress()
    return {
        **report,
        "groups": sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0)),
        "progress": deployment_progress(running) if running else 0,
    }


def system_page() -> SystemPage:
    """`system_overview` with `status_report` (what the command line's `status` prints) laid
    over its boxes, so the page never shows less than `status` knows."""
    overview = system_overview()
    status = status_report()
    told = {c["key"]: c for c in status["components"]}
    boxes = [
        (order, [_box(c, told.get(c["key"])) for c in components]) for order, components in overview["groups"]
    ]
    running = deployment_in_progress()
    return {
        **overview,
        "boxes": boxes,
        "status": status,
        "can_continue": running is not None and deployment_waits(running),
        "workers_alive": bool(live_workers()),
    }


def _box(component: SystemComponent, told: StatusComponent | None) -> PageComponent:
    return {
        **component,
        "running": told["running"] if told else component["version"],
        "uncommitted": bool(told and told["uncommitted"]),
        "drifted": bool(told and told["drifted"]),
    }


def _component_orders(manifest: ManifestRef | None) -> dict[str, int]:
    """`update_strategy.order` per component key, from the plan the active manifest ran with."""
    if manifest is None:
        return {}
    last = Deployment.objects.filter(manifest_id=manifest["id"]).exclude(plan={}).order_by("-id").first()
    components = last.plan.get("components", []) if last else []
    return {c["key"]: int(c["order"]) for c in components}


def trusted_keys() -> list[TrustedKey]:
    """The configured `ArtifactVerifyKey(s)`: path and sha256 fingerprint (or why it is unreadable)."""
    rows: list[TrustedKey] = []
    for path in environment_load().config.verify_keys:
        try:
            rows.append(
                {"path": str(path), "fingerprint": key_fingerprint(load_public_key(path)), "error": ""}
            )
        except (OSError, ValueError, ArtifactError) as exc:
            rows.append({"path": str(path), "fingerprint": "", "error": str(exc)})
    return rows

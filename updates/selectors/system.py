"""Reads of the system: its components, the active manifests, the declared system version, the
run in progress (`status`, the API's `/system`, the System page) and the trusted keys."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet

from devices.models import Component, System
from devices.selectors import component_list
from updates.engine.artifact import ArtifactError, key_fingerprint, load_public_key
from updates.engine.constraints import (
    CONSTRAINTS_FILE,
    Constraints,
    constraints_from_manifest,
    parse_constraints,
)
from updates.engine.manifest import InputError, read_optional
from updates.liveness import live_workers, owner_alive
from updates.models import ActiveManifests, Deployment, Manifest
from updates.selectors.deployments import (
    DeploymentRecord,
    DeploymentSummary,
    GateWait,
    deployment_components,
    deployment_progress,
    deployment_record,
    deployment_summary,
    deployment_waits,
    gate_wait,
)
from updates.selectors.prepared import prepared
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
    return _drift(list(component_list()))


def _drift(components: Sequence[Component]) -> list[Drift]:
    return [
        {"component": c.key, "expected": c.deployed_version, "actual": c.version, "since": c.drifted_since}
        for c in components
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


@dataclass(frozen=True)
class _Reads:
    """The facts every view of the system shares, each read once per request and passed down:
    the System page used to read the components five times, the manifest pointers four times and
    the deployment in progress three times (one query each)."""

    active: Manifest | None
    previous: Manifest | None
    running: Deployment | None
    components: list[Component]


def _reads() -> _Reads:
    active, previous = _pointers()
    # `deployment_in_progress()`: the slot is 1 exactly while in progress, a unique-index lookup.
    running = _deployments("system.in_progress", lambda: _DEPLOYMENTS.filter(slot=1)[:1])
    return _Reads(active, previous, running[0] if running else None, _components())


_DEPLOYMENTS = Deployment.objects.select_related("manifest")
_DEPLOYMENT_FIELDS = [f.attname for f in Deployment._meta.concrete_fields]
_MANIFEST_FIELDS = [f.attname for f in Manifest._meta.concrete_fields]


def _deployments(name: str, make: Callable[[], QuerySet[Deployment]]) -> list[Deployment]:
    """Deployments with their manifest joined (`select_related`), from a prepared query: each
    row is the deployment's columns, then the manifest's."""
    found = []
    for row in prepared(name, make):
        deployment = Deployment.from_db(DEFAULT_DB_ALIAS, _DEPLOYMENT_FIELDS, row[: len(_DEPLOYMENT_FIELDS)])
        manifest = Manifest.from_db(DEFAULT_DB_ALIAS, _MANIFEST_FIELDS, row[len(_DEPLOYMENT_FIELDS) :])
        Deployment.manifest.field.set_cached_value(deployment, manifest)
        found.append(deployment)
    return found


_COMPONENT_FIELDS = [f.attname for f in Component._meta.concrete_fields]


def _components() -> list[Component]:
    """`component_list()` as model instances, its SQL compiled once (`prepared`)."""
    rows = prepared("system.components", component_list)
    return [Component.from_db(DEFAULT_DB_ALIAS, _COMPONENT_FIELDS, row) for row in rows]


_ACTIVE = ("id", "name", "sha256", "created_at", "raw", "source_path", "topology")
_PREVIOUS = ("id", "name", "sha256", "created_at")


def _pointers() -> tuple[Manifest | None, Manifest | None]:
    """The active and previous manifests (`active_manifests()`), with the fields the system's
    reads show, in one prepared query."""
    rows = prepared(
        "system.pointers",
        lambda: ActiveManifests.objects.filter(pk=1).values_list(
            *(f"active__{f}" for f in _ACTIVE), *(f"previous__{f}" for f in _PREVIOUS)
        )[:1],
    )
    if not rows:
        return None, None
    active, previous = rows[0][: len(_ACTIVE)], rows[0][len(_ACTIVE) :]
    return _manifest(_ACTIVE, active), _manifest(_PREVIOUS, previous)


def _manifest(fields: tuple[str, ...], values: list[Any]) -> Manifest | None:
    return None if values[0] is None else Manifest(**dict(zip(fields, values, strict=True)))


def _system_type() -> str:
    rows = prepared(
        "system.type", lambda: System.objects.filter(pk=1).values_list("system_type", flat=True)[:1]
    )
    return str(rows[0][0]) if rows else ""


def system_version() -> SystemVersion:
    """The system version shown by `status`, the API's `/system` and the UI's System page."""
    pointers = active_manifests()
    return _system_version(list(component_list()), pointers.active if pointers else None)


def _system_version(components: Sequence[Component], active: Manifest | None) -> SystemVersion:
    versions = {c.key: c.version for c in components}
    try:
        constraints = _active_constraints(active)
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


def _active_constraints(active: Manifest | None) -> Constraints | None:
    """As for a deployment: the active manifest's section wins over constraints.yaml."""
    if active is not None:
        section = _manifest_constraints(active.raw.encode(), active.source_path)
        if section is not None:
            return section
    path = Path(settings.TOPOLOGY_DIR) / CONSTRAINTS_FILE
    data = read_optional(path)  # read on every request: an edit shows at once
    return None if data is None else _file_constraints(data, str(path))


@functools.lru_cache(maxsize=8)
def _manifest_constraints(raw: bytes, source_path: str) -> Constraints | None:
    """A manifest's text never changes, so its constraints section is parsed once per process,
    keyed by the text itself: the System page, `/system` and `status` ask on every request, and
    parsing the YAML was most of their time (a document with errors raises, and is not kept)."""
    return constraints_from_manifest(raw, path=Path(source_path))


@functools.lru_cache(maxsize=8)
def _file_constraints(data: bytes, path: str) -> Constraints:
    """`constraints.yaml` parsed once per content (as `_manifest_constraints`): the file is still
    read on every request, so an edit is seen by the next one."""
    return parse_constraints(data, path=Path(path))


@dataclass(frozen=True)
class _Last:
    """The newest finished deployment and the newest deployment's id (the outcomes need it)."""

    deployment: Deployment | None
    newest: int | None


def _last_finished() -> _Last:
    """The newest finished deployment, found on the primary key. At most one deployment is in
    progress (its slot is unique, and a check constraint holds the slot exactly while the status
    is in progress; every other status is final), so it is one of the two newest rows. Asking
    for the finished statuses instead sorted every finished deployment (24 ms at 10 000)."""
    newest = _deployments("system.newest", lambda: _DEPLOYMENTS.order_by("-id")[:2])
    last = next((d for d in newest if d.status in Deployment.TERMINAL), None)
    return _Last(last, newest[0].pk if newest else None)


def status_report() -> StatusReport:
    """What runs now, what is in flight, and how the last deployment ended."""
    return _status_report(_reads(), _last_finished())


def _status_report(reads: _Reads, finished: _Last) -> StatusReport:
    running = reads.running
    last = finished.deployment
    flight = {o["key"]: o for o in deployment_components(running)} if running else {}
    return {
        "system": _system_version(reads.components, reads.active).as_json(),
        "manifests": {
            "active": reads.active.name if reads.active else None,
            "previous": reads.previous.name if reads.previous else None,
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
            for c in reads.components
        ],
        "in_progress": _in_flight(running) if running else None,
        "last": deployment_record(last, components=reads.components, newest=finished.newest)
        if last
        else None,
        "drift": _drift(reads.components),
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
    return _system_report(_reads())


def _system_report(reads: _Reads) -> SystemReport:
    active = reads.active
    running = reads.running
    return {
        "system_type": _system_type() or (active.topology.get("system_type") if active else "") or "",
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
            for c in reads.components
        ],
        "active_manifest": _manifest_ref(active),
        "previous_manifest": _manifest_ref(reads.previous),
        "in_progress": deployment_summary(running) if running else None,
        "system_version": _system_version(reads.components, reads.active).as_json(),
        "drift": _drift(reads.components),
    }


def system_overview() -> SystemOverview:
    """`system_report` with its components grouped by the update order of the active manifest
    (components it does not name come last, under None) and the run's progress."""
    return _system_overview(_reads(), _last_finished())


def _system_overview(reads: _Reads, last: _Last) -> SystemOverview:
    report = _system_report(reads)
    orders = _component_orders(reads.active, (reads.running, last.deployment))
    groups: dict[int | None, list[SystemComponent]] = {}
    for component in report["components"]:
        groups.setdefault(orders.get(component["key"]), []).append(component)
    return {
        **report,
        "groups": sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0)),
        "progress": deployment_progress(reads.running) if reads.running else 0,
    }


def system_page() -> SystemPage:
    """`system_overview` with `status_report` (what the command line's `status` prints) laid
    over its boxes, so the page never shows less than `status` knows. One read of each fact."""
    reads = _reads()
    last = _last_finished()
    overview = _system_overview(reads, last)
    status = _status_report(reads, last)
    told = {c["key"]: c for c in status["components"]}
    boxes = [
        (order, [_box(c, told.get(c["key"])) for c in components]) for order, components in overview["groups"]
    ]
    running = reads.running
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


def _component_orders(manifest: Manifest | None, known: Sequence[Deployment | None]) -> dict[str, int]:
    """`update_strategy.order` per component key, from the plan the active manifest ran with: the
    newest deployment of that manifest with a plan. `known` holds the run in progress and the
    last finished deployment, so its newest is the newest of all; when that one ran the active
    manifest (the usual case) its plan is the answer, read already; otherwise one query."""
    if manifest is None:
        return {}
    latest = max((d for d in known if d is not None), key=lambda d: d.pk, default=None)
    if latest is not None and latest.manifest_id == manifest.pk and latest.plan:
        plan: dict[str, Any] = latest.plan
    else:
        found = (
            Deployment.objects.filter(manifest_id=manifest.pk)
            .exclude(plan={})
            .order_by("-id")
            .values_list("plan", flat=True)
            .first()
        )
        plan = found or {}
    return {c["key"]: int(c["order"]) for c in plan.get("components", [])}


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

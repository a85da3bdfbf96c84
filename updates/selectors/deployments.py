"""Reads of deployments: the list, a page, one row, and their shapes (API, CLI, pages).

One shape per use, each built on `DeploymentSummary` (the API's `DeploymentSummaryOut`):
`DeploymentDetail` adds the plan's groups with their steps (`DeploymentOut`, the deployment
page), `DeploymentRecord` what `history --json` and `status --json` print, `DeploymentRow` a
history page's row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypedDict, cast

from django.db import connection
from django.db.models import QuerySet

from devices.models import Component
from devices.selectors import component_list
from updates.actors import Actor
from updates.engine.interface import QUERY_STATES
from updates.engine.machine import MILESTONES, Progress, RunPhase
from updates.engine.planner import TargetJson
from updates.liveness import owner_alive
from updates.models import Deployment, DeploymentCount, Manifest, Step
from updates.selectors.actors import _actor
from updates.selectors.prepared import prepared
from updates.selectors.steps import (
    StepRecord,
    StepReport,
    db_moment,
    deployment_step_reports,
    deployment_steps,
    step_record,
    step_status,
)

SYSTEM_STEPS = "system"  # the component name of the steps of the whole system: gates, health checks


class GateWait(TypedDict):
    """The approval gate a deployment waits at (docs/policy.md), and a decision not yet acted on."""

    before: str
    expires_at: datetime | None
    decision: str  # "" | "approved" | "rejected"


class DeploymentSummary(TypedDict):
    """One deployment in a line's worth of fields (the API's `DeploymentSummaryOut`)."""

    id: int
    kind: str
    status: str
    reason: str
    manifest: str
    actor: dict[str, str]  # kind, name, label (`_actor`)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    gate: GateWait | None  # only while it waits at a gate (status waiting_approval)


# Per planned component: what happened, from -> to, and what it runs now. The functional form:
# "from" is a Python keyword, and the JSON's field name.
OutcomeReport = TypedDict(
    "OutcomeReport",
    {
        "key": str,
        "outcome": str,
        "from": str,
        "to": str,
        "version": str,
        "uncommitted": bool,
        "failed_in": str | None,
    },
)


class DeploymentRecord(DeploymentSummary):
    """What `status --json` (`last`) and `history --json` print of a deployment."""

    components: list[str]
    actor_label: str
    forced_reason: str
    outcomes: list[OutcomeReport]


class DeploymentHistory(DeploymentRecord):
    steps: list[StepRecord]


class DeploymentComponent(TypedDict):
    """A component of the detail's groups (`DeploymentComponentOut`), with its steps."""

    key: str
    component_type: str
    component_id: str
    action: str
    current: str
    target: str
    steps: list[StepReport]


class DeploymentGroup(TypedDict):
    order: int | None  # None: steps under names the plan does not know
    components: list[DeploymentComponent]


class DeploymentOptions(TypedDict):
    stop_before: list[str]
    exit_on_reboot: bool


class DeploymentDetail(DeploymentSummary):
    """Order groups -> components -> steps (the API's `DeploymentOut`, the deployment page)."""

    components_concerned: list[str]
    position: dict[str, Any]
    options: DeploymentOptions
    requests: list[dict[str, Any]]
    groups: list[DeploymentGroup]


class DeploymentTimeline(DeploymentDetail):
    running: bool  # a step still runs


class DeploymentRow(DeploymentSummary):
    """A history page's row: the manifest it started from and how long it took."""

    manifest_from: str | None
    duration_seconds: float | None


@dataclass(frozen=True)
class DeploymentFilter:
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    manifest: str | None = None


# ----- finding deployments -----------------------------------------------------------------------


def deployment_in_progress() -> Deployment | None:
    # The slot is 1 exactly while in progress (a check constraint holds it): a unique-index lookup,
    # where filtering on the status scans every finished deployment first.
    return Deployment.objects.select_related("manifest").filter(slot=1).first()


def deployment_list(*, limit: int = 50) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").order_by("-id")[:limit]


def deployment_get(deployment_id: int) -> QuerySet[Deployment]:
    return Deployment.objects.select_related("manifest").filter(pk=deployment_id)


def deployment_find(*, deployment_id: int) -> Deployment | None:
    """The deployment with its manifest's name (`deployment.manifest.name`; its other fields
    load on access): one plain statement, converted as the ORM converts its columns, instead of
    a query built per request (the larger part of `GET /deployments/{id}`)."""
    fields = Deployment._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute(_FIND_SQL, [deployment_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for field, value in zip(fields, row, strict=False):
        col = field.get_col(_DEPLOYMENTS)
        for convert in connection.ops.get_db_converters(col) + col.get_db_converters(connection):
            value = convert(value, col, connection)
        values.append(value)
    deployment = Deployment.from_db(connection.alias, [f.attname for f in fields], values)
    deployment.manifest = Manifest.from_db(
        connection.alias, ["id", "name"], [deployment.manifest_id, row[-1]]
    )
    return deployment


def deployment_status(*, deployment_id: int) -> str | None:
    return Deployment.objects.filter(pk=deployment_id).values_list("status", flat=True).first()


def deployment_page(
    *, filters: DeploymentFilter, page: int, page_size: int, after: int | None = None
) -> tuple[list[DeploymentSummary], int]:
    """One page of deployments, newest first, and how many match (docs/api.md, "Reads"). `after`
    (keyset): the page that follows the deployment with that id, found by the index on id
    instead of skipping rows.

    Two small queries whatever the size of the history: the total from the stored counts
    (`DeploymentCount`; a period or a manifest is counted on its index), then the page's ids
    on an index (a subquery) with the summary's columns of those rows. Both are written here
    rather than built by the ORM per request: building them cost more than running them."""
    where, params = _page_conditions(filters)
    total = deployment_total(filters, where, params)
    if after is not None:
        where, params, start = [*where, "id < %s"], [*params, after], 0
    else:
        start = (page - 1) * page_size
    sql = _PAGE_SQL.format(where=f"WHERE {' AND '.join(where)}" if where else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, page_size, start])
        found = cursor.fetchall()
    return [_summary_of(row) for row in found], total


_DEPLOYMENTS = Deployment._meta.db_table
_COUNTS = DeploymentCount._meta.db_table
_FIND_SQL = (
    "SELECT "
    + ", ".join(f'd."{f.column}"' for f in Deployment._meta.concrete_fields)  # quoted: "position", "plan"
    + f", m.name FROM {_DEPLOYMENTS} d INNER JOIN {Manifest._meta.db_table} m ON m.id = d.manifest_id "
    "WHERE d.id = %s"
)
_PAGE_SQL = (
    "SELECT d.id, d.kind, d.status, d.reason, m.name, d.actor, d.created_at, d.started_at, "
    "d.finished_at, d.gate, d.gate_expires_at, d.gate_decision "
    f"FROM {_DEPLOYMENTS} d INNER JOIN {Manifest._meta.db_table} m ON m.id = d.manifest_id "
    f"WHERE d.id IN (SELECT id FROM {_DEPLOYMENTS} {{where}} ORDER BY id DESC LIMIT %s OFFSET %s) "
    "ORDER BY d.id DESC"
)


def _page_conditions(filters: DeploymentFilter) -> tuple[list[str], list[Any]]:
    """The filters as SQL conditions on the deployment table (each served by an index)."""
    where: list[str] = []
    params: list[Any] = []
    if filters.status:
        where.append("status = %s")
        params.append(filters.status)
    if filters.since:
        where.append("created_at >= %s")
        params.append(connection.ops.adapt_datetimefield_value(filters.since))
    if filters.until:
        where.append("created_at < %s")
        params.append(connection.ops.adapt_datetimefield_value(filters.until))
    if filters.manifest:
        where.append(f"manifest_id IN (SELECT id FROM {Manifest._meta.db_table} WHERE name = %s)")
        params.append(filters.manifest)
    return where, params


def deployment_total(filters: DeploymentFilter, where: list[str], params: list[Any]) -> int:
    """How many deployments match: the stored counts, unless a period or a manifest narrows them."""
    with connection.cursor() as cursor:
        if filters.since or filters.until or filters.manifest:
            cursor.execute(f"SELECT COUNT(*) FROM {_DEPLOYMENTS} WHERE {' AND '.join(where)}", params)
        elif filters.status:
            cursor.execute(f"SELECT n FROM {_COUNTS} WHERE status = %s", [filters.status])
        else:
            cursor.execute(f"SELECT COALESCE(SUM(n), 0) FROM {_COUNTS}")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def deployment_counts() -> dict[str, int]:
    """Deployments per status, as stored (`DeploymentCount`): statuses none has are left out."""
    return dict(DeploymentCount.objects.filter(n__gt=0).values_list("status", "n"))


@lru_cache(maxsize=512)
def _actor_of(stored: str) -> dict[str, str]:
    """The summary's actor from the stored JSON text: a history has few distinct actors."""
    who = Actor.from_json(json.loads(stored))
    return {**who.as_json(), "label": who.label}


def _summary_of(row: tuple[Any, ...]) -> DeploymentSummary:
    pk, kind, status, reason, manifest, actor, created_at, started_at, finished_at, *gate = row
    before, expires_at, decision = gate
    waits = status == Deployment.Status.WAITING_APPROVAL and before
    stored = actor if isinstance(actor, str) else json.dumps(actor, sort_keys=True)
    return {
        "id": pk,
        "kind": kind,
        "status": status,
        "reason": reason,
        "manifest": manifest,
        "actor": dict(_actor_of(stored)),
        "created_at": cast(datetime, db_moment(created_at)),
        "started_at": db_moment(started_at),
        "finished_at": db_moment(finished_at),
        "gate": {"before": before, "expires_at": db_moment(expires_at), "decision": decision}
        if waits
        else None,
    }


def deployment_waits(deployment: Deployment) -> bool:
    """In progress with nobody running it: stopped, waiting for a reboot, or left running by a
    dead runner. Only then can it be resumed or rolled back (a queued one waits for its worker)."""
    if deployment.status not in Deployment.IN_PROGRESS or deployment.status == Deployment.Status.QUEUED:
        return False
    return deployment.status not in Deployment.RUNNABLE or not owner_alive(deployment.owner)


# ----- the shapes --------------------------------------------------------------------------------


def deployment_summary(d: Deployment) -> DeploymentSummary:
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
        "gate": gate_wait(d),
    }


def gate_wait(d: Deployment) -> GateWait | None:
    if d.status != Deployment.Status.WAITING_APPROVAL or not d.gate:
        return None  # the row keeps a wait a dead process left (its expiry) until the run ends
    return {"before": d.gate, "expires_at": d.gate_expires_at, "decision": d.gate_decision}


def deployment_record(
    d: Deployment, *, components: Sequence[Component] | None = None, newest: int | None = None
) -> DeploymentRecord:
    """The summary with who and why, and what happened to each component (`history --json`).
    `components` and `newest`: as `deployment_components` takes them."""
    return {
        **deployment_summary(d),
        "components": d.components,
        "actor_label": d.who.label,
        "forced_reason": d.forced_reason,
        "outcomes": deployment_components(d, components=components, newest=newest),
    }


def history_report(*, limit: int = 50, deployment_id: int | None = None) -> list[DeploymentHistory]:
    """Past deployments, newest first, each with every interface call (`history --json`)."""
    deployments = deployment_list(limit=limit) if deployment_id is None else deployment_get(deployment_id)
    return [
        {**deployment_record(d), "steps": [step_record(s) for s in deployment_steps(d)]} for d in deployments
    ]


def deployment_detail(d: Deployment) -> DeploymentDetail:
    """Order groups -> components (from the plan) -> their steps. Steps under names the plan does
    not know (Identity queries, before a component's ID is known; a run refused while inspecting)
    come first, in a group of their own (order None)."""
    steps: dict[str, list[StepReport]] = {}
    for s in deployment_step_reports(d.pk):
        steps.setdefault(s["component"], []).append(s)
    plan = d.planned()
    planned = {c["key"]: c for c in plan["components"]} if plan else {}
    groups: list[DeploymentGroup] = [
        {"order": order, "components": [_planned(planned[k], steps.pop(k, [])) for k in keys if k in planned]}
        for order, keys in (plan["groups"] if plan else [])
    ]
    system = steps.pop(SYSTEM_STEPS, None)
    if steps:  # Identity queries come first, naming a component by its interface args
        groups.insert(0, {"order": None, "components": [_unplanned(k, v) for k, v in steps.items()]})
    if system:  # the policy's approval gates and health checks (docs/policy.md) come last
        groups.append({"order": None, "components": [_unplanned(SYSTEM_STEPS, system)]})
    return {
        **deployment_summary(d),
        "components_concerned": d.components,
        "position": d.position,
        "options": {"stop_before": d.stop_before, "exit_on_reboot": d.exit_on_reboot},
        "requests": d.requests,
        "groups": groups,
    }


def _planned(c: TargetJson, steps: list[StepReport]) -> DeploymentComponent:
    return {
        "key": c["key"],
        "component_type": c["component_type"],
        "component_id": c["component_id"],
        "action": c["action"],
        "current": c["current"],
        "target": c["target"],
        "steps": steps,
    }


def _unplanned(key: str, steps: list[StepReport]) -> DeploymentComponent:
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


def deployment_timeline(deployment: Deployment) -> DeploymentTimeline:
    """`deployment_detail` with a status per step, and whether a step still runs (the queries
    that refresh the components after a run are journaled under it after its status is final)."""
    detail = deployment_detail(deployment)
    running = False
    for group in detail["groups"]:
        for component in group["components"]:
            for step in component["steps"]:
                step["status"] = step_status(step)
                running = running or step["status"] == "running"
    return {**detail, "running": running}


def deployment_rows(deployments: Sequence[DeploymentSummary]) -> list[DeploymentRow]:
    """History rows (the summary + the manifest it started from + duration) for one page of
    deployments: "from" is the last success before each, found with one query per page."""
    if not deployments:
        return []
    lowest, highest = min(d["id"] for d in deployments), max(d["id"] for d in deployments)
    with connection.cursor() as cursor:
        cursor.execute(_SUCCESSES_SQL, [highest, lowest])
        successes = cursor.fetchall()  # newest first
    rows: list[DeploymentRow] = []
    for d in deployments:
        start = d["started_at"] or d["created_at"]
        finished = d["finished_at"]
        rows.append(
            {
                **d,
                "manifest_from": next((name for pk, name in successes if pk < d["id"]), None),
                "duration_seconds": (finished - start).total_seconds() if finished else None,
            }
        )
    return rows


# The successes from the last one before the page's oldest row up to its newest, on the index on
# (status, id): one statement, the floor a subquery.
_SUCCESSES_SQL = (
    f"SELECT d.id, m.name FROM {_DEPLOYMENTS} d INNER JOIN {Manifest._meta.db_table} m ON m.id = d.manifest_id "
    "WHERE d.status = 'succeeded' AND d.id < %s AND d.id >= COALESCE("
    f"(SELECT id FROM {_DEPLOYMENTS} WHERE status = 'succeeded' AND id < %s ORDER BY id DESC LIMIT 1), 0) "
    "ORDER BY d.id DESC"
)


# ----- what happened to each component -----------------------------------------------------------


def deployment_components(
    deployment: Deployment, *, components: Sequence[Component] | None = None, newest: int | None = None
) -> list[OutcomeReport]:
    """Per planned component: what happened (installed, rolled back, failed in STATE, skipped, …)
    and the version it runs now as far as the records tell.

    A caller that read them already passes `components` (`component_list()`'s rows) and `newest`
    (the newest deployment's id), each sparing a query: the System page and `status` read both
    before they ask for the outcomes of the run in progress and of the last deployment."""
    plan = deployment.planned()
    if plan is None:
        return []
    progress: dict[str, dict[str, Any]] = deployment.position.get("progress", {})
    failed = _failed_states(deployment)
    answers: dict[str, Component] = {}
    if _is_latest_finished(deployment, newest):
        answers = {c.key: c for c in (component_list() if components is None else components)}
    outcomes: list[OutcomeReport] = []
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


def _is_latest_finished(deployment: Deployment, newest: int | None = None) -> bool:
    """Only the last deployment's components still run what it left (later ones changed them).
    `newest`: the newest deployment's id when the caller knows it, else it is read."""
    if deployment.status not in Deployment.TERMINAL:
        return False
    if newest is not None:
        return newest == deployment.pk
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(id) FROM {_DEPLOYMENTS}")
        row = cursor.fetchone()
    return row is not None and row[0] == deployment.pk


def _failed_states(deployment: Deployment) -> dict[str, str]:
    """The first update state (not a query) that failed, per component: stored when the
    deployment ended, else read from its steps."""
    if deployment.failed_in is not None and deployment.status in Deployment.TERMINAL:
        return dict(deployment.failed_in)
    return failed_states_from_steps(deployment)


def failed_states_from_steps(deployment: Deployment) -> dict[str, str]:
    """`_failed_states` from the step rows (what `deployment_close` stores): the ended steps that
    are not `Step.ok`, oldest first. Only the four columns that decide it are read, in a query
    compiled once (`prepared`): the System page and `status` ask for the run in progress on every
    request, and building the ORM query and its model instances was most of their outcome work."""
    failed: dict[str, str] = {}
    for component, state, error, exit_code in prepared(
        "deployments.ended_steps", _ended_steps, (deployment.pk,)
    ):
        if error or exit_code not in (0, None):  # not `Step.ok` (it has ended)
            failed.setdefault(component, state)
    return failed


def _ended_steps(deployment_id: int) -> QuerySet[Step, tuple[str, str, str, int | None]]:
    return (
        Step.objects.filter(deployment_id=deployment_id, ended_at__isnull=False)
        .exclude(state__in=QUERY_STATES)
        .order_by("id")
        .values_list("component", "state", "error", "exit_code")
    )


def run_phase(status: str) -> RunPhase:
    """A deployment status as the engine's `Progress.outcome` needs it."""
    if status in Deployment.IN_PROGRESS:
        return "in_progress"
    return "succeeded" if status == Deployment.Status.SUCCEEDED else "ended"


def _outcome(
    target: TargetJson, progress: dict[str, Any] | None, status: str, failed_in: str | None
) -> tuple[str, str, bool]:
    """(what happened, the version it runs, whether that version is uncommitted): the engine's
    words (`Progress.outcome`), or "skipped" for a component the plan leaves alone."""
    if target["action"] == "skip":
        return f"skipped (already {target['current']})", target["current"], False
    outcome = Progress.from_json(progress).outcome(
        current=target["current"], target=target["target"], run=run_phase(status), failed_in=failed_in
    )
    return outcome.what, outcome.version, outcome.uncommitted


def deployment_progress(deployment: Deployment) -> int:
    """Percent of the installing components' milestones reached (100 once the run has ended)."""
    if deployment.status not in Deployment.IN_PROGRESS:
        return 100
    installing = [c["key"] for c in deployment.plan.get("components", []) if c.get("action") == "install"]
    if not installing:
        return 0
    progress = (deployment.position or {}).get("progress", {})
    reached = sum(Progress.from_json(progress.get(key)).milestones_reached() for key in installing)
    return round(100 * reached / (len(installing) * len(MILESTONES)))

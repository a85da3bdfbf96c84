"""Reads that do not grow with history (docs/api.md, "Reads"): every read route and page answers
in the same number of queries at 10 deployments as at 1 000, and the routes that skip ninja's
second validation (updates/api/render.py) answer byte for byte what it would have answered."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from ninja.responses import NinjaJSONEncoder
from pydantic import BaseModel

from accounts import services
from accounts.models import Role
from tests.api.conftest import SETUP
from updates import selectors
from updates.actors import Actor
from updates.api.schemas import DeploymentOut, DeploymentPageOut, SystemOut
from updates.models import Bundle, Deployment, Manifest, Step, StepEvent

PASSWORD = "reader-password-1"
PLAN = {
    "groups": [[10, ["gateway.G13"]], [20, ["rtos.R1"]]],
    "components": [
        {
            "key": k,
            "component_type": k.split(".")[0],
            "component_id": k.split(".")[1],
            "action": "install",
            "current": "v1",
            "target": "v2",
        }
        for k in ("gateway.G13", "rtos.R1")
    ],
}
ACTORS = [
    Actor("user", "alice").as_json(),
    Actor("token", "alice/ci").as_json(),
    Actor("cli", "root", via="update-module").as_json(),
    Actor("webhook", "evt-1").as_json(),
]
OUTCOMES = ("succeeded", "rolled_back", "inconsistent", "rejected")


def _history(count: int) -> None:
    """`count` more finished deployments with 4 steps each (one of them under a name the plan does
    not know), spread over the last weeks; written in bulk."""
    manifest, _ = Manifest.objects.get_or_create(
        name="sys-v2", defaults={"form": "current", "sha256": "0" * 64, "raw": "", "source_path": "/m"}
    )
    now = timezone.now()
    made = Deployment.objects.bulk_create(
        Deployment(
            manifest=manifest,
            status=OUTCOMES[n % 4],
            slot=None,
            plan=PLAN,
            actor=ACTORS[n % 4],
            started_at=now - timedelta(hours=n),
            finished_at=now - timedelta(hours=n) + timedelta(seconds=7),
        )
        for n in range(count)
    )
    steps = Step.objects.bulk_create(
        Step(
            deployment=d,
            component=c,
            state=s,
            argv=["/x", s],
            started_at=now,
            ended_at=now,
            exit_code=0,
            stdout="ok\n",
        )
        for d in made
        for c, s in (
            ("gateway.G13", "Download"),
            ("rtos.R1", "Download"),
            ("rtos.R1", "ArtifactInstall"),
            ("rtos-R1-by-args", "Identity"),
        )
    )
    StepEvent.objects.bulk_create(
        StepEvent(deployment_id=s.deployment_id, step=s, kind="finished") for s in steps
    )
    Bundle.objects.bulk_create(
        Bundle(status="rejected", filename=f"b{n}.tar", actor=ACTORS[0]) for n in range(max(1, count // 10))
    )


@pytest.fixture
def reader(db: None) -> tuple[Client, dict[str, str]]:
    services.user_create(username="reader", role=Role.VIEWER, password=PASSWORD, actor=SETUP)
    token = services.token_create(username="reader", role=Role.VIEWER, name="t", actor=SETUP).secret
    client = Client()
    assert client.login(username="reader", password=PASSWORD)
    return client, {"Authorization": f"Bearer {token}"}


ROUTES = [
    "/api/v1/deployments",
    "/api/v1/deployments?page=2&page_size=5",
    "/api/v1/deployments?status=rolled_back",
    "/api/v1/deployments?manifest=sys-v2&since=2000-01-01T00:00:00Z",
    "/api/v1/deployments?after={mid}",
    "/api/v1/deployments/{mid}",
    "/api/v1/system",
    "/api/v1/bundles",
    "/api/v1/audit",
    "/",
    "/history/",
    "/history/?status=succeeded",
    "/deployments/{mid}/",
    "/audit/",
    "/bundles/",
]

# Queries per visit of the system's reads (with the signed-in session: 2 of them, the session
# row and the user with its role).
SYSTEM_READS = {"/": 8, "/api/v1/system": 6, "/bundles/": 3}


HISTORY_QUERIES = {
    "/api/v1/deployments": 4,
    "/api/v1/deployments?page=2&page_size=5": 4,
    "/api/v1/deployments?status=rolled_back": 4,
    "/api/v1/deployments?manifest=sys-v2&since=2000-01-01T00:00:00Z": 4,
    "/api/v1/deployments?after={mid}": 4,
    "/api/v1/deployments/{mid}": 4,
    "/history/": 7,
    "/history/?status=succeeded": 7,
    "/deployments/{mid}/": 6,
    "/audit/": 4,
}


def _queries(client: Client, headers: dict[str, str], path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(path, headers=headers)
    assert answer.status_code == 200, (path, answer.content[:300])
    return len(captured)


def test_every_read_costs_the_same_queries_at_10_and_at_1000_deployments(
    reader: tuple[Client, dict[str, str]],
) -> None:
    client, _ = reader  # the session: a token would add its once-a-minute "last used" write
    _history(10)
    mid = Deployment.objects.order_by("id").values_list("pk", flat=True)[5]
    paths = [p.format(mid=mid) for p in ROUTES]
    for path in paths:  # first visits
        client.get(path)
    few = {path: _queries(client, {}, path) for path in paths}
    _history(990)
    for path in paths:  # first visits again: the History page's chart is drawn once per change
        client.get(path)
    many = {path: _queries(client, {}, path) for path in paths}
    assert many == few, {path: (few[path], many[path]) for path in paths if few[path] != many[path]}
    # The history's reads, pinned (a session costs 2 queries: its row, and the user with its role): the
    # list is the stored total and the page's rows; the History page adds the "from" manifests
    # and the chart's key (2); the deployment page the row, its steps and the newest id.
    pinned = {p.format(mid=mid): n for p, n in HISTORY_QUERIES.items()}
    assert {path: few[path] for path in pinned} == pinned
    # A ceiling, so a per-row query cannot hide in a constant: the System page is the dearest
    # (what status says, the drift, the last outcome, the worker liveness): 8 queries (the last
    # outcome takes the components and the newest id the page read already).
    assert max(few.values()) <= 8, few
    # The system's reads take each fact once (the session, its user and role included): pinned,
    # so a read repeated again fails here.
    assert {p: few[p] for p in SYSTEM_READS} == SYSTEM_READS, few


def _validated(schema: type[BaseModel], data: Any) -> str:
    """What ninja answers: the value validated against the schema, dumped, then encoded."""
    return json.dumps(schema.model_validate(data).model_dump(), cls=NinjaJSONEncoder)


def test_the_routes_that_skip_validation_answer_what_it_would_have(
    reader: tuple[Client, dict[str, str]],
) -> None:
    client, token = reader
    _history(12)
    page = client.get("/api/v1/deployments?page_size=12", headers=token)
    rows, total = selectors.deployment_page(filters=selectors.DeploymentFilter(), page=1, page_size=12)
    assert page.content.decode() == _validated(
        DeploymentPageOut, {"page": 1, "page_size": 12, "total": total, "items": rows}
    )
    assert {item["actor"]["kind"] for item in page.json()["items"]} == {"user", "token", "cli", "webhook"}
    for deployment in Deployment.objects.all()[:4]:
        detail = client.get(f"/api/v1/deployments/{deployment.pk}", headers=token)
        assert detail.content.decode() == _validated(DeploymentOut, selectors.deployment_detail(deployment))
        assert detail.json()["groups"][0]["order"] is None  # the unplanned Identity query
    system = client.get("/api/v1/system", headers=token)
    assert system.content.decode() == _validated(SystemOut, selectors.system_report())


def test_keyset_pages_walk_the_whole_history_once_newest_first(reader: tuple[Client, dict[str, str]]) -> None:
    client, token = reader
    _history(23)
    seen: list[int] = []
    path = "/api/v1/deployments?page_size=5&status=succeeded"
    while True:
        answer = client.get(path + (f"&after={seen[-1]}" if seen else ""), headers=token).json()
        assert answer["total"] == 6
        if not answer["items"]:
            break
        seen += [item["id"] for item in answer["items"]]
    expected = Deployment.objects.filter(status="succeeded").order_by("-id").values_list("pk", flat=True)
    assert seen == list(expected)

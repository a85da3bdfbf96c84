"""docs/policy.md on the pages, through Django's test client: the Deployment page of a deployment
waiting at a gate shows the gate and, to operators only, the decision form; a decision made there
is recorded with who and why; the System page shows drift and, to operators, Reconcile."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from devices.models import Component
from tests.web.conftest import deployment_record
from updates.models import Deployment, JournalEntry

pytestmark = pytest.mark.django_db


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def _waiting() -> Deployment:
    deployment = deployment_record("system-core-v2", "waiting_approval", running=True)
    expires = timezone.now() + timedelta(minutes=30)
    Deployment.objects.filter(pk=deployment.pk).update(gate="ArtifactCommit", gate_expires_at=expires)
    deployment.refresh_from_db()
    return deployment


def test_the_page_shows_the_gate_and_lets_only_operators_decide(clients: dict[str, Client]) -> None:
    deployment = _waiting()
    url = f"/deployments/{deployment.pk}/"
    viewer = _text(clients["viewer"].get(url))
    assert "Waiting for approval before ArtifactCommit" in viewer and "Approve" not in viewer
    assert "Approve" in _text(clients["operator"].get(url))
    approve = f"/deployments/{deployment.pk}/approve"
    assert clients["viewer"].post(approve, {"decision": "approve"}).status_code == 403
    unsure = _text(clients["operator"].post(approve, {"decision": "maybe"}, follow=True))
    assert "Nothing decided" in unsure
    assert Deployment.objects.get(pk=deployment.pk).gate_decision == ""  # no button, no rollback
    answer = clients["operator"].post(approve, {"decision": "reject", "reason": "line running"}, follow=True)
    assert "rejected: the system is rolled back" in _text(answer)
    deployment.refresh_from_db()
    assert (deployment.gate_decision, deployment.gate_reason) == ("rejected", "line running")
    entry = JournalEntry.objects.filter(kind="gate.rejected").get()
    assert isinstance(entry.actor, dict) and entry.actor["name"] == "operator"
    assert entry.data == {"gate": "ArtifactCommit", "reason": "line running"}
    again = _text(clients["operator"].post(approve, {"decision": "approve"}, follow=True))
    assert "Cannot approve: deployment" in again and "already rejected by user operator" in again


def test_the_system_page_shows_drift_and_offers_reconcile_to_operators(clients: dict[str, Client]) -> None:
    Component.objects.create(
        key="rtos.R456",
        component_type="rtos",
        component_id="R456",
        interface="rtos",
        version="rtos-v1",
        deployed_version="rtos-v2",
        drifted_since=timezone.now(),
    )
    viewer = _text(clients["viewer"].get("/"))
    assert "Drift: changed outside the orchestrator" in viewer and "rtos.R456 rtos-v1 rtos-v2" in viewer
    assert "Reconcile" not in viewer
    assert "Reconcile" in _text(clients["operator"].get("/"))
    answer = clients["operator"].post("/system/reconcile", follow=True)
    assert "Cannot reconcile: no manifest is active yet" in _text(answer)

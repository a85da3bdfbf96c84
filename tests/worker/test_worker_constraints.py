"""Declared constraints on the worker path (what the API calls): a violating plan is refused at
once (the API's 422), a forced one runs on a worker and records who forced it and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import ROOT
from tests.worker.conftest import Appliance
from updates.actors import Actor
from updates.engine.transitions import ConstraintViolation
from updates.models import Deployment
from updates.services import dispatch
from updates.services.constraints import ForceWithoutReason

SEED_TABLES = (ROOT / "tests" / "engine" / "fixtures" / "seed_constraints.yaml").read_text()


def _swapped(appliance: Appliance) -> Path:
    manifest = appliance.system.system / "manifest-v2.yaml"
    text = manifest.read_text().replace("order: 10", "order: X").replace("order: 20", "order: 10")
    swapped = appliance.system.system / "swapped.yaml"
    swapped.write_text(text.replace("order: X", "order: 20"))
    return swapped


def test_a_violating_plan_is_refused_before_anything_is_queued(appliance: Appliance) -> None:
    (appliance.system.datastore / "constraints.yaml").write_text(SEED_TABLES)
    with pytest.raises(ConstraintViolation, match=r"step 'order 10' .* gateway-v1 \+ rtos-v2"):
        dispatch.deployment_start(manifest_path=_swapped(appliance), actor=Actor("user", "alice"))
    with pytest.raises(ForceWithoutReason):
        dispatch.deployment_start(manifest_path=_swapped(appliance), actor=Actor("user", "alice"), force=True)
    assert not Deployment.objects.exists()
    assert appliance.system.timeline() == []


def test_a_forced_deployment_runs_on_a_worker_and_records_who_and_why(appliance: Appliance) -> None:
    (appliance.system.datastore / "constraints.yaml").write_text(SEED_TABLES)
    appliance.start_worker()
    started = dispatch.deployment_start(
        manifest_path=_swapped(appliance),
        actor=Actor("user", "alice"),
        force=True,
        force_reason="bench rig",
    )
    deployment = appliance.wait_finished(started.pk)
    assert deployment.status == "succeeded", deployment.reason
    assert (deployment.who, deployment.forced_reason) == (Actor("user", "alice"), "bench rig")
    assert deployment.plan["constraints"]["first_violation"]["combination"] == "gateway-v1 + rtos-v2"

"""Declared constraints over the demo system, through the real CLI and the demo's interfaces:
the seed's two tables as `constraints.yaml` beside the topology."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, DemoSystem

SEED_TABLES = (ROOT / "tests" / "engine" / "fixtures" / "seed_constraints.yaml").read_text()
V1 = {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}
V2 = {"G13": "gateway-v2", "R456": "rtos-v2", "R998": "rtos-v2"}


@pytest.fixture
def seeded(demo: DemoSystem) -> DemoSystem:
    (demo.datastore / "constraints.yaml").write_text(SEED_TABLES)
    return demo


def manifest(demo: DemoSystem, name: str, *, gateway: tuple[str, int], rtos: tuple[str, int]) -> str:
    text = f"""\
api_version: mender/v1
kind: manifest
name: {name}
system_types_compatible: [system-core]
component_types:
  gateway:
    artifact_path: artifacts/{gateway[0]}.mender
    update_strategy: {{order: {gateway[1]}}}
  rtos:
    artifact_path: artifacts/{rtos[0]}.mender
    update_strategy: {{order: {rtos[1]}}}
"""
    (demo.system / f"{name}.yaml").write_text(text)
    return f"{name}.yaml"


def swapped(demo: DemoSystem) -> str:
    return manifest(demo, "swapped", gateway=("gateway-v2", 20), rtos=("rtos-v2", 10))


def test_gateway_10_rtos_20_passes_and_status_names_the_system(seeded: DemoSystem) -> None:
    assert "system: no component versions known yet" in seeded.run("status").stdout
    plan = seeded.run("plan", str(seeded.system / "manifest-v2.yaml"))
    assert plan.returncode == 0, plan.stderr
    assert "verdict: ok" in plan.stdout and "end state: system v.2" in plan.stdout
    result = seeded.install("manifest-v2.yaml")
    assert result.returncode == 0, result.stderr
    assert seeded.versions() == V2
    status = seeded.run("status")
    assert status.stdout.splitlines()[0].startswith("system v.2 (end_states[1], /")
    system = json.loads(seeded.run("status", "--json").stdout)["system"]
    assert (system["state"], system["system_version"]) == ("working", "v.2")


def test_swapped_orders_fail_at_the_first_step_naming_the_combination(seeded: DemoSystem) -> None:
    plan = seeded.run("plan", str(seeded.system / swapped(seeded)))
    assert plan.returncode == 2
    marked = [line for line in plan.stdout.splitlines() if "FORBIDDEN" in line]
    assert len(marked) == 1 and marked[0].startswith("order 10 ")
    assert "<-- FORBIDDEN: gateway-v1 + rtos-v2 (transition_states[0], line 9)" in marked[0]

    result = seeded.install(swapped(seeded))
    assert result.returncode == 2
    assert (
        "step 'order 10' would pass through the forbidden combination gateway-v1 + rtos-v2" in result.stderr
    )
    assert "nothing was changed" in result.stderr
    # Nothing touched: only queries ran, no version changed.
    assert seeded.versions() == V1 and seeded.timeline() == []
    assert {state for _, _, state, _ in seeded.calls()} <= {
        "Identity",
        "Provides",
        "NeedsArtifactReboot",
        "SupportsRollback",
    }
    history = json.loads(seeded.run("history", "--json").stdout)
    assert history[0]["status"] == "rejected" and "gateway-v1 + rtos-v2" in history[0]["reason"]


def test_plan_json_carries_the_path_and_the_verdict(seeded: DemoSystem) -> None:
    report = json.loads(seeded.run("plan", "--json", str(seeded.system / swapped(seeded))).stdout)
    verdict = report["constraints"]
    assert [s["step"] for s in verdict["path"]] == ["now", "order 10", "order 20", "end"]
    assert verdict["ok"] is False
    assert verdict["first_violation"]["combination"] == "gateway-v1 + rtos-v2"
    assert verdict["first_violation"]["state"] == {
        "gateway.G13": "gateway-v1",
        "rtos.R998": "rtos-v2",
        "rtos.R456": "rtos-v2",
    }
    assert report["components"][0]["key"] == "gateway.G13"  # the old report is still there


def test_a_mixed_end_state_is_refused(seeded: DemoSystem) -> None:
    mixed = manifest(seeded, "mixed", gateway=("gateway-v2", 10), rtos=("rtos-v1", 20))
    result = seeded.install(mixed)
    assert result.returncode == 2
    assert (
        "the end state (gateway.G13=gateway-v2, rtos.R998=rtos-v1, rtos.R456=rtos-v1) matches no end_states row"
        in result.stderr
    )
    assert seeded.versions() == V1


def test_a_forced_run_is_recorded_with_its_actor_and_reason(seeded: DemoSystem) -> None:
    assert seeded.install(swapped(seeded), "--force").returncode == 2  # --reason is required
    result = seeded.install(swapped(seeded), "--force", "--reason", "bench rig: RTOS boards are spares")
    assert result.returncode == 0, result.stderr
    assert "constraints violated, run anyway: forced by " in result.stdout
    assert seeded.versions() == V2
    latest = json.loads(seeded.run("history", "--json").stdout)[0]
    assert latest["status"] == "succeeded"
    assert (latest["actor"], latest["forced_reason"]) == (
        {"kind": "cli", "name": getpass.getuser(), "via": "cli", "label": f"cli {getpass.getuser()}"},
        "bench rig: RTOS boards are spares",
    )
    assert f"forced past the declared constraints by cli {getpass.getuser()}:" in seeded.run("history").stdout


def test_status_says_when_the_system_is_outside_every_working_state(seeded: DemoSystem) -> None:
    mixed = manifest(seeded, "mixed", gateway=("gateway-v2", 10), rtos=("rtos-v1", 20))
    assert seeded.install(mixed, "--force", "--reason", "half way on purpose").returncode == 0
    assert "system: outside every declared working state" in seeded.run("status").stdout


def test_suggest_order_finds_gateway_before_rtos(seeded: DemoSystem) -> None:
    result = seeded.run("plan", "--suggest-order", str(seeded.system / swapped(seeded)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["  gateway: 10", "  rtos: 20"]


def test_suggest_order_says_when_no_order_satisfies_them(seeded: DemoSystem) -> None:
    (seeded.datastore / "constraints.yaml").write_text(
        SEED_TABLES.replace("acceptable: true", "acceptable: false")
    )
    result = seeded.run("plan", "--suggest-order", str(seeded.system / "manifest-v2.yaml"))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "no order satisfies them: every grouping of gateway, rtos passes through",
        "a forbidden combination; the conflicting rows:",
        "  transition_states[0], line 9: gateway-v1 + rtos-v2 (acceptable: false)",
        "  transition_states[1], line 11: gateway-v2 + rtos-v1 (acceptable: false)",
    ]


def test_a_bad_constraints_file_stops_install_with_every_problem(seeded: DemoSystem) -> None:
    path: Path = seeded.datastore / "constraints.yaml"
    path.write_text(
        SEED_TABLES.replace("acceptable: false", "acceptable: nope").replace(
            "rtos: rtos-v1}", "rots: rtos-v1}"
        )
    )
    result = seeded.install("manifest-v2.yaml")
    assert result.returncode == 2
    assert (
        f"{path}:5: end_states[0].versions.rots: the system has no component of type 'rots'" in result.stderr
    )
    assert f"{path}:10: transition_states[0].acceptable: must be true or false" in result.stderr
    assert seeded.versions() == V1 and seeded.calls() == []


def test_the_manifest_section_wins_over_the_file(seeded: DemoSystem) -> None:
    name = swapped(seeded)
    path = seeded.system / name
    section = "\nconstraints:\n  end_states:\n    - system_version: lab\n      versions: {gateway: '*'}\n"
    path.write_text(path.read_text() + section)
    result = seeded.install(name)
    assert result.returncode == 0, result.stderr
    assert seeded.run("status").stdout.startswith("system lab ")

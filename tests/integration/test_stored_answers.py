"""`ORCH_INTERFACE_QUERIES=stored`: the production web server runs unprivileged and never calls an
update interface; its questions are answered from what the runners stored. Real CLI processes
on the demo system, one with the setting, one without."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from tests.hooks.conftest import v2_bundle
from tests.integration.conftest import DemoSystem


def _v2_bundle(demo: DemoSystem) -> Path:
    return v2_bundle(demo, demo.root / "v2.tar.gz")


def _stored(demo: DemoSystem) -> DemoSystem:
    return replace(demo, env={**demo.env, "ORCH_INTERFACE_QUERIES": "stored"})


def _add(demo: DemoSystem, bundle: Path) -> subprocess.CompletedProcess[str]:
    return demo.run("bundle", "add", str(bundle))


def test_it_checks_a_bundle_against_the_stored_answers_without_calling_an_interface(
    demo: DemoSystem,
) -> None:
    assert demo.install("manifest-v1.yaml").returncode == 0  # the run stores every answer
    calls_before = len(demo.calls())
    added = _add(_stored(demo), _v2_bundle(demo))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "[ok] compatibility: gateway.G13: gateway-v2" in added.stdout
    assert len(demo.calls()) == calls_before  # no interface was called


def test_it_rejects_a_bundle_naming_the_components_without_a_stored_answer(demo: DemoSystem) -> None:
    added = _add(_stored(demo), _v2_bundle(demo))
    assert added.returncode == 2
    assert "no answer stored yet" in added.stdout and "R998" in added.stdout
    assert demo.calls() == []


def test_it_answers_from_what_the_devices_ran_at_the_last_question(demo: DemoSystem) -> None:
    # The stored answer is what the device said then, not now: a device that changed since is
    # seen as it was (a preview); the live plan of the run itself asks again.
    assert demo.install("manifest-v1.yaml").returncode == 0
    (demo.device("R456") / "version").write_text("rtos-v2\n")
    added = _add(_stored(demo), _v2_bundle(demo))
    assert "rtos.R456: rtos-v2" in added.stdout and "installed already" not in added.stdout
    # Other bytes (a gzip header names its file): the same bytes would name the first bundle.
    live = _add(demo, v2_bundle(demo, demo.root / "v2-again.tar.gz"))
    assert "rtos.R456: rtos-v2 (installed already: skipped)" in live.stdout

"""Every migration applies and reverses, one at a time, on an empty and on a populated database
(issue 14: a failed upgrade can go back). The walks run in a subprocess on a demo appliance's own
database (SQLite, or PostgreSQL in the PostgreSQL pass), never on this process's test database."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.integration.conftest import ROOT, DemoSystem
from tests.integration.upkeep import journal_verifies, ok, populate, snapshot

OUR_APPS = ("updates.", "devices.", "accounts.")
CREATES_TABLES = {"updates.0007_journal": "journal", "updates.0002_bundles_store": "bundles"}


def _walk(demo: DemoSystem, mode: str) -> Any:
    command = [sys.executable, "-m", "tests.integration.migration_walk", mode]
    result = subprocess.run(command, env=demo.env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return json.loads(ok(result))


def test_it_applies_and_reverses_every_migration_one_at_a_time_on_an_empty_database(demo: DemoSystem) -> None:
    walk = _walk(demo, "empty")
    plan = walk["plan"]

    assert {name for name in plan if name.startswith(OUR_APPS)} >= {
        "updates.0001_initial",
        "updates.0007_journal",
        "devices.0002_shapes",
        "accounts.0001_initial",
    }
    assert sorted(step.lstrip("-") for step in walk["zero"]) == sorted(plan)
    assert walk["forward"] == [[f"+{name}"] for name in plan]
    assert walk["backward"] == [[f"-{name}"] for name in reversed(plan)]


def test_it_keeps_the_data_when_each_migration_is_reversed_and_reapplied(demo: DemoSystem) -> None:
    populate(demo)
    before = _walk(demo, "data")
    assert before["deployments"] == 2 and before["bundles"] == 1 and before["tokens"] == 1
    assert before["journal"] > 0 and before["journal_ok"]

    walk = _walk(demo, "populated")

    reversed_ours = {r["migration"] for r in walk["rounds"]}
    assert {"updates.0007_journal", "updates.0003_shapes", "devices.0002_shapes"} <= reversed_ours
    expected = dict(before)
    for round_trip in walk["rounds"]:
        assert f"-{round_trip['migration']}" in round_trip["down"]
        assert sorted(s.lstrip("-") for s in round_trip["down"]) == sorted(
            s.lstrip("+") for s in round_trip["up"]
        )
        # Unapplying a migration that created a table drops it: its rows go by design (the
        # re-created journal starts a fresh chain that verifies). Every other row survives.
        for migration, counter in CREATES_TABLES.items():
            if f"-{migration}" in round_trip["down"]:
                expected[counter] = 0
        # Unapplying the signed head drops its signature: the re-signing `migrate` journals itself.
        if "-updates.0009_seal" in round_trip["down"] and expected["journal"]:
            expected["journal"] += 1
        assert round_trip["data"] == expected, round_trip["migration"]
    assert expected["deployments"] == 2 and expected["steps"] == before["steps"]
    assert all(len(step) == 1 for step in walk["zero"] + walk["up"])  # one migration per step


def test_it_keeps_the_journal_verifying_after_a_round_trip_that_spares_it(demo: DemoSystem) -> None:
    populate(demo)
    before = snapshot(demo)
    command = [sys.executable, str(ROOT / "manage.py"), "migrate", "devices", "0001_initial", "-v", "0"]
    ok(subprocess.run(command, env=demo.env, capture_output=True, text=True, timeout=120))
    ok(demo.run("migrate"))

    assert snapshot(demo) == before
    assert journal_verifies(demo)

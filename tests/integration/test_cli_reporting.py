"""What the command line reports, read as a user reads it: the summary after a deployment,
`status`, `history`, `bundle list`, and `plan` of the same targets as `install`."""

from __future__ import annotations

import json
import re

from tests.integration.conftest import DemoSystem
from tests.integration.test_bundle_cli import _bundle


def _table(stdout: str) -> dict[str, str]:
    """The summary table after a deployment: component -> the rest of its line."""
    lines = stdout.split("component                runs now", 1)[1].splitlines()[1:]
    return {line.split()[0]: " ".join(line.split()[1:]) for line in lines if line.strip()}


def test_after_a_rollback_every_line_says_what_happened_and_what_runs(demo: DemoSystem) -> None:
    assert demo.install("manifest-v2.yaml").returncode == 0
    demo.fail("R456", "ArtifactCommit")
    result = demo.install("manifest-v3.yaml")
    assert result.returncode == 1
    # One line per event: the failure is one progress row and the summary, no log line between.
    assert "WARNING" not in result.stderr and "orchestrator.deployment" not in result.stderr, result.stderr
    assert [line for line in result.stdout.splitlines() if "FAILED" in line] == [
        "rtos.R456                ArtifactCommit                 FAILED " + line.split("FAILED ", 1)[1]
        for line in result.stdout.splitlines()
        if "FAILED" in line
    ]
    assert sum("FAILED" in line for line in result.stdout.splitlines()) == 1
    assert _table(result.stdout) == {
        "gateway.G13": "gateway-v2 back on gateway-v2; gateway-v3 rolled back",
        "rtos.R998": "rtos-v2 back on rtos-v2; rtos-v3 rolled back",
        "rtos.R456": "rtos-v2 back on rtos-v2; rtos-v3 rolled back (failed in ArtifactCommit)",
    }
    status = demo.run("status").stdout.splitlines()
    assert status[0] == "active manifest: system-core-v2"  # no previous: v1 was never installed by us
    assert status[1:4] == [
        "  gateway.G13              gateway-v2",
        "  rtos.R456                rtos-v2",
        "  rtos.R998                rtos-v2",
    ]
    assert status[4] == "in progress: none"
    assert re.fullmatch(
        r"last deployment: #2 \S+ \S+ cli \S+: system-core-v3 \(gateway-v2, rtos-v2 -> gateway-v3, rtos-v3\) "
        r"rolled back in \d+s: rtos\.R456: ArtifactCommit exited with 1: .*",
        status[5],
    ), status
    history = demo.run("history").stdout.splitlines()
    assert [line.split()[0] for line in history] == ["#2", "#1"]
    assert re.fullmatch(
        r"#1 \S+ \S+ cli \S+: system-core-v2 \(gateway-v1, rtos-v1 -> gateway-v2, rtos-v2\) succeeded in \d+s",
        history[1],
    )
    assert demo.run("history", "--limit", "1").stdout.splitlines() == history[:1]
    steps = demo.run("history", "2").stdout.splitlines()
    assert steps[0] == history[0]
    assert (
        "  rtos.R456                back on rtos-v2; rtos-v3 rolled back (failed in ArtifactCommit)" in steps
    )
    assert any(re.search(r"rtos\.R456 +ArtifactCommit +FAILED exit code 1$", s) for s in steps)
    assert any(re.search(r"rtos\.R456 +ArtifactRollback +ok$", s) for s in steps)
    one = json.loads(demo.run("history", "2", "--json").stdout)
    assert (
        one["id"] == 2
        and [o["outcome"] for o in one["outcomes"]][2] == "failed in ArtifactCommit, rolled back"
    )
    missing = demo.run("history", "9")
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "mender-orchestrator: deployment 9 does not exist",
    )


def test_status_during_a_stop_before_pause_shows_the_new_versions_uncommitted(demo: DemoSystem) -> None:
    result = demo.install("manifest-v2.yaml", "--stop-before", "ArtifactCommit")
    assert result.returncode == 0
    assert _table(result.stdout)["rtos.R456"] == (
        "rtos-v2 (uncommitted) on rtos-v2 (new, not committed; rtos-v1 before)"
    )
    status = demo.run("status").stdout
    assert "  rtos.R456                rtos-v2 (new, not committed)" in status.splitlines()
    assert (
        "in progress: deployment 1 (system-core-v2) stopped before ArtifactCommit: "
        "`resume` to continue, `rollback` to go back"
    ) in status.splitlines()
    assert "running: \n" not in status and "last deployment" not in status
    report = json.loads(demo.run("status", "--json").stdout)
    by_key = {c["key"]: c for c in report["components"]}
    assert (by_key["rtos.R456"]["version"], by_key["rtos.R456"]["running"]) == ("rtos-v1", "rtos-v2")
    assert by_key["rtos.R456"]["uncommitted"] is True and report["last"] is None
    assert (
        report["in_progress"]["status"] == "stopped" and report["in_progress"]["manifest"] == "system-core-v2"
    )


def test_plan_takes_the_targets_install_takes(demo: DemoSystem) -> None:
    assert demo.run("bundle", "list").stdout.splitlines() == [
        "no bundles yet: add one with `bundle add FILE` (or `install FILE`)"
    ]
    bundle = _bundle(demo, "v2.tar", "manifest-v2.yaml", "gateway-v2.mender", "rtos-v2.mender", gz=False)
    from_file = demo.run("plan", str(bundle))
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.startswith("bundle 1: accepted (tar,")
    assert "manifest system-core-v2 (current form)" in from_file.stdout
    by_id = json.loads(demo.run("plan", "1", "--json").stdout)
    assert [(c["key"], c["action"], c["target"]) for c in by_id["components"]] == [
        ("gateway.G13", "install", "gateway-v2"),
        ("rtos.R998", "install", "rtos-v2"),
        ("rtos.R456", "install", "rtos-v2"),
    ]
    listing = demo.run("bundle", "list").stdout.splitlines()
    assert listing[0].split() == ["id", "status", "form", "manifest", "file"]
    assert listing[1].split() == ["1", "accepted", "tar", "system-core-v2", "v2.tar"]
    unknown = demo.run("plan", "7")
    assert unknown.returncode == 2 and "bundle 7 does not exist" in unknown.stderr
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}

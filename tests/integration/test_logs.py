"""Logs of a CLI deployment (docs/logging.md): on stderr only, JSON when asked, the deployment's
id on every line of the run; a bad ORCH_LOG_FORMAT is refused in one line."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.integration.conftest import CLI, DemoSystem, build_demo

JSON_LOGS = {"ORCH_LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
STATES = {"Download", "ArtifactInstall", "ArtifactCommit", "Cleanup"}


def _install(
    demo: DemoSystem, manifest: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return _cli(demo, env, "install", str(demo.system / manifest), *args)


def _cli(demo: DemoSystem, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CLI, *args]
    base = {k: v for k, v in demo.env.items() if k not in ("ORCH_LOG_FORMAT", "LOG_LEVEL")}
    return subprocess.run(argv, env={**base, **env}, capture_output=True, text=True, timeout=120)


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line of the run is a log line here, and each must be one JSON object."""
    return [json.loads(line) for line in stderr.splitlines()]


def _comparable(stdout: str) -> list[str]:
    """The CLI's report without timings; components of a group run in parallel, so sorted."""
    return sorted(re.sub(r"\b\d+\.\d+s\b", "", line) for line in stdout.splitlines())


def _last_deployment_id(demo: DemoSystem) -> int:
    return int(json.loads(demo.run("history", "--json").stdout)[0]["id"])


def test_it_logs_a_cli_deployment_as_json_lines_that_carry_its_id(
    demo: DemoSystem, tmp_path: Path, migrated_db: Path
) -> None:
    logged = _install(demo, "manifest-v2.yaml", JSON_LOGS)
    assert logged.returncode == 0, logged.stderr
    plain = build_demo(tmp_path / "plain", migrated_db)
    unlogged = _install(plain, "manifest-v2.yaml", {})
    assert unlogged.returncode == 0 and unlogged.stderr == "", unlogged.stderr

    assert _comparable(logged.stdout) == _comparable(unlogged.stdout)  # logs never reach stdout
    lines = _json_lines(logged.stderr)
    pk = _last_deployment_id(demo)
    assert {"time", "level", "logger", "message", "process"} <= set(lines[0])
    assert all(line["time"].endswith("Z") for line in lines)
    assert lines[0]["targets"] == {"gateway": "gateway-v2", "rtos": "rtos-v2"}
    assert lines[-1]["outcome"] == "succeeded" and lines[-1]["duration_s"] > 0
    assert [line.get("deployment_id") for line in lines] == [pk] * len(lines)
    ended = {(line["component"], line["state"]) for line in lines if "exit_code" in line}
    for device in ("gateway.G13", "rtos.R456", "rtos.R998"):
        assert {(device, state) for state in STATES} <= ended


def test_it_logs_the_rollback_decision_and_the_failed_state(demo: DemoSystem) -> None:
    demo.fail("R456", "ArtifactCommit")
    result = _install(demo, "manifest-v2.yaml", JSON_LOGS)
    assert result.returncode == 1, result.stderr

    lines = _json_lines(result.stderr)
    failed = [line for line in lines if line["level"] == "WARNING" and line.get("exit_code")]
    assert [(line["component"], line["state"]) for line in failed] == [("rtos.R456", "ArtifactCommit")]
    assert any(line.get("phase") == "rollback" and line["level"] == "WARNING" for line in lines)
    assert lines[-1]["outcome"] == "rolled_back" and lines[-1]["level"] == "WARNING"


def test_it_logs_the_resumed_run_of_a_stopped_deployment_under_its_id(demo: DemoSystem) -> None:
    stopped = _install(demo, "manifest-v2.yaml", JSON_LOGS, "--stop-before", "ArtifactCommit")
    assert stopped.returncode == 0, stopped.stderr
    resumed = _cli(demo, JSON_LOGS, "resume")
    assert resumed.returncode == 0, resumed.stderr

    pk = _last_deployment_id(demo)
    first, second = _json_lines(stopped.stderr), _json_lines(resumed.stderr)
    assert first[-1]["outcome"] == "stopped" and second[-1]["outcome"] == "succeeded"
    assert {line.get("deployment_id") for line in first + second} == {pk}
    assert second[0]["actor"].startswith("cli ")
    commits = {line["component"] for line in second if line.get("state") == "ArtifactCommit"}
    assert commits == {"gateway.G13", "rtos.R456", "rtos.R998"}
    assert not any(line.get("state") == "ArtifactCommit" for line in first)


def test_it_shows_the_deployment_in_brackets_in_the_text_format(demo: DemoSystem) -> None:
    result = _install(demo, "manifest-v2.yaml", {"LOG_LEVEL": "info"})
    assert result.returncode == 0, result.stderr

    pk = _last_deployment_id(demo)
    lines = result.stderr.splitlines()
    assert lines and all(f" [deployment {pk}] " in line for line in lines), result.stderr
    assert all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING) orchestrator", x) for x in lines
    )


def test_it_refuses_an_unknown_log_format_in_one_line(demo: DemoSystem) -> None:
    result = _install(demo, "manifest-v2.yaml", {"ORCH_LOG_FORMAT": "xml"})

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "ORCH_LOG_FORMAT" in result.stderr and "text, json" in result.stderr and "'xml'" in result.stderr
    assert demo.versions() == {"G13": "gateway-v1", "R456": "rtos-v1", "R998": "rtos-v1"}

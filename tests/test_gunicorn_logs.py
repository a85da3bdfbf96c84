"""gunicorn with the appliance's config file (orchestrator_site/gunicorn_conf.py): its error
and access logs in our format, JSON when asked; a bad ORCH_LOG_FORMAT stops it at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.worker.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
CONF = "python:orchestrator_site.gunicorn_conf"


def _gunicorn(tmp_path: Path, log_format: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "gunicorn", "-c", CONF, "orchestrator_site.asgi:application"]  # as bin/run
    cmd += ["--bind", "127.0.0.1:0", "--workers", "1", "--no-control-socket", "--graceful-timeout", "2"]
    env = {**os.environ, "ORCH_LOG_FORMAT": log_format, "MENDER_ORCHESTRATOR_DATASTORE_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)


def _json(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_it_writes_gunicorns_error_and_access_logs_as_json_lines(tmp_path: Path) -> None:
    web = _gunicorn(tmp_path, "json")
    try:
        wait_for(lambda: "Booting worker" in (tmp_path / "err").read_text(), 30, (tmp_path / "err").read_text)
        listening = next(x for x in _json(tmp_path / "err") if x["message"].startswith("Listening at"))
        url = listening["message"].split()[2] + "/api/v1/health"
        try:
            urllib.request.urlopen(url, timeout=10)
        except urllib.error.HTTPError:
            pass  # no database in this data store: 503, logged all the same
        wait_for(lambda: (tmp_path / "out").read_text() != "", 10, lambda: "no access log line")
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(10)

    errors, accesses = _json(tmp_path / "err"), _json(tmp_path / "out")
    assert {x["logger"] for x in errors} >= {"gunicorn.error"}
    assert [x["logger"] for x in accesses] == ["uvicorn.access"]  # the worker class's access log
    assert "GET /api/v1/health" in accesses[0]["message"] and accesses[0]["time"].endswith("Z")


def test_it_refuses_to_start_gunicorn_with_an_unknown_log_format(tmp_path: Path) -> None:
    web = _gunicorn(tmp_path, "xml")

    assert web.wait(30) != 0
    assert "ORCH_LOG_FORMAT must be one of text, json" in (tmp_path / "err").read_text()

"""docs/audit.md: the worker and the web server write the signed anchors as log lines whatever
LOG_LEVEL is; the command line follows its own level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
import logging.config
from orchestrator_site.logs import logging_config
logging.config.dictConfig(logging_config(log_format="text", level="ERROR"))
logging.getLogger("orchestrator.audit").info("journal anchor {}")
logging.getLogger("orchestrator.deployment").info("an ordinary INFO line")
"""


def test_a_service_writes_the_anchor_lines_at_any_log_level() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVICE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert " INFO orchestrator.audit journal anchor {}" in result.stderr
    assert "ordinary" not in result.stderr

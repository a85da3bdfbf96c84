"""interface-check as a pytest plugin, for an interface maker's own test suite.

    # conftest.py
    pytest_plugins = ["updates.engine.conformance.pytest_plugin"]

    # test_my_interface.py
    def test_my_interface_conforms(interface_check):
        interface_check("interfaces/v1/modem", type="modem", id="M1", args=["M1"])

`interface_check(...)` runs the same checks as `orchestrator interface-check` and fails the test
with the text report when a check failed; it returns the `Report` for further assertions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from updates.engine.conformance import DEFAULT_SLOW, DEFAULT_TIMEOUT, Report, Subject, check_interface
from updates.engine.conformance.output import as_text


def check(
    path: str | Path,
    *,
    type: str,
    id: str | None = None,
    args: Sequence[str] = (),
    artifact: str | Path | None = None,
    destructive: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    slow: float = DEFAULT_SLOW,
) -> Report:
    """Run the checks; AssertionError with the whole text report when one failed."""
    subject = Subject(
        path=Path(path), component_type=type, component_id=id, args=tuple(args), timeout=timeout, slow=slow
    )
    report = check_interface(
        subject, artifact=None if artifact is None else Path(artifact), destructive=destructive
    )
    if report.failed:
        raise AssertionError("interface-check failed:\n" + as_text(report))
    return report


@pytest.fixture
def interface_check() -> Callable[..., Report]:
    return check

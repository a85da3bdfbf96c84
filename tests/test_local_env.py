"""The checkout's `var/local.env` (docs/environment.md §1.6): read only when the environment names
no data store, and then the environment still wins variable by variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from updates.appliance import load_local_env, paths_from_env

LINES = (
    "# Written by bin/run\n"
    "MENDER_ORCHESTRATOR_DATASTORE_DIR=/demo/data store\n"
    "MENDER_ORCHESTRATOR_DATA_DIR=/demo/share\n"
    "ORCH_REBOOT_COMMAND=true\n"
    "not a line\n"
)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "local.env").write_text(LINES)
    # A copy of the environment without the test run's own data store (tests/isolated_env.py).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MENDER_ORCHESTRATOR_", "ORCH_REBOOT"))}
    monkeypatch.setattr(os, "environ", env)
    return tmp_path


def test_without_a_data_store_in_the_environment_the_file_leads_to_the_demo(checkout: Path) -> None:
    assert load_local_env(checkout) == checkout / "var" / "local.env"
    paths = paths_from_env(checkout)
    assert paths.datastore == Path("/demo/data store")  # the value is literal to the end of the line
    assert paths.data_dir == Path("/demo/share")
    assert os.environ["ORCH_REBOOT_COMMAND"] == "true"
    assert "not a line" not in "".join(os.environ)


def test_a_variable_set_in_the_environment_wins_over_the_file(checkout: Path) -> None:
    os.environ["ORCH_REBOOT_COMMAND"] = "echo reboot"
    load_local_env(checkout)
    assert os.environ["ORCH_REBOOT_COMMAND"] == "echo reboot"
    assert os.environ["MENDER_ORCHESTRATOR_DATA_DIR"] == "/demo/share"


def test_a_data_store_named_in_the_environment_ignores_the_whole_file(checkout: Path) -> None:
    os.environ["MENDER_ORCHESTRATOR_DATASTORE_DIR"] = "/elsewhere"
    assert load_local_env(checkout) is None
    assert "MENDER_ORCHESTRATOR_DATA_DIR" not in os.environ and "ORCH_REBOOT_COMMAND" not in os.environ
    assert paths_from_env(checkout).datastore == Path("/elsewhere")


def test_no_file_means_the_defaults(checkout: Path) -> None:
    (checkout / "var" / "local.env").unlink()
    assert load_local_env(checkout) is None
    assert paths_from_env(checkout).datastore == checkout / "var" / "lib" / "mender-orchestrator"

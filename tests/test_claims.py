"""Owner tokens across hosts (updates/liveness.py): this host's owners are checked by their
process, another host's by that host's heartbeats in the shared data store."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from updates.engine.sessions import start_time
from updates.liveness import (
    OWNERS,
    TEST_HOST_ID,
    heartbeat_write,
    heartbeats_dir,
    host_alive,
    host_id,
    owner_alive,
    owner_host,
    owner_pid,
    owner_token,
)

FAR = "far-host.test"


@pytest.fixture
def datastore(tmp_path: Path, settings: Any) -> Path:
    settings.DATASTORE_DIR = tmp_path
    return tmp_path


def _far_beat(monkeypatch: pytest.MonkeyPatch, *, folder: str = "workers") -> Path:
    with monkeypatch.context() as patched:
        patched.setenv(TEST_HOST_ID, FAR)
        heartbeat_write(name=f"w@{FAR}", broker="redis", started_at=datetime.now(UTC), folder=folder)
    return heartbeats_dir(folder) / f"w@{FAR}.json"


def _age(path: Path, seconds: float) -> None:
    beat = json.loads(path.read_text())
    path.write_text(json.dumps({**beat, "beat_at": beat["beat_at"] - seconds}))


def test_it_names_this_host_in_its_tokens_and_reads_old_tokens_as_this_hosts() -> None:
    token = owner_token()
    assert owner_host(token) == host_id() and owner_alive(token)
    assert owner_pid(token) == str(os.getpid())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    old = f"{boot}:{os.getpid()}:{start_time(os.getpid())}"
    assert owner_host(old) == host_id() and owner_alive(old) and owner_pid(old) == str(os.getpid())
    assert not owner_alive(f"another-boot:{os.getpid()}:{start_time(os.getpid())}")  # a previous boot
    assert not owner_alive("garbage") and not owner_alive("")


def test_it_counts_another_hosts_owner_alive_while_that_host_beats(
    datastore: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"{FAR}/some-boot:1:1"  # its pid and boot mean nothing here
    assert not owner_alive(token)  # no beat of that host at all
    beat = _far_beat(monkeypatch)
    assert owner_alive(token) and host_alive(FAR)
    _age(beat, 60)
    assert not owner_alive(token)


def test_a_command_line_run_beats_for_its_host(datastore: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beat = _far_beat(monkeypatch, folder=OWNERS)
    assert owner_alive(f"{FAR}/b:1:1")
    _age(beat, 60)
    assert not owner_alive(f"{FAR}/b:1:1")


def test_the_owner_beats_stop_and_go_with_the_run_and_old_ones_are_pruned(
    datastore: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from updates.liveness import owner_beats

    _age(_far_beat(monkeypatch, folder=OWNERS), 7200)  # a run killed two hours ago
    with owner_beats():
        beats = list(heartbeats_dir(OWNERS).glob("*.json"))
        assert len(beats) == 1 and json.loads(beats[0].read_text())["hostname"] == host_id()
    assert not list(heartbeats_dir(OWNERS).glob("*.json"))

"""Which Celery workers are alive: each one writes a heartbeat file, `live_workers` reads them.

A worker's consumer rewrites `<datastore>/workers/<node name>.json` every HEARTBEAT_SECONDS while
it is connected to its broker (worker/heartbeat.py), and removes it on a clean shutdown. A file
and not a database row: it works the same for both brokers and both databases, and a heartbeat
never waits on SQLite's single writer (a deployment writing its steps) nor adds writes to it.
The data store is shared by everything on the appliance already (topology, artifacts).

A worker is live when its last beat is at most `within_seconds` old and, when it runs on this
host, its process (boot id, pid and start time, as in updates/claims.py) still exists: a worker
killed with SIGKILL drops out at once, one on another host (a container) after the window.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from updates.claims import owner_alive, owner_token

HEARTBEAT_SECONDS = 2.0
LIVE_WITHIN_SECONDS = 10.0  # five beats: a busy machine may delay a few


@dataclass(frozen=True)
class WorkerBeat:
    """One worker's last heartbeat."""

    name: str  # the Celery node name, e.g. celery@host
    hostname: str
    pid: int
    broker: str  # the transport: "redis", "filesystem"
    started_at: datetime
    beat_at: datetime
    owner: str  # <boot id>:<pid>:<start time> of the worker's main process


def heartbeats_dir() -> Path:
    return Path(settings.DATASTORE_DIR) / "workers"


def _path(name: str) -> Path:
    return heartbeats_dir() / f"{name.replace('/', '_')}.json"


def heartbeat_write(*, name: str, broker: str, started_at: datetime) -> None:
    """Record that the worker `name` (this process) is alive now; replaces its earlier beat whole."""
    beat = {
        "name": name,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "broker": broker,
        "started_at": started_at.timestamp(),
        "beat_at": time.time(),
        "owner": owner_token(),
    }
    path = _path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(beat))
    tmp.replace(path)  # readers see the old beat or the new one, never half of one


def heartbeat_remove(*, name: str) -> None:
    _path(name).unlink(missing_ok=True)


def live_workers(*, within_seconds: float = LIVE_WITHIN_SECONDS) -> list[WorkerBeat]:
    """The workers that beat within the last `within_seconds` and are not known to be dead."""
    found = []
    now, here = time.time(), socket.gethostname()
    for path in sorted(heartbeats_dir().glob("*.json")):
        beat = _read(path)
        if beat is None or now - beat.beat_at.timestamp() > within_seconds:
            continue
        if beat.hostname == here and not owner_alive(beat.owner):
            continue  # killed since its last beat
        found.append(beat)
    return found


def _read(path: Path) -> WorkerBeat | None:
    try:
        raw = json.loads(path.read_text())
        return WorkerBeat(
            name=str(raw["name"]),
            hostname=str(raw["hostname"]),
            pid=int(raw["pid"]),
            broker=str(raw["broker"]),
            started_at=datetime.fromtimestamp(float(raw["started_at"]), UTC),
            beat_at=datetime.fromtimestamp(float(raw["beat_at"]), UTC),
            owner=str(raw["owner"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # removed meanwhile, or not ours: no live worker there

"""Which Celery workers are alive: each one writes a heartbeat file, `live_workers` reads them.

A worker's consumer rewrites `<datastore>/workers/<node name>.json` every HEARTBEAT_SECONDS while
it is connected to its broker (worker/heartbeat.py), and removes it on a clean shutdown. A file
and not a database row: it works the same for both brokers and both databases, and a heartbeat
never waits on SQLite's single writer (a deployment writing its steps) nor adds writes to it.
The data store is shared by everything on the appliance already (topology, artifacts).

A worker is live when its last beat is at most `within_seconds` old and, when it runs on this
host, its process (boot id, pid and start time, as in updates/claims.py) still exists: a worker
killed with SIGKILL drops out at once, one on another host (a container) after the window.

The same beats tell whether another host is alive (`host_alive`), which is how an owner token
of another machine is judged (updates/claims.py): with workers on several machines the data
store is shared (an NFS mount: artifacts, work dirs and these beats), and every beat says its
host. Their clocks must agree (NTP) to well within the window.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from updates.claims import host_id, owner_alive, owner_token

HEARTBEAT_SECONDS = 2.0
LIVE_WITHIN_SECONDS = 10.0  # five beats: a busy machine may delay a few


@dataclass(frozen=True)
class WorkerBeat:
    """One worker's last heartbeat."""

    name: str  # the Celery node name, e.g. celery@host
    hostname: str  # claims.host_id() of the machine it runs on
    pid: int
    broker: str  # the transport: "redis", "filesystem"
    started_at: datetime
    beat_at: datetime
    owner: str  # <boot id>:<pid>:<start time> of the worker's main process


WORKERS, OWNERS = "workers", "owners"


def heartbeats_dir(folder: str = WORKERS) -> Path:
    return Path(settings.DATASTORE_DIR) / folder


def _path(name: str, folder: str = WORKERS) -> Path:
    return heartbeats_dir(folder) / f"{name.replace('/', '_')}.json"


def heartbeat_write(*, name: str, broker: str, started_at: datetime, folder: str = WORKERS) -> None:
    """Record that the worker `name` (this process) is alive now; replaces its earlier beat whole.
    `folder` OWNERS: a run (`owner_beats`), which beats for its host but is no worker."""
    beat = {
        "name": name,
        "hostname": host_id(),
        "pid": os.getpid(),
        "broker": broker,
        "started_at": started_at.timestamp(),
        "beat_at": time.time(),
        "owner": owner_token(),
    }
    path = _path(name, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(beat))
    tmp.replace(path)  # readers see the old beat or the new one, never half of one


def heartbeat_remove(*, name: str, folder: str = WORKERS) -> None:
    _path(name, folder).unlink(missing_ok=True)


@contextmanager
def owner_beats() -> Iterator[None]:
    """Beat for this host while this process owns something (a command-line run owns a
    deployment, a web request ingests a bundle), so that another machine does not take it for
    dead on a host without a worker: the boot-time `resume --interrupted` runs before the worker
    starts, and the web server may run on a machine of its own."""
    name = f"owner-{os.getpid()}-{uuid.uuid4().hex[:8]}@{host_id()}"  # one per run, nested too
    started, stop = datetime.now(UTC), threading.Event()

    def beat() -> None:
        with contextlib.suppress(OSError):  # a full disk must not stop the deployment
            heartbeat_write(name=name, broker="none", started_at=started, folder=OWNERS)

    def beating() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            beat()

    _owners_prune()
    beat()  # before the run claims anything
    thread = threading.Thread(target=beating, name="owner-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        heartbeat_remove(name=name, folder=OWNERS)


def _owners_prune(*, older_than: float = 3600.0) -> None:
    """A killed run leaves its last beat behind: remove those of an hour ago and more."""
    for path in heartbeats_dir(OWNERS).glob("*.json"):
        beat = _read(path)
        if beat is not None and time.time() - beat.beat_at.timestamp() > older_than:
            path.unlink(missing_ok=True)


def live_workers(*, within_seconds: float = LIVE_WITHIN_SECONDS) -> list[WorkerBeat]:
    """The workers that beat within the last `within_seconds` and are not known to be dead."""
    found = []
    here = host_id()
    for beat in _fresh_beats(within_seconds):
        if beat.hostname == here and not owner_alive(beat.owner):
            continue  # killed since its last beat
        found.append(beat)
    return found


def host_alive(host: str, *, within_seconds: float = LIVE_WITHIN_SECONDS) -> bool:
    """Whether a worker, or a command-line run, on `host` beat within the window: what another
    machine's owner token is judged by, since its processes cannot be looked at from here."""
    beats = _fresh_beats(within_seconds) + _fresh_beats(within_seconds, OWNERS)
    return any(beat.hostname == host for beat in beats)


def _fresh_beats(within_seconds: float, folder: str = WORKERS) -> list[WorkerBeat]:
    now = time.time()
    beats = (_read(path) for path in sorted(heartbeats_dir(folder).glob("*.json")))
    return [b for b in beats if b is not None and now - b.beat_at.timestamp() <= within_seconds]


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

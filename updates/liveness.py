"""Who is alive: the owner of a deployment, the workers, and the hosts they run on.

## Owner tokens

Who runs a deployment: an owner token that survives in the row and can be checked later.

The token is `<host>/<boot id>:<pid>:<process start time>`, so a later process can tell a live
owner from one that died (killed, power cut, host reboot) even if the PID was reused since.
Tokens written before the host part existed (`<boot id>:<pid>:<start>`) are read as this host's.

On this host the process itself is checked. A token of another host (workers on several
machines sharing one database) cannot be checked that way: a different boot id there is not a
previous boot. Such an owner counts as alive while its host beats (the worker heartbeats
below, in the shared data store), and as dead once they went stale.

## Heartbeats

Which Celery workers are alive: each one writes a heartbeat file, `live_workers` reads them.

A worker's consumer rewrites `<datastore>/workers/<node name>.json` every HEARTBEAT_SECONDS while
it is connected to its broker (worker/heartbeat.py), and removes it on a clean shutdown. A file
and not a database row: it works the same for both brokers and both databases, and a heartbeat
never waits on SQLite's single writer (a deployment writing its steps) nor adds writes to it.
The data store is shared by everything on the appliance already (topology, artifacts).

A worker is live when its last beat is at most `within_seconds` old and, when it runs on this
host, its process (its owner token, above) still exists: a worker
killed with SIGKILL drops out at once, one on another host (a container) after the window.

The same beats tell whether another host is alive (`host_alive`), which is how an owner token
of another machine is judged (above): with workers on several machines the data
store is shared (an NFS mount: artifacts, work dirs and these beats), and every beat says its
host. Their clocks must agree (NTP) to well within the window.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from updates.engine.sessions import SESSION_LOG, session_members, start_time

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# Test-only: another machine lies outside this one, so the tests simulate one by giving a worker
# process another host id. Never set it in production (two hosts with one id would each take
# the other's processes for their own, and find them dead).
TEST_HOST_ID = "ORCH_TEST_HOST_ID"


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown-boot"


def host_id() -> str:
    """This machine's name in owner tokens and heartbeats."""
    return os.environ.get(TEST_HOST_ID) or socket.gethostname()


def owner_token() -> str:
    pid = os.getpid()
    return f"{host_id()}/{_boot_id()}:{pid}:{start_time(pid)}"


def owner_host(token: str) -> str:
    """The host in a token; this host for the old 3-part tokens."""
    host, slash, _ = token.rpartition("/")
    return host if slash else host_id()


def owner_alive(token: str) -> bool:
    try:
        boot, pid, start = token.rpartition("/")[2].split(":")
    except ValueError:
        return False
    host = owner_host(token)
    if host != host_id():
        return host_alive(host)
    return boot == _boot_id() and start_time(int(pid)) == start


def owner_pid(token: str) -> str:
    """The PID in an owner token, for messages ("?" when the token is not one)."""
    parts = token.rpartition("/")[2].split(":")
    return parts[1] if len(parts) == 3 else "?"


# ----- leftovers of a dead runner ----------------------------------------------------------------
# Interface calls run in their own session (so a timeout can kill a whole group); the flip side
# is that they outlive an orchestrator that is SIGKILLed or crashes. The one who takes over a
# dead runner's deployment ends them first, as a power cut would have: a leftover must never
# run next to the resumed flow (e.g. an old ArtifactInstall finishing after ArtifactRollback).
# Every call of a deployment runs with its cwd inside the deployment's work dir, and in a session
# recorded in the work dir's session log when it started: that is how they are found, also a
# child that double-forked and left the work dir (`updates.engine.sessions`).

LEFTOVER_GRACE = 5.0


def leftover_calls(work_dir: Path) -> list[int]:
    """PIDs of live processes whose working directory is inside `work_dir`, or that belong to a
    session or process group recorded in its session log."""
    if not str(work_dir).strip():
        return []  # never "the current directory"
    found = set(session_members(Path(work_dir) / SESSION_LOG))
    root = os.path.realpath(work_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:  # gone, a zombie, or not ours to inspect
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.add(int(entry.name))
    return sorted(found)


def stop_leftover_calls(work_dir: Path, *, grace: float = LEFTOVER_GRACE) -> list[int]:
    """End the leftover calls in `work_dir`: SIGTERM to their process groups (the interface may
    clean up), SIGKILL to whatever is left after `grace`. Returns the PIDs found."""
    pids = leftover_calls(work_dir)
    _signal_groups(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while leftover_calls(work_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_groups(leftover_calls(work_dir), signal.SIGKILL)
    return pids


def _signal_groups(pids: list[int], sig: signal.Signals) -> None:
    own = os.getpgrp()
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group != own:
                os.killpg(group, sig)
        except OSError:  # already gone
            continue


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

"""Webhook test helpers: Mender-shaped bodies, their signatures, the demo appliance in-process
(settings pointed at a demo system, the test database of pytest-django), a loopback file server."""

from __future__ import annotations

import http.server
import json
import tarfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import DemoSystem
from tests.worker.conftest import (  # fixtures: the demo, its database file, real workers
    appliance,
    broker,
    demo,
    migrated_db,
)
from updates.actors import SYSTEM
from updates.engine.hooks import signature
from updates.services.hook_secret import hook_secret_set

__all__ = ["appliance", "broker", "demo", "migrated_db"]

SECRET = "6d656e6465722d776562686f6f6b2d7365637265742d666f722d746573747321"
DEVICE = "6543b2c8f1e2d3a4b5c6d7e8"
URL = "/api/v1/hooks/mender"


def mender_event(
    kind: str, data: dict[str, Any], *, event_id: str = "", when: datetime | None = None
) -> bytes:
    """A body as Mender's iot-manager marshals model.WebhookEvent (Go: RFC 3339, nanoseconds)."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    doc = {
        "id": event_id or str(uuid.uuid4()),
        "type": kind,
        "data": data,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers Mender sends with a signed webhook."""
    return {"X-Men-Signature": signature(secret, body), "X-Men-Algorithm": "MEN-HMAC-SHA256-Payload"}


def status_changed(device: str = DEVICE, **kw: Any) -> bytes:
    return mender_event("device-status-changed", {"id": device, "status": "accepted"}, **kw)


def v2_bundle(demo: DemoSystem, out: Path) -> Path:
    """The demo's v2 manifest and artifacts as a .tar.gz bundle."""
    with tarfile.open(out, "w:gz") as tar:
        tar.add(demo.system / "manifest-v2.yaml", "manifest-v2.yaml")
        for name in ("gateway-v2.mender", "rtos-v2.mender"):
            tar.add(demo.system / "artifacts" / name, f"artifacts/{name}")
    return out


def stale(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


@pytest.fixture
def secret(settings: Any, tmp_path: Path) -> str:
    settings.DATASTORE_DIR = tmp_path / "datastore"
    settings.CONF_DIR = tmp_path / "conf"
    settings.MENDER_DEVICE_ID = ""
    hook_secret_set(secret=SECRET, actor=SYSTEM)
    return SECRET


@pytest.fixture
def system(demo: DemoSystem, settings: Any) -> DemoSystem:
    """The demo system's paths as this process's settings, with the hook secret set."""
    settings.DATASTORE_DIR = demo.datastore
    settings.TOPOLOGY_DIR = demo.datastore
    settings.DATA_DIR = demo.root / "share"
    settings.CONF_DIR = demo.root / "conf"
    settings.REBOOT_COMMAND = demo.env["ORCH_REBOOT_COMMAND"]
    settings.MENDER_DEVICE_ID = ""
    hook_secret_set(secret=SECRET, actor=SYSTEM)
    return demo


@dataclass
class FileServer:
    root: Path
    url: str
    requests: list[str]


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    """Plain http on 127.0.0.1 (allowed on loopback only), serving a directory."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield FileServer(root, f"http://127.0.0.1:{server.server_address[1]}", requests)
    server.shutdown()
    server.server_close()

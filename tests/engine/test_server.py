"""The artifact-server client against a real HTTPS server on 127.0.0.1 speaking the Mender
device API subset (docs/protocol.md §6.2): list by release name and device type, download link,
file with Range support, plus injected faults."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from updates.engine.artifact import Limits, read_artifact, write_artifact
from updates.engine.server import ArtifactServer, ServerError, ServerSettings
from updates.engine.store import ArtifactStore
from updates.engine.transfer import transfer_watch

TOKEN = "device-jwt"
LIST = "/api/devices/v1/deployments/artifacts"


@dataclass
class FakeMender:
    """State of the test server: artifacts by id, and the faults to inject."""

    files: dict[str, bytes] = field(default_factory=dict)
    listing: list[dict[str, object]] = field(default_factory=list)
    drop_after: int | None = None  # a download sends this many bytes, then hangs up
    drop_on: int = 1  # ... the drop_on-th download from the start (not a Range request)
    downloads: int = 0  # downloads from the start so far
    fail_503: int = 0  # next N list calls answer 503
    fail_500: int = 0  # next N list calls answer 500
    ranges: list[str] = field(default_factory=list)
    auth_seen: list[str] = field(default_factory=list)

    def add(self, artifact_id: str, path: Path, **extra: object) -> None:
        info = read_artifact(path)
        self.files[artifact_id] = path.read_bytes()
        self.listing.append(
            {
                "id": artifact_id,
                "name": info.name,
                "device_types_compatible": list(info.device_types),
                "artifact_provides": info.all_provides(),
                "size": path.stat().st_size,
                "updates": [
                    {
                        "type_info": {"type": info.payload_type},
                        "files": [{"name": f.name, "checksum": f.sha256} for f in info.files],
                    }
                ],
                **extra,
            }
        )


def _handler(state: FakeMender) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            state.auth_seen.append(self.headers.get("Authorization", ""))
            if url.path.startswith("/files/"):
                return self._file(url.path.removeprefix("/files/"))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._json(401, {"error": "unauthorized"})
            if url.path == LIST:
                return self._list(urllib.parse.parse_qs(url.query))
            artifact_id = url.path.removeprefix(LIST + "/").removesuffix("/download")
            if artifact_id not in state.files:
                return self._json(404, {"error": "not found"})
            # Another origin than the API's (like S3 behind a real server): gets no token.
            host = f"https://localhost:{cast(tuple[str, int], self.server.server_address)[1]}"
            return self._json(
                200,
                {"uri": f"{host}/files/{artifact_id}?X-Signature=secret", "expire": "2099-01-01T00:00:00Z"},
            )

        def _list(self, query: dict[str, list[str]]) -> None:
            if state.fail_503 > 0:
                state.fail_503 -= 1
                return self._json(503, {"error": "busy"})
            if state.fail_500 > 0:
                state.fail_500 -= 1
                return self._json(500, {"error": "internal"})
            name, dtype = query["release_name"][0], query["device_type"][0]
            found = [a for a in state.listing if a["name"] == name and dtype in a["device_types_compatible"]]  # type: ignore[operator]
            return self._json(200, found)

        def _file(self, artifact_id: str) -> None:
            data = state.files.get(artifact_id)
            if data is None:
                return self._json(404, {"error": "gone"})
            start = 0
            if rng := self.headers.get("Range"):
                state.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").removesuffix("-"))
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            state.downloads += 0 if start else 1
            if state.drop_after is not None and not start and state.downloads >= state.drop_on:
                self.wfile.write(data[: state.drop_after])
                state.drop_after = None
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:])

        def _json(self, status: int, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Running:
    url: str
    ca: Path
    state: FakeMender

    def client(self, **kw: object) -> ArtifactServer:
        settings = ServerSettings(
            url=self.url, token=TOKEN, timeout=5, retries=3, backoff=0.01, cafile=self.ca
        )
        for key, value in kw.items():
            object.__setattr__(settings, key, value)
        return ArtifactServer(settings)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    cert, key = _certificate(tmp_path)
    state = FakeMender()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Running(f"https://127.0.0.1:{httpd.server_address[1]}", cert, state)
    httpd.shutdown()
    httpd.server_close()


def _build(tmp_path: Path, name: str, payload: bytes, dtype: str = "rtos") -> Path:
    (tmp_path / f"{name}.bin").write_bytes(payload)
    out = tmp_path / f"{name}.mender"
    write_artifact(
        out,
        kind="module-image",
        name=name,
        device_types=[dtype],
        payload_type=dtype,
        files=[tmp_path / f"{name}.bin"],
        compression="none",
    )
    return out


def test_it_lists_a_release_for_a_device_type(server: Running, tmp_path: Path) -> None:
    server.state.add("a1", _build(tmp_path, "rtos-v3", b"x"))
    server.state.add("a2", _build(tmp_path, "rtos-v3", b"y", dtype="gateway"))
    found = server.client().list_artifacts(release_name="rtos-v3", device_type="rtos")
    assert [a.id for a in found] == ["a1"]
    assert server.state.auth_seen == [f"Bearer {TOKEN}"]


def test_it_ignores_artifacts_without_provides(server: Running, tmp_path: Path) -> None:
    server.state.add("a1", _build(tmp_path, "rtos-v3", b"x"), artifact_provides={})
    assert server.client().list_artifacts(release_name="rtos-v3", device_type="rtos") == []


def test_it_downloads_into_the_store_verified(server: Running, tmp_path: Path) -> None:
    path = _build(tmp_path, "rtos-v3", b"payload" * 1000)
    server.state.add("a1", path)
    client = server.client()
    [remote] = client.list_artifacts(release_name="rtos-v3", device_type="rtos")
    stored, info = client.fetch(remote, ArtifactStore(tmp_path / "store"), keys=(), limits=Limits())
    assert stored.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and info.name == "rtos-v3"
    # the signed link is on another origin: the device token must not travel to it
    assert server.state.auth_seen[-1] == ""


def test_it_resumes_a_download_dropped_in_the_middle(server: Running, tmp_path: Path) -> None:
    path = _build(tmp_path, "rtos-v3", bytes(range(256)) * 4096)
    server.state.add("a1", path)
    server.state.drop_after = 300_000
    client = server.client()
    [remote] = client.list_artifacts(release_name="rtos-v3", device_type="rtos")
    seen: list[tuple[str, int, int | None]] = []
    with transfer_watch(lambda *report: seen.append(report)):  # what a terminal's progress line gets
        stored, _ = client.fetch(remote, ArtifactStore(tmp_path / "store"), keys=(), limits=Limits())
    assert stored.path.read_bytes() == path.read_bytes()
    size = path.stat().st_size
    assert seen[-1] == (seen[0][0], size, size)
    assert seen[0][0].startswith("download https://") and seen[0][0].endswith("/files/a1")  # no query
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)  # on across the resume
    assert len(server.state.ranges) == 1 and server.state.ranges[0].startswith("bytes=")
    assert int(server.state.ranges[0][6:-1]) > 0


def test_it_refuses_an_artifact_whose_checksum_is_not_the_listed_one(server: Running, tmp_path: Path) -> None:
    server.state.add("a1", _build(tmp_path, "rtos-v3", b"real"))
    server.state.listing[0]["updates"] = [{"files": [{"name": "rtos-v3.bin", "checksum": "0" * 64}]}]
    client = server.client()
    store = ArtifactStore(tmp_path / "store")
    [remote] = client.list_artifacts(release_name="rtos-v3", device_type="rtos")
    with pytest.raises(ServerError, match=r"checksum of payload file 'rtos-v3\.bin'"):
        client.fetch(remote, store, keys=(), limits=Limits())
    assert store.entries() == [] and list(store.tmp_dir.iterdir()) == []


def test_it_refuses_a_corrupted_download(server: Running, tmp_path: Path) -> None:
    from updates.engine.artifact import ChecksumError

    path = _build(tmp_path, "rtos-v3", b"A" * 4096)
    server.state.add("a1", path)
    server.state.files["a1"] = path.read_bytes().replace(b"A" * 64, b"B" * 64, 1)
    client = server.client()
    [remote] = client.list_artifacts(release_name="rtos-v3", device_type="rtos")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        client.fetch(remote, ArtifactStore(tmp_path / "store"), keys=(), limits=Limits())


def test_it_reports_a_404_without_retrying(server: Running, tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"/api/devices/v1/deployments/artifacts/nope/download: HTTP 404"):
        server.client().download_uri("nope")
    assert len(server.state.auth_seen) == 1


def test_it_retries_a_busy_server_with_back_off(server: Running, tmp_path: Path) -> None:
    server.state.add("a1", _build(tmp_path, "rtos-v3", b"x"))
    server.state.fail_503 = 2
    sleeps: list[float] = []
    client = server.client()
    client.sleep = sleeps.append
    assert len(client.list_artifacts(release_name="rtos-v3", device_type="rtos")) == 1
    assert sleeps == [0.01, 0.02]


def test_it_gives_up_after_the_configured_retries(server: Running) -> None:
    server.state.fail_503 = 10
    client = server.client(retries=1)
    client.sleep = lambda s: None
    with pytest.raises(ServerError, match="HTTP 503"):
        client.list_artifacts(release_name="x", device_type="rtos")


def test_it_verifies_the_server_certificate(server: Running) -> None:
    client = ArtifactServer(ServerSettings(url=server.url, token=TOKEN, retries=0, timeout=5))
    with pytest.raises(ServerError, match="CERTIFICATE_VERIFY_FAILED"):
        client.list_artifacts(release_name="x", device_type="rtos")


def test_it_needs_the_token(server: Running) -> None:
    with pytest.raises(ServerError, match="HTTP 401"):
        server.client(token="").list_artifacts(release_name="x", device_type="rtos")


def test_it_refuses_plain_http_except_on_loopback() -> None:
    with pytest.raises(ServerError, match="must be an https:// URL"):
        ArtifactServer(ServerSettings(url="http://updates.example.com"))
    ArtifactServer(ServerSettings(url="http://127.0.0.1:9"))

"""Artifact server client: the Mender device API subset of docs/protocol.md §6.2.

``GET /api/devices/v1/deployments/artifacts?release_name=&device_type=`` lists a release's
artifacts; ``GET .../artifacts/{id}/download`` returns ``{uri, expire}``; the uri serves the file
(with ``Range``). Downloads stream straight into the artifact store through `store_artifact`, so
they are verified while written and named only when complete. A dropped connection resumes where
it stopped (``Range: bytes=N-``); refused, unreachable or slow servers are retried with back-off.
stdlib only (urllib); TLS certificates and host names are always verified.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from updates.engine.artifact import ArtifactInfo, ArtifactReader, Limits, PublicKey
from updates.engine.bundle import CHUNK, store_artifact
from updates.engine.errors import UnavailableError
from updates.engine.store import ArtifactStore, StoredObject
from updates.engine.streaming import Recording, StreamRef
from updates.engine.transfer import transfer_report

LIST_PATH = "/api/devices/v1/deployments/artifacts"
MAX_JSON_BYTES = 8 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


class ServerError(UnavailableError):
    """The artifact server could not give us a usable artifact; names the URL or artifact."""

    def __init__(self, reason: str, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)


@dataclass(frozen=True)
class ServerSettings:
    url: str
    token: str = ""
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    cafile: Path | None = None


@dataclass(frozen=True)
class RemoteArtifact:
    id: str
    name: str
    size: int | None
    device_types: tuple[str, ...]
    provides: Mapping[str, str]
    checksums: Mapping[str, str] = field(default_factory=dict)  # payload file name -> sha256


class ArtifactServer:
    def __init__(self, settings: ServerSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.base = _check_url(settings.url.rstrip("/"))
        self.sleep = sleep
        self.context = ssl.create_default_context(cafile=str(settings.cafile) if settings.cafile else None)
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context), _CheckedRedirects()
        )

    # -- API calls ---------------------------------------------------------------------------------

    def list_artifacts(self, *, release_name: str, device_type: str) -> list[RemoteArtifact]:
        """The release's artifacts for this device type; without provides: dropped (docs/protocol.md §3.1)."""
        query = urllib.parse.urlencode({"release_name": release_name, "device_type": device_type})
        data = self._json(f"{self.base}{LIST_PATH}?{query}")
        if not isinstance(data, list):
            raise ServerError("artifact list is not a JSON array", LIST_PATH)
        found = [_remote(item, LIST_PATH) for item in data]
        return [a for a in found if a.provides and device_type in a.device_types and a.name == release_name]

    def download_uri(self, artifact_id: str) -> str:
        path = f"{LIST_PATH}/{urllib.parse.quote(artifact_id, safe='')}/download"
        link = self._json(self.base + path)
        uri = link.get("uri") if isinstance(link, dict) else None
        if not isinstance(uri, str) or not uri:
            raise ServerError("download link answer has no 'uri'", path)
        return urllib.parse.urljoin(self.base + "/", uri)

    def fetch(
        self, artifact: RemoteArtifact, store: ArtifactStore, *, keys: Sequence[PublicKey], limits: Limits
    ) -> tuple[StoredObject, ArtifactInfo]:
        """Download into the store, verifying while writing; resumes after dropped connections."""
        body = _ResumingBody(self, self.download_uri(artifact.id), artifact.size)
        label = f"artifact {artifact.name!r} (server id {artifact.id})"
        return store_artifact(
            body,  # type: ignore[arg-type]  # a readable byte stream
            store,
            keys=keys,
            limits=limits,
            label=label,
            expected_size=artifact.size,
            accept=lambda info: _check_listing(artifact, info, label),
        )

    def read_head(
        self, artifact: RemoteArtifact, *, keys: Sequence[PublicKey]
    ) -> tuple[StreamRef, ArtifactInfo]:
        """The artifact's header, verified, and its first bytes for the plan; the rest is not
        downloaded (it streams at Download: `stream`)."""
        body = _ResumingBody(self, self.download_uri(artifact.id), artifact.size)
        recording = Recording(body)  # type: ignore[arg-type]  # a readable byte stream
        label = f"artifact {artifact.name!r} (server id {artifact.id})"
        try:
            info = ArtifactReader(recording, keys=keys).read_header()  # type: ignore[arg-type]
        finally:
            body.close()
        _check_listing(artifact, info, label)
        ref = StreamRef(self.base, artifact.id, artifact.name, body.size, bytes(recording.seen))
        return ref, info

    def stream(self, artifact_id: str, size: int | None) -> _ResumingBody:
        """The artifact's bytes from the start, over a fresh download link; connected already,
        so `size` is known from the answer when the listing did not give it."""
        body = _ResumingBody(self, self.download_uri(artifact_id), size)
        body.connect()
        return body

    # -- HTTP ------------------------------------------------------------------------------------

    def _json(self, url: str) -> Any:
        with self._retrying(lambda: self._open(url, 0), url) as response:
            raw = response.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise ServerError(f"answer larger than {MAX_JSON_BYTES} bytes", _path(url))
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ServerError(f"answer is not JSON ({exc})", _path(url))

    def _open(self, url: str, offset: int) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers=self._headers(url, offset))
        response = self.opener.open(request, timeout=self.settings.timeout)
        assert isinstance(response, http.client.HTTPResponse)
        return response

    def _headers(self, url: str, offset: int) -> dict[str, str]:
        headers = {"Accept": "application/json, application/octet-stream"}
        # The token goes to our server only, never to a signed link on another host (e.g. S3).
        if self.settings.token and _origin(url) == _origin(self.base):
            headers["Authorization"] = f"Bearer {self.settings.token}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        return headers

    def _retrying(
        self, attempt: Callable[[], http.client.HTTPResponse], url: str
    ) -> http.client.HTTPResponse:
        """Transient failures (connection, timeout, 5xx, 429) are retried; other errors are not."""
        for number in range(self.settings.retries + 1):
            try:
                return attempt()
            except urllib.error.HTTPError as exc:
                if exc.code not in _RETRY_STATUS or number == self.settings.retries:
                    raise ServerError(f"HTTP {exc.code} {exc.reason}", _path(url))
            except _TRANSIENT as exc:
                if number == self.settings.retries:
                    raise ServerError(f"unreachable after {number + 1} attempts ({_reason(exc)})", _path(url))
            self.backoff(number)
        raise AssertionError("unreachable")

    def backoff(self, number: int) -> None:
        self.sleep(min(self.settings.backoff * (2**number), 30.0))


class _ResumingBody:
    """A download as one byte stream; a dropped connection is resumed with a Range request."""

    def __init__(self, server: ArtifactServer, uri: str, size: int | None) -> None:
        self.server = server
        self.uri = uri
        self.size = size
        self.pos = 0
        self.failures = 0
        self.response: http.client.HTTPResponse | None = None

    def readable(self) -> bool:
        return True

    def connect(self) -> None:
        if self.response is None:
            self.response = self._reopen()

    def verified(self) -> None:
        """Nothing to keep: a streamed download leaves no copy."""

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None

    def read(self, n: int = -1) -> bytes:
        while True:
            if self.response is None:
                self.response = self._reopen()
            try:
                data = self.response.read(n if n is not None and n >= 0 else CHUNK)
            except (*_TRANSIENT, OSError) as exc:
                self._lost(_reason(exc))
                continue
            if not data and self.size is not None and self.pos < self.size:
                self._lost("connection closed early")
                continue
            self.pos += len(data)
            self.failures = 0 if data else self.failures
            transfer_report(f"download {_path(self.uri)}", self.pos, self.size)
            return data

    def _lost(self, reason: str) -> None:
        if self.response is not None:
            self.response.close()
        self.response = None
        self.failures += 1
        if self.failures > self.server.settings.retries:
            raise ServerError(f"download failed at byte {self.pos}: {reason}", _path(self.uri))
        self.server.backoff(self.failures - 1)

    def _reopen(self) -> http.client.HTTPResponse:
        response = self.server._retrying(lambda: self.server._open(self.uri, self.pos), self.uri)
        if self.size is None and not self.pos:
            self.size = _content_length(response)  # so a connection closed early is noticed
        if self.pos and response.status == 206:
            _check_content_range(response, self.pos, self.uri)
        elif self.pos:
            _skip(response, self.pos, self.uri)  # the server ignored Range: drop what we have
        return response


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect obeys the same rules as the URL we were given (no plain http off loopback),
    and the token never follows it to another origin."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        _check_url(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


class TooLarge(ServerError):
    """The file is larger than the caller's limit."""


def download(url: str, out: IO[bytes], *, settings: ServerSettings, max_bytes: int) -> int:
    """Fetch one file (a bundle a deployment request names) by the artifact server's rules:
    TLS verified, plain http only on loopback, retries and resume; cut off beyond `max_bytes`."""
    server = ArtifactServer(settings)
    body = _ResumingBody(server, _check_url(url), None)
    total = 0
    while chunk := body.read(CHUNK):
        total += len(chunk)
        if total > max_bytes or (body.size or 0) > max_bytes:
            raise TooLarge(f"larger than the {max_bytes}-byte limit", _path(url))
        out.write(chunk)
    return total


def url_check(url: str) -> str:
    """The URL if the artifact server's rules allow it; ServerError naming it otherwise."""
    return _check_url(url)


def _check_content_range(response: http.client.HTTPResponse, pos: int, uri: str) -> None:
    header = response.headers.get("Content-Range", "")
    if not header.startswith(f"bytes {pos}-"):
        raise ServerError(f"resumed at byte {pos} but the server sent {header!r}", _path(uri))


def _skip(response: http.client.HTTPResponse, count: int, uri: str) -> None:
    while count > 0:
        data = response.read(min(CHUNK, count))
        if not data:
            raise ServerError("download shorter on retry than before", _path(uri))
        count -= len(data)


def _check_listing(artifact: RemoteArtifact, info: ArtifactInfo, label: str) -> None:
    """The server's own description must match the verified bytes (name and payload checksums)."""
    if info.name != artifact.name:
        raise ServerError(f"listed as {artifact.name!r} but the artifact is named {info.name!r}", label)
    actual = {f.name: f.sha256 for f in info.files}
    for name, checksum in artifact.checksums.items():
        if actual.get(name) != checksum:
            raise ServerError(
                f"checksum of payload file {name!r} is {actual.get(name)}, the server lists {checksum}", label
            )


def _remote(item: object, where: str) -> RemoteArtifact:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("id"), str)
        or not isinstance(item.get("name"), str)
    ):
        raise ServerError("artifact entry without a string id and name", where)
    size = item.get("size")
    return RemoteArtifact(
        id=item["id"],
        name=item["name"],
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        device_types=tuple(str(d) for d in item.get("device_types_compatible") or ()),
        provides={str(k): str(v) for k, v in (item.get("artifact_provides") or {}).items()},
        checksums=_checksums(item.get("updates")),
    )


def _checksums(updates: object) -> dict[str, str]:
    found: dict[str, str] = {}
    for update in updates if isinstance(updates, list) else ():
        for entry in update.get("files") or () if isinstance(update, dict) else ():
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("name"), str)
                and isinstance(entry.get("checksum"), str)
            ):
                found[entry["name"]] = entry["checksum"]
    return found


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _loopback(parts.hostname or ""):
        return url
    raise ServerError("must be an https:// URL (plain http only on loopback)", url or "(empty URL)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: signed links carry secrets


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

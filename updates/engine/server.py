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
import socket
import ssl
import threading
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
from updates.engine.fetchguard import AddressGuard
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
    # A URL someone else chose (a webhook's bundle_url): every connection's address is checked
    # (updates/engine/fetchguard.py), no proxy is used, and the whole fetch has `deadline` seconds.
    guard: AddressGuard | None = None
    deadline: float | None = None


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
        self.ends_at = time.monotonic() + settings.deadline if settings.deadline is not None else None
        self.watchdog = _Watchdog(settings.deadline) if settings.deadline is not None else None
        self.opener = urllib.request.build_opener(*_handlers(settings.guard, self.context, self.watchdog))

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()

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
        response = self.opener.open(request, timeout=self.time_left(url))
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
                    # The standard phrase, not the server's: its reason text is its own content.
                    raise ServerError(f"HTTP {exc.code} {_phrase(exc.code)}".rstrip(), _path(url))
            except _TRANSIENT as exc:
                self.time_left(url)  # a connection the watchdog cut at the deadline says so
                if number == self.settings.retries:
                    raise ServerError(f"unreachable after {number + 1} attempts ({_reason(exc)})", _path(url))
            self.backoff(number)
        raise AssertionError("unreachable")

    def backoff(self, number: int) -> None:
        pause = min(self.settings.backoff * (2**number), 30.0)
        if self.ends_at is not None:
            pause = min(pause, max(self.ends_at - time.monotonic(), 0.0))
        self.sleep(pause)

    def time_left(self, url: str) -> float:
        """The timeout of the next connect or read: the per-read timeout, cut to what is left of
        the whole fetch's deadline; DeadlineExceeded once nothing is left."""
        if self.ends_at is None:
            return self.settings.timeout
        left = self.ends_at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"took longer than the {self.settings.deadline:g} s limit", _path(url))
        return min(self.settings.timeout, left)


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
                data = self._read(n if n is not None and n >= 0 else CHUNK)
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

    def _read(self, n: int) -> bytes:
        assert self.response is not None
        if self.server.ends_at is None:
            return self.response.read(n)
        # Under a deadline: one socket read at a time (read() would wait for all n bytes, and a
        # server trickling a byte a second holds it for ever), checked against the deadline.
        self.server.time_left(self.uri)
        return self.response.read1(n)

    def _lost(self, reason: str) -> None:
        if self.response is not None:
            self.response.close()
        self.response = None
        self.server.time_left(self.uri)
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


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


def _handlers(
    guard: AddressGuard | None, context: ssl.SSLContext, watchdog: _Watchdog | None
) -> list[urllib.request.BaseHandler]:
    if guard is None and watchdog is None:
        return [urllib.request.HTTPSHandler(context=context), _CheckedRedirects()]
    connect = _Connector(guard, watchdog)
    # No proxy for a guarded fetch: the guard would check the proxy's address, not the target's.
    return [
        urllib.request.ProxyHandler({}),
        _GuardedHTTP(connect),
        _GuardedHTTPS(connect, context),
        _CheckedRedirects(),
    ]


class _Watchdog:
    """Shuts every socket of a fetch down at its deadline. Reads are checked against the deadline
    one at a time, but http.client reads the status line and headers itself: a server trickling
    them a byte a second would hold the fetch for ever without this."""

    def __init__(self, seconds: float) -> None:
        self.sockets: list[socket.socket] = []
        self.fired = False
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self.fire)
        self.timer.daemon = True
        self.timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self.lock:
            self.sockets.append(sock)
            fired = self.fired
        if fired:
            _shut(sock)
        return sock

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        self.timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


@dataclass(frozen=True)
class _Connector:
    """socket.create_connection for http.client: through the guard, watched by the watchdog."""

    guard: AddressGuard | None
    watchdog: _Watchdog | None

    def __call__(
        self, address: tuple[str, int], timeout: float | None = None, source: tuple[str, int] | None = None
    ) -> socket.socket:
        if self.guard is not None:
            sock = self.guard.create_connection(address, timeout, source)
        else:
            sock = socket.create_connection(address, timeout, source)
        return self.watchdog.watch(sock) if self.watchdog is not None else sock

    def connection(self, cls: type[http.client.HTTPConnection]) -> Any:
        """An http.client connection class (as urllib calls it) whose sockets come from here."""

        def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            made = cls(host, **kwargs)
            made._create_connection = self  # type: ignore[attr-defined]
            return made

        return make


class _GuardedHTTP(urllib.request.HTTPHandler):
    def __init__(self, connect: _Connector) -> None:
        super().__init__()
        self.connect = connect

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.connect.connection(http.client.HTTPConnection), req)


class _GuardedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, connect: _Connector, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self.connect = connect
        self.ssl_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            self.connect.connection(http.client.HTTPSConnection), req, context=self.ssl_context
        )


class DeadlineExceeded(ServerError):
    """The whole fetch took longer than its deadline."""


class TooLarge(ServerError):
    """The file is larger than the caller's limit."""


def download(url: str, out: IO[bytes], *, settings: ServerSettings, max_bytes: int) -> int:
    """Fetch one file (a bundle a deployment request names) by the artifact server's rules:
    TLS verified, plain http only on loopback, retries and resume; cut off beyond `max_bytes`."""
    server = ArtifactServer(settings)
    body = _ResumingBody(server, _check_url(url), None)
    total = 0
    try:
        while chunk := body.read(CHUNK):
            total += len(chunk)
            if total > max_bytes or (body.size or 0) > max_bytes:
                raise TooLarge(f"larger than the {max_bytes}-byte limit", _path(url))
            out.write(chunk)
    finally:
        body.close()
        server.close()
    return total


def url_check(url: str, guard: AddressGuard | None = None) -> str:
    """The URL if the artifact server's rules allow it; ServerError naming it otherwise. With a
    guard, an address written into the URL is checked too (AddressRefused); a name is checked
    when it is connected to."""
    _check_url(url)
    if guard is not None:
        # Unquoted: a zone id is written %25 in a URL ([fe80::1%25eth0]).
        guard.check_literal(urllib.parse.unquote(urllib.parse.urlsplit(url).hostname or ""))
    return url


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

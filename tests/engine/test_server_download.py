"""`server.download`, the fetch behind deployment requests: the artifact server's rules hold
for redirects too, a short body is noticed, and the size limit cuts the download off."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator

import pytest

from updates.engine.server import ServerError, ServerSettings, TooLarge, download

SEEN: list[dict[str, str]] = []


class Handler(http.server.BaseHTTPRequestHandler):
    port = 0  # the server's, set by the fixture

    def log_message(self, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        SEEN.append(dict(self.headers))
        if self.path == "/to-plain-http":
            self._redirect("http://192.0.2.10/bundle.tar")
        elif self.path == "/to-loopback":
            self._redirect(f"http://localhost:{self.port}/bundle.tar")
        elif self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 50)
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"b" * 5000)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SEEN.clear()
    Handler.port = server.server_port
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def fetch(url: str, max_bytes: int = 1 << 20) -> bytes:
    out = io.BytesIO()
    settings = ServerSettings(url=url, retries=1, backoff=0.0, timeout=5)
    download(url, out, settings=settings, max_bytes=max_bytes)
    return out.getvalue()


def test_it_downloads_over_loopback_and_follows_a_loopback_redirect(base: str) -> None:
    assert fetch(f"{base}/bundle.tar") == b"b" * 5000
    assert fetch(f"{base}/to-loopback") == b"b" * 5000


def test_it_refuses_a_redirect_to_plain_http_off_loopback(base: str) -> None:
    with pytest.raises(ServerError, match=r"http://192.0.2.10/bundle.tar: must be an https:// URL"):
        fetch(f"{base}/to-plain-http")
    assert len(SEEN) == 1  # nothing was asked of the other host, and no retry either


def test_it_notices_a_body_shorter_than_its_content_length(base: str) -> None:
    with pytest.raises(ServerError, match="download failed at byte 50"):
        fetch(f"{base}/short")


def test_it_cuts_the_download_off_at_the_limit(base: str) -> None:
    with pytest.raises(TooLarge, match="larger than the 1000-byte limit"):
        fetch(f"{base}/bundle.tar", max_bytes=1000)


def test_the_token_does_not_follow_a_redirect_to_another_origin(base: str) -> None:
    url = f"{base}/to-loopback"  # 127.0.0.1 -> localhost: another origin
    settings = ServerSettings(url=url, token="device-jwt", retries=0, timeout=5)
    download(url, io.BytesIO(), settings=settings, max_bytes=1 << 20)
    assert [h.get("Authorization") for h in SEEN] == ["Bearer device-jwt", None]

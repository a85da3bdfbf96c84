"""Issue 22, defect 3: a signed deployment request fetched any URL (127.0.0.1:8600/api/v1/health),
showed what it served on the rejected bundle's page, told closed from open loopback ports, and
a server trickling a byte every 2 s held the hook for 84 s. The address guard
(updates/engine/fetchguard.py), the deadline and the worker job, each with its variants."""

from __future__ import annotations

import http.server
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.hooks.conftest import FileServer, mender_event, signed
from tests.integration.conftest import DemoSystem
from updates.engine.fetchguard import AddressGuard, AddressRefused, address_kind, parse_address
from updates.engine.server import DeadlineExceeded, ServerError, ServerSettings, download
from updates.models import Bundle, JournalEntry, WebhookEvent
from updates.services import hooks

URL = "/api/v1/hooks/mender"
Capture = Callable[..., Any]


# ----- which addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("2130706433", "a loopback address"),  # decimal
        ("0177.0.0.1", "a loopback address"),  # octal
        ("0x7f.0.0.1", "a loopback address"),  # hex
        ("0x7f000001", "a loopback address"),
        ("127.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("::1", "a loopback address"),
        ("0", "an unspecified address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%lo", "a link-local address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),  # unique local
        ("fc00::1", "a private address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("100.64.0.1", "not a public address"),  # shared address space (CGNAT)
        ("fec0::1", "a site-local address"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1 inside IPv6)"),  # IPv4-mapped
        ("::ffff:7f00:1", "a loopback address (127.0.0.1 inside IPv6)"),
        ("::ffff:169.254.169.254", "a link-local address (169.254.169.254 inside IPv6)"),
        ("64:ff9b::7f00:1", "a loopback address (127.0.0.1 inside IPv6)"),  # NAT64
        ("2002:7f00:1::", "a loopback address (127.0.0.1 inside IPv6)"),  # 6to4
        ("::127.0.0.1", "a loopback address (127.0.0.1 inside IPv6)"),  # IPv4-compatible
        ("::10.0.0.1", "a private address (10.0.0.1 inside IPv6)"),
    ],
)
def test_it_knows_a_non_public_address_in_every_spelling(host: str, kind: str) -> None:
    ip = parse_address(host)
    assert ip is not None
    assert address_kind(ip) == kind


@pytest.mark.parametrize("host", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"])
def test_it_lets_public_addresses_through(host: str) -> None:
    ip = parse_address(host)
    assert ip is not None and address_kind(ip) is None


def test_a_name_is_not_an_address_until_it_is_resolved() -> None:
    assert parse_address("localhost") is None
    assert parse_address("updates.example.com") is None


def test_the_allow_list_takes_names_addresses_and_networks_and_refuses_anything_else() -> None:
    guard = AddressGuard.from_entries(["Lab.Example.", "10.1.2.0/24", "::1", " "])
    assert guard.hosts == frozenset({"lab.example"})
    assert guard.refusal("lab.example", parse_address("192.168.0.1")) is None  # type: ignore[arg-type]
    assert guard.refusal("x", parse_address("10.1.2.99")) is None  # type: ignore[arg-type]
    assert guard.refusal("x", parse_address("10.1.3.1")) is not None  # type: ignore[arg-type]
    assert guard.refusal("[::1]", parse_address("::1")) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'<lab>' is neither a host name nor an IP address or network"):
        AddressGuard.from_entries(["<lab>"])


# ----- the guard on the connection ----------------------------------------------------------------


@pytest.fixture
def loopback_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers anything with a body that must never be shown."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/to-other":
                self.send_response(302)
                port = self.connection.getsockname()[1]  # this server's own port
                self.send_header("Location", f"http://127.0.0.1:{port}/ok")
                self.end_headers()
                return
            code = 500 if self.path == "/error" else 200
            self.send_response(code, "INTERNAL-REASON-TEXT")
            self.send_header("Content-Length", "28")
            self.end_headers()
            self.wfile.write(b'{"status": "INTERNAL-DATA"}\n')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _fetch(url: str, guard: AddressGuard, **kw: Any) -> bytes:
    out = io.BytesIO()
    download(url, out, settings=ServerSettings(url=url, guard=guard, retries=0, **kw), max_bytes=1 << 20)
    return out.getvalue()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",  # a name that resolves to loopback
        "https://2130706433:{port}/",  # the literal spellings reach the connect too
        "https://0x7f.1:{port}/",
        "https://0177.0.0.1:{port}/",
        "https://[::ffff:127.0.0.1]:{port}/",
        "https://[::1]:{port}/",
    ],
)
def test_the_guard_refuses_the_address_it_would_connect_to(loopback_server: int, url: str) -> None:
    with pytest.raises(AddressRefused, match="a loopback address"):
        _fetch(url.format(port=loopback_server), AddressGuard())


def test_an_open_and_a_closed_loopback_port_get_the_same_answer(loopback_server: int) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = spare.getsockname()[1]
    answers = []
    for port in (loopback_server, closed):
        with pytest.raises(AddressRefused) as refused:
            _fetch(f"http://127.0.0.1:{port}/", AddressGuard())
        answers.append(str(refused.value))
    assert answers[0] == answers[1]


def test_a_name_that_changes_its_answer_is_checked_at_the_connect(
    loopback_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: public when someone checks, loopback when it is connected to."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        numeric_only = kwargs.get("flags", 0) & socket.AI_NUMERICHOST
        if host == "rebind.example" and not numeric_only:
            return real(next(answers), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    guard = AddressGuard()
    guard.check_literal("rebind.example")  # a name: nothing to refuse before the connect
    assert socket.getaddrinfo("rebind.example", 80)[0][4][0] == "93.184.216.34"  # "checked"
    with pytest.raises(
        AddressRefused, match=r"rebind\.example resolves to 127\.0\.0\.1, which is a loopback"
    ):
        _fetch(f"https://rebind.example:{loopback_server}/", AddressGuard.from_entries(["localhost"]))


def test_a_redirect_is_checked_like_the_first_address(loopback_server: int) -> None:
    """The lab server (allowed by name) may not send the fetch on to another loopback address."""
    guard = AddressGuard.from_entries(["localhost"])
    assert _fetch(f"http://localhost:{loopback_server}/ok", guard).startswith(b'{"status"')
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 is a loopback address"):
        _fetch(f"http://localhost:{loopback_server}/to-other", guard)


def test_an_http_error_is_named_by_its_standard_phrase_not_the_servers_text(loopback_server: int) -> None:
    with pytest.raises(ServerError) as failed:
        _fetch(f"http://127.0.0.1:{loopback_server}/error", AddressGuard.from_entries(["127.0.0.1"]))
    assert str(failed.value).endswith("/error: HTTP 500 Internal Server Error")
    assert "INTERNAL" not in str(failed.value)


@pytest.fixture
def trickler() -> Iterator[Callable[[bytes], int]]:
    """A server that sends `data` a byte every 0.2 s: the slow server of the finding."""
    sockets: list[socket.socket] = []

    def start(data: bytes) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        sockets.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            conn.recv(4096)
            try:
                for byte in data:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass
            conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for listener in sockets:
        listener.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 200\r\n\r\n" + b"x" * 200,  # a trickled body
        b"HTTP/1.0 200 OK\r\n" + b"X-Padding: y\r\n" * 30,  # trickled headers
    ],
)
def test_the_whole_fetch_has_a_deadline(trickler: Callable[[bytes], int], answer: bytes) -> None:
    port = trickler(answer)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"took longer than the 1\.5 s limit"):
        _fetch(f"http://127.0.0.1:{port}/", AddressGuard.from_entries(["127.0.0.1"]), deadline=1.5)
    assert time.monotonic() - started < 4


# ----- the hook: 202 at once, the fetch on a worker, failures without the fetched body --------------


def _request(client: Client, url: str, capture: Capture, event_id: str) -> Any:
    body = mender_event("deployment-requested", {"bundle_url": url}, event_id=event_id)
    with capture() as callbacks:
        response = client.post(URL, data=body, content_type="application/json", headers=signed(body))
    return response, callbacks


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x.tar",
        "https://2130706433/x.tar",
        "https://0x7f.1/x.tar",
        "https://0177.0.0.1/x.tar",
        "https://[::1]/x.tar",
        "https://[::ffff:127.0.0.1]/x.tar",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1%25lo]/x.tar",
        "https://192.168.1.1/x.tar",
        "https://[fd12:3456::1]/x.tar",
    ],
)
def test_the_hook_refuses_an_address_in_the_url_at_once(
    client: Client, secret: str, django_capture_on_commit_callbacks: Capture, url: str
) -> None:
    response, callbacks = _request(client, url, django_capture_on_commit_callbacks, "literal")
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "url_refused"
    assert callbacks == []  # nothing queued
    assert not Bundle.objects.exists()


@pytest.mark.django_db
def test_the_hook_answers_202_and_the_worker_refuses_a_name_that_resolves_to_loopback(
    client: Client,
    system: DemoSystem,
    loopback_server: int,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    url = f"https://localhost:{loopback_server}/api/v1/health"
    response, callbacks = _request(client, url, django_capture_on_commit_callbacks, "by-name")
    assert (response.status_code, response.json()["action"]) == (202, "fetch")
    assert len(callbacks) == 1
    row = WebhookEvent.objects.get()
    hooks.hook_fetch_run(event_pk=row.pk)
    row.refresh_from_db()
    assert row.fetch_status == "failed"
    assert row.fetch_error.startswith("url_refused: localhost resolves to 127.0.0.1, which is a loopback")
    assert not Bundle.objects.exists()
    assert JournalEntry.objects.get(kind="webhook.fetch_failed").data["code"] == "url_refused"


@pytest.mark.django_db
def test_what_an_allowed_server_serves_is_never_shown_when_it_is_no_bundle(
    client: Client,
    system: DemoSystem,
    loopback_server: int,
    settings: Any,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    """The finding's health answer, from a lab server the administrator allowed: not stored as a
    rejected bundle whose problems quote it, not in the error."""
    settings.HOOKS_FETCH_ALLOW = ["127.0.0.1"]
    url = f"http://127.0.0.1:{loopback_server}/api/v1/health"
    _request(client, url, django_capture_on_commit_callbacks, "health")
    row = WebhookEvent.objects.get()
    hooks.hook_fetch_run(event_pk=row.pk)
    row.refresh_from_db()
    assert row.fetch_status == "failed"
    assert row.fetch_error == (
        f"bundle_not_usable: http://127.0.0.1:{loopback_server}/api/v1/health: "
        "not a bundle (a fetched bundle is a .tar, .tar.gz or .mender)"
    )
    assert not Bundle.objects.exists()
    entries = JournalEntry.objects.filter(subject="webhook:health")
    assert entries.exists() and "INTERNAL" not in str(list(entries.values()))


def test_the_old_loopback_file_server_needs_the_allow_list(file_server: FileServer, tmp_path: Path) -> None:
    """Plain http on loopback was allowed without a word; now only an allowed host gets it."""
    (file_server.root / "b.tar").write_bytes(b"\0" * 1024)
    with pytest.raises(AddressRefused):
        _fetch(f"{file_server.url}/b.tar", AddressGuard())
    assert len(_fetch(f"{file_server.url}/b.tar", AddressGuard.from_entries(["127.0.0.1"]))) == 1024


def test_the_fetch_goes_to_the_checked_address_not_through_a_proxy(
    loopback_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would be the one connecting: the guard would check the proxy, not the target."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    guard = AddressGuard.from_entries(["127.0.0.1"])
    assert _fetch(f"http://127.0.0.1:{loopback_server}/ok", guard).startswith(b'{"status"')

"""Which addresses a URL chosen by someone else (a webhook's `bundle_url`) may reach.

A signed deployment request names a URL and this appliance fetches it: without a guard, anyone
holding the hook secret could make it fetch its own API, a lab device or a cloud metadata service
(SSRF). So the fetch refuses every address that is not public: loopback, link-local, private,
unique-local, shared (CGNAT), unspecified, multicast, reserved and documentation ranges, and an
IPv4 address hidden in IPv6 (`::ffff:127.0.0.1`, NAT64, 6to4, IPv4-compatible). The address
checked is the one connected to, after name resolution, on every connection (redirects and
resumed downloads included): a name that resolves to 127.0.0.1, a decimal, octal or hex
spelling of it, or a DNS answer that changes between a check and the connect (rebinding)
cannot get through. An administrator lets named hosts or networks through (a lab server) with
`AddressGuard.from_entries` (ORCH_HOOKS_FETCH_ALLOW, docs/environment.md).

Pure Python, no Django: `create_connection` replaces `socket.create_connection` in the
http.client connections that `updates/engine/server.py` opens for a guarded fetch.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from updates.engine.errors import UnavailableError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 ranges that carry an IPv4 address in their last 32 bits (other than ::ffff:0:0/96,
# which `ipv4_mapped` reads): NAT64 and the deprecated IPv4-compatible form.
_V4_IN_LAST_32 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))


class AddressRefused(UnavailableError):
    """The URL's host is, or resolves to, an address the guard refuses. Not an OSError on
    purpose: urllib would wrap one as a transient URLError and retry it."""

    code = "url_refused"
    http_status = 422


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _V4_IN_LAST_32) and int(ip) > 1:  # not :: and ::1 themselves
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_kind(ip: IPAddress) -> str | None:
    """Why this address is refused ("a loopback address", …), or None for a public one."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        why = address_kind(inner)
        return f"{why} ({inner} inside IPv6)" if why else None
    for kind, hit in (
        ("an unspecified address", ip.is_unspecified),
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a site-local address", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("a reserved address", ip.is_reserved),
    ):
        if hit:
            return kind
    return None if ip.is_global else "not a public address"


def parse_address(text: str) -> IPAddress | None:
    """`text` as an IP address if it is one in any spelling the C library accepts (2130706433,
    0177.0.0.1, 0x7f.1, [::1], fe80::1%eth0), without asking DNS; None for a name."""
    host = text.strip("[]")
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return _ip(str(infos[0][4][0]))


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # a zone id (%eth0) names no other host


@dataclass(frozen=True)
class AddressGuard:
    """The allow-list: host names (exact, any case) and networks (an address or a CIDR)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressGuard:
        """Raises ValueError naming an entry that is neither a host name nor a network."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in (e.strip() for e in entries):
            if not raw:
                continue
            try:
                networks.append(ipaddress.ip_network(raw.strip("[]"), strict=False))
            except ValueError:
                if not _host_name(raw):
                    raise ValueError(f"{raw!r} is neither a host name nor an IP address or network")
                hosts.add(raw.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to `ip` (for the URL host `host`) is refused; None when allowed."""
        if self.host_allowed(host) or any(ip in net for net in self.networks):
            return None
        kind = address_kind(ip)
        if kind is None:
            return None
        shown = host if _ip_equal(host, ip) else f"{host} resolves to {ip}, which"
        allow = "an administrator can allow the host with ORCH_HOOKS_FETCH_ALLOW"
        return f"{shown} is {kind}; refused ({allow})"

    def check_literal(self, host: str) -> None:
        """Refuse an address written into the URL at once, before any work is queued."""
        ip = parse_address(host)
        why = self.refusal(host, ip) if ip is not None else None
        if why:
            raise AddressRefused(why)

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        """socket.create_connection, but every address the name resolves to is checked first
        and the socket connects to that checked address, never resolving the name again."""
        host, port = address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for *_, sockaddr in infos:
            why = self.refusal(host, _ip(str(sockaddr[0])))
            if why:
                raise AddressRefused(why)
        error: OSError = OSError(f"{host}: no address")
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error


def _host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return all(0 < len(x) <= 63 and x.replace("-", "").isalnum() and x.isascii() for x in labels)


def _ip_equal(host: str, ip: IPAddress) -> bool:
    try:
        return _ip(host.strip("[]")) == ip
    except ValueError:
        return False

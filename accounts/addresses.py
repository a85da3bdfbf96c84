"""Which address a request comes from: what failed logins and bad tokens are counted against.

The one place that decides it (docs/security.md): `REMOTE_ADDR`, or — when `ORCH_BEHIND_PROXY`
is set and the request comes from a trusted proxy (`ORCH_TRUSTED_PROXIES`, loopback by default)
— the last `X-Forwarded-For` entry, which is the address the proxy itself saw.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    peer = str(request.META.get("REMOTE_ADDR", "") or "unknown")
    if not settings.BEHIND_PROXY or not _trusted(peer):
        return peer
    # The last entry: the proxy appends the address it saw; earlier ones are the client's word.
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")[-1].strip()
    return _normal(forwarded) or peer


def _trusted(peer: str) -> bool:
    address = _normal(peer)
    return address is not None and address in {_normal(a) for a in settings.TRUSTED_PROXIES}


def _normal(text: str) -> str | None:
    """The canonical spelling of an IP address, or None: `::ffff:127.0.0.1` is 127.0.0.1."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)

"""SSRF guard: refuse sources whose host resolves to an address inside the deployment.

``VideoSrc`` comes from callers, and the worker fetches it from inside the deployment's
network: without a guard, a caller could make roomcast read a metadata service
(169.254.169.254), an admin page on loopback, or a private service. With
``ROOMCAST_BLOCK_PRIVATE_ADDRESSES=true``, every address the source's host resolves to
must be globally routable. The API checks at submit (a 400 the caller sees at once) and
the worker checks again just before opening, because DNS may answer differently by then.

The default is off: the dev stack and the tests serve their media and rooms on loopback.

What it does not cover (docs/reliability.md): FFmpeg resolves the name again when it
connects (a rebinding DNS can still answer differently in between), HTTP redirects, and
the segment URLs of an HLS playlist are not checked. A deployment that must be airtight
also needs an egress firewall or proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from .errors import SourceAddressBlocked, SourceUnreachable
from .redact import redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDR networks (``ROOMCAST_GUARD_ALLOW_NETWORKS``)."""
    return tuple(
        ipaddress.ip_network(n.strip(), strict=False) for n in text.split(",") if n.strip()
    )


def blocked_reason(address: IPAddress, allow: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` is refused (e.g. ``"loopback"``), or None for a public address or
    one in an ``allow`` network (a deployment's own Redis in its VPC)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the IPv4 address it carries.
        address = address.ipv4_mapped
    if any(address in network for network in allow):
        return None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # Shared address space (100.64.0.0/10) and the like: neither private nor public.
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def resolve(host: str, port: int | None) -> list[IPAddress]:
    """Every address ``host`` resolves to, as the system resolver (and FFmpeg) sees it."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # The scope of a link-local IPv6 address ("fe80::1%eth0") is dropped to parse it.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_source_address(url: str, allow: Iterable[IPNetwork] = ()) -> None:
    """Raise if ``url``'s host resolves to any refused address (or does not resolve).

    Every address counts, not only the first: FFmpeg may connect to any of them.

    Raises:
        SourceAddressBlocked: an address is loopback, private, link-local, multicast,
            reserved or otherwise not globally routable.
        SourceUnreachable: the host name does not resolve.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    checked_addresses(host, port, allow, where=redact_url(url))


def checked_addresses(
    host: str, port: int | None, allow: Iterable[IPNetwork] = (), where: str = ""
) -> list[IPAddress]:
    """Every address ``host`` resolves to, once the guard has judged them all; raises
    like :func:`check_source_address` (``where`` starts its messages)."""
    prefix = f"{where}: " if where else ""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise SourceUnreachable(f"{prefix}the host {host!r} could not be resolved") from exc
    for address in addresses:
        reason = blocked_reason(address, allow)
        if reason is not None:
            raise SourceAddressBlocked(
                f"{prefix}the host {host!r} resolves to {address}, a {reason} address; "
                "this service only connects to public addresses"
            )
    return addresses


def check_source_addresses(urls: Iterable[str], allow: Iterable[IPNetwork] = ()) -> None:
    """:func:`check_source_address` for each URL (a source and its playlist)."""
    for url in urls:
        check_source_address(url, allow)


def redis_host_url(host: str, port: int | None) -> str:
    """A job's RedisHost as a URL the guard checks (an IPv6 literal in brackets)."""
    name = f"[{host}]" if ":" in host else host
    return f"redis://{name}:{port or 6379}"

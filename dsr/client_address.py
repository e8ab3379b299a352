"""The client address the public intake's rate limits count.

The direct peer, unless that peer is one of the configured proxies: then the forwarding header
(`X-Forwarded-For`, or RFC 7239 `Forwarded`, whichever the proxies are configured to set) is
read from the right, skipping proxies, and the first address that is not a proxy is the
client. Everything left of it was written by the client and is ignored, so a forged header
cannot move a request into another bucket. With no proxies configured the header is never read.

Only one header is believed: a proxy that appends to `X-Forwarded-For` passes a client's
forged `Forwarded` through untouched, so reading "either" would let the client choose.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ProxyHeader = Literal["x-forwarded-for", "forwarded"]


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.1", "192.168.0.0/16", "::1"]` → networks; a bad entry raises ValueError."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def _address(text: str) -> Address | None:
    """An IP from a header hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`."""
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        found = ipaddress.ip_address(value)
    except ValueError:
        return None  # "unknown", an obfuscated identifier (RFC 7239 §6.3), garbage
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def hops(values: Sequence[str], header: ProxyHeader) -> list[Address | None]:
    """The header's hops, left (first client) to right (nearest proxy); None where unreadable."""
    joined = ",".join(values)
    if not joined.strip():
        return []
    if header == "x-forwarded-for":
        return [_address(hop) for hop in joined.split(",")]
    found: list[Address | None] = []
    for element in _split_outside_quotes(joined, ","):
        value = None
        for pair in _split_outside_quotes(element, ";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                value = raw
        found.append(_address(value) if value is not None else None)
    return found


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None,
    header_values: Sequence[str],
    *,
    proxies: Sequence[Network],
    header: ProxyHeader = "x-forwarded-for",
) -> str | None:
    """The right-most untrusted hop when `peer` is a trusted proxy, else `peer` itself."""
    peer_address = _address(peer) if peer else None
    if peer_address is None:
        return peer
    if not proxies or not _trusted(peer_address, proxies):
        return str(peer_address)
    nearest = peer_address
    for hop in reversed(hops(header_values, header)):
        if hop is None:
            # An unreadable hop: stop at the last proxy that vouched for what it saw.
            break
        if not _trusted(hop, proxies):
            return str(hop)
        nearest = hop
    return str(nearest)


def of_request(
    request: HTTPConnection, *, proxies: Sequence[Network], header: ProxyHeader
) -> str | None:
    """`client_address` of an HTTP request: every public entry (API, privacy centre) uses it."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist(header),
        proxies=proxies,
        header=header,
    )


def bucket_key(address: str) -> str:
    """What the per-address limit counts: an IPv4 address, or an IPv6 address's /64.

    One IPv6 subscriber usually holds a whole /64; counting single addresses would let them
    rotate through it and never meet the limit.
    """
    found = _address(address)
    if isinstance(found, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((found, 64), strict=False))
    return str(found) if found is not None else address

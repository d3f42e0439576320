"""Which IP addresses an outgoing request may reach unless the config allows more.

A webhook's URL comes from the config, but its name is resolved by DNS (which an attacker
may control, or rebind between two lookups) and its service may be compromised: without a
check, either could turn the gateway into a client of the internal network (a metadata
service on 169.254.169.254, an admin page on 127.0.0.1). Only globally routable unicast
addresses pass; everything else is named, for the error message.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address

IpAddress = IPv4Address | IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address in the low bits


def non_public_kind(address: IpAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private" ...), or None when it is
    a globally routable unicast address. An IPv6 address that carries an IPv4 one (mapped,
    6to4, NAT64) is judged by that IPv4 address: it is where the packets go."""
    if isinstance(address, IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _kind(embedded)
    return _kind(address)


def _kind(address: IpAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def ip_address_or_none(host: str) -> IpAddress | None:
    """The address when ``host`` (a URL's host, IPv6 without brackets) is an IP literal."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None

"""Where the http executor may connect: the outbound policy.

By default a task may reach public addresses only. Refused: loopback, private (RFC
1918), shared/CGNAT (100.64.0.0/10, where some clouds answer metadata requests),
link-local, unique-local and site-local IPv6, unspecified, multicast, broadcast and
reserved ranges, and every IPv6 form that carries an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4, Teredo). An address that carries an IPv4 address is
judged on that address too: ``64:ff9b::a9fe:a9fe`` is 169.254.169.254 for the NAT64
gateway that forwards it, so opening the NAT64 range does not open the metadata service.

``worker.http_allow`` opens what an operator wants reachable: CIDRs (``10.0.0.0/8``,
``fd00::/8``) or host names (``internal.example.com``, matched exactly, case- and
trailing-dot-insensitively, against the URL's host). A host name opens every address
it resolves to; a CIDR opens the addresses in it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_KEY = "worker.http_allow"


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in pairs)


# Ranges refused by default, with the word an error message uses for each.
DENIED_V4 = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")
DENIED_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("fc00::/7", "unique-local"),
    ("ff00::/8", "multicast"),
    (str(IPV4_COMPATIBLE), "IPv4-compatible"),
    (str(NAT64), "NAT64"),
    (str(NAT64_LOCAL), "NAT64"),
    (str(SIX_TO_FOUR), "6to4"),
    (str(TEREDO), "Teredo"),
)


def parse_address(text: str) -> Address:
    """An address from a resolver answer (an IPv6 zone id such as ``%eth0`` dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (empty for a plain IPv6 address).

    NAT64 local-use prefixes (64:ff9b:1::/48) may be any length from /48 to /96, so
    every RFC 6052 position a /48 network allows is taken.
    """
    value = int(ip)
    if ip in IPV4_COMPATIBLE:
        return [] if value <= 1 else [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in NAT64:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in NAT64_LOCAL:
        octets = ip.packed
        # RFC 6052 section 2.2: bits 64-71 are always zero and never carry the address.
        positions = (octets[6:8] + octets[9:11], octets[7:8] + octets[9:12], octets[9:13])
        return [ipaddress.IPv4Address(p) for p in positions] + [
            ipaddress.IPv4Address(value & 0xFFFFFFFF)
        ]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def default_refusal(ip: Address) -> str | None:
    """Why ``ip`` alone is refused by default (a word such as ``loopback``), or None."""
    table = DENIED_V4 if isinstance(ip, ipaddress.IPv4Address) else DENIED_V6
    for network, kind in table:
        if ip in network:
            return kind
    return None


@dataclass(frozen=True)
class Refusal:
    """An address the policy refuses, and why, as one sentence for the run's error."""

    address: str
    kind: str
    via: str | None = None  # the IPv4 address an IPv6 one carries, when that is refused

    def describe(self, host: str, key: str = ALLOW_KEY) -> str:
        what = f"{self.kind} address {self.address}"
        if self.via is not None:
            what += f" (it carries {self.via})"
        return (
            f"refused to connect to {host!r}: it resolves to the {what}; add the address "
            f"or host name to {key} to allow it"
        )


class OutboundPolicy:
    """The addresses an http task may connect to (see the module docstring)."""

    def __init__(self, allow: Iterable[str] = (), key: str = ALLOW_KEY) -> None:
        self.key = key  # the setting that opens more, named in refusals
        self.networks: list[Network] = []
        self.hosts: set[str] = set()
        for entry in allow:
            network = parse_network(entry)
            if network is not None:
                self.networks.append(network)
            else:
                self.hosts.add(normal_host(entry))

    def _opened(self, ip: Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)

    def judge(self, address: Address) -> Refusal | None:
        """None when a connection to ``address`` is allowed, else the refusal."""
        if isinstance(address, ipaddress.IPv6Address) and address in IPV4_MAPPED:
            # The kernel connects over IPv4: it is that address, nothing else.
            assert address.ipv4_mapped is not None
            refusal = self.judge(address.ipv4_mapped)
            if refusal is None:
                return None
            return Refusal(str(address), refusal.kind, via=str(address.ipv4_mapped))
        carried = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []
        inner_refused = [
            f"{kind} {inner}"
            for inner in carried
            if (kind := default_refusal(inner)) is not None and not self._opened(inner)
        ]
        kind = default_refusal(address)
        if kind is not None and not self._opened(address):
            via = inner_refused[0] if inner_refused else (str(carried[0]) if carried else None)
            return Refusal(str(address), kind, via=via)
        if inner_refused:
            return Refusal(str(address), kind or "IPv6", via=inner_refused[0])
        return None

    def choose(self, host: str, addresses: Sequence[str]) -> str:
        """The first of ``addresses`` (a resolver's answer for ``host``) allowed, or
        PermissionError naming the first refused one and the key that opens it."""
        if normal_host(host) in self.hosts:
            return addresses[0]
        first: Refusal | None = None
        for text in addresses:
            refusal = self.judge(parse_address(text))
            if refusal is None:
                return text
            first = first or refusal
        assert first is not None, "a resolver answer is never empty"
        raise PermissionError(first.describe(host, self.key))


def normal_host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def parse_network(entry: str) -> Network | None:
    """``entry`` as a network (a bare address is a /32 or /128), None for a host name."""
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return None


def check_allow_entry(entry: str) -> str:
    """An ``http_allow`` entry as written, or ValueError saying what is wrong with it."""
    text = entry.strip()
    if not text:
        raise ValueError("entries must not be empty")
    if parse_network(text) is not None:
        return text
    if "/" in text or ":" in text:
        raise ValueError(f"{entry!r} is neither a CIDR (10.0.0.0/8, fd00::/8) nor a host name")
    labels = normal_host(text).split(".")
    if any(not label or len(label) > 63 for label in labels) or not all(
        label.replace("-", "").replace("_", "").isalnum() for label in labels
    ):
        raise ValueError(f"{entry!r} is neither a CIDR (10.0.0.0/8, fd00::/8) nor a host name")
    return text

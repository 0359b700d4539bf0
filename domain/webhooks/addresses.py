"""Where an outbound webhook may go: the SSRF policy.

A destination's URL names a host. The sender resolves it, checks *every* address here,
and connects only to an address that passed (pinned: a DNS answer that changes between
the check and the connect cannot reach another address). This module decides; it does no
I/O.

    url ──parse_url──▶ WebhookUrl ──(literal IP, or the sender resolves the host)──▶ addresses
        ──permitted_addresses──▶ the addresses to connect to, or AddressRefused / WebhookUrlRefused

An address is refused when a row of ``REFUSED_IPV4`` / ``REFUSED_IPV6`` holds it, when it
is an IPv6 form that carries a refused IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, which
the kernel sends to the IPv4 address itself; NAT64 ``64:ff9b::/96``; 6to4 ``2002::/16``;
Teredo ``2001::/32``, server or client), when it is IPv4-compatible (``::a.b.c.d``,
deprecated, never sent to), when it is IPv6 outside the global unicast ``2000::/3``, or when
it has a zone id (``fe80::1%eth0``) — unless it lies inside one of the allowed networks
(``METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS``), which the operator names for receivers of their
own. ``https`` is required; plain ``http`` only when every address is inside the allowed
networks.

Why a table rather than ``ipaddress``' flags alone: ``is_private`` is False for CGNAT
(100.64.0.0/10 is neither private nor global there), True for the whole of 2001::/23 which
holds Teredo, and the lists behind ``is_private``/``is_global`` changed in Python 3.12.4
and 3.13 (192.0.0.9/32 became global). The flags stay as a last net: an address that no
row names but that ``is_global`` calls not global is refused too.

Literal IPv4 hosts are read in every notation ``inet_aton`` (and so ``getaddrinfo``) and
the WHATWG URL standard accept: ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``,
``0x7f.1``, a trailing dot. A host whose last label is a number but which is no valid IPv4
address is refused rather than resolved, as browsers refuse it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from domain.errors import PermanentError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_NETWORKS_VARIABLE = "METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS"


class WebhookUrlRefused(PermanentError):
    """A destination URL that no message may be sent to; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AddressRefused(WebhookUrlRefused):
    """An address in a refused range (and in no allowed network); the reason names the
    address and the range."""

    def __init__(self, address: Address, why: str) -> None:
        super().__init__(f"address {address} is refused: {why}")
        self.address = address
        self.why = why


@dataclass(frozen=True)
class Range:
    network: Network
    name: str

    def __str__(self) -> str:
        return f"{self.name} {self.network}"


def _ranges(*rows: tuple[str, str]) -> tuple[Range, ...]:
    return tuple(Range(ipaddress.ip_network(cidr), name) for cidr, name in rows)


#: First match names the range, so a narrower row comes before a wider one holding it.
REFUSED_IPV4 = _ranges(
    ("0.0.0.0/32", "unspecified"),
    ("0.0.0.0/8", "'this network' (RFC 791)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, where cloud metadata lives (RFC 3927)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast, reserved (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "limited broadcast"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
)

REFUSED_IPV6 = _ranges(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "NAT64 for local use (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001:2::/48", "benchmarking (RFC 5180)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "SRv6 segment identifiers (RFC 9602)"),
    ("fc00::/7", "unique-local (RFC 4193)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast"),
)

GLOBAL_UNICAST_IPV6 = ipaddress.IPv6Network("2000::/3")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
TEREDO = ipaddress.IPv6Network("2001::/32")


def inside(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)  # False across versions


def _row(address: Address, rows: Sequence[Range]) -> Range | None:
    for row in rows:
        if inside(address, (row.network,)):
            return row
    return None


def connect_address(address: Address) -> Address:
    """The address a connection to ``address`` reaches: an IPv4-mapped IPv6 address is its
    IPv4 address (the kernel sends it there)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refused_because(address: Address) -> str | None:
    """Why ``address`` is refused, whatever the allowed networks; None when it is not."""
    if isinstance(address, ipaddress.IPv4Address):
        row = _row(address, REFUSED_IPV4)
        if row is not None:
            return str(row)
        return None if address.is_global else "not globally reachable"
    if address.scope_id is not None:
        return "an IPv6 zone id names an interface of this machine"
    if address.ipv4_mapped is not None:
        inner = refused_because(address.ipv4_mapped)
        return f"IPv4-mapped form of {address.ipv4_mapped}, {inner}" if inner else None
    row = _row(address, REFUSED_IPV6[:2])  # :: and ::1 sit inside ::/96
    if row is not None:
        return str(row)
    if address in IPV4_COMPATIBLE:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        inner = refused_because(embedded)
        return f"IPv4-compatible form of {embedded} (deprecated, RFC 4291)" + (
            f", {inner}" if inner else ""
        )
    for network, name, embedded in _embedding(address):
        inner = refused_because(embedded)
        if inner:
            return f"{name} {network} form of {embedded}, {inner}"
    if address in NAT64 or address in SIX_TO_FOUR or address in TEREDO:
        return None  # every embedded IPv4 address passed
    row = _row(address, REFUSED_IPV6)
    if row is not None:
        return str(row)
    if address not in GLOBAL_UNICAST_IPV6:
        return f"reserved, outside the global unicast range {GLOBAL_UNICAST_IPV6}"
    return None if address.is_global else "not globally reachable"


def _embedding(
    address: ipaddress.IPv6Address,
) -> list[tuple[ipaddress.IPv6Network, str, ipaddress.IPv4Address]]:
    """The IPv4 addresses a NAT64, 6to4 or Teredo address carries."""
    if address in NAT64:
        return [(NAT64, "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))]
    if address.sixtofour is not None:
        return [(SIX_TO_FOUR, "6to4", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo
        return [(TEREDO, "Teredo server", server), (TEREDO, "Teredo client", client)]
    return []


def check_address(address: Address, allowed: Sequence[Network]) -> Address:
    """The address to connect to for ``address`` (see ``connect_address``), or
    ``AddressRefused``: refused ranges are refused unless inside an allowed network."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise AddressRefused(address, "an IPv6 zone id names an interface of this machine")
    target = connect_address(address)
    if inside(target, allowed):
        return target
    why = refused_because(address)
    if why is not None:
        raise AddressRefused(address, why)
    return target


# -- URLs ------------------------------------------------------------------------------

_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class WebhookUrl:
    """A destination URL as it is sent: ``host`` is the lowercase ASCII hostname, or the
    literal IP address in its canonical form (``literal``); ``target`` is the request line's
    path and query."""

    scheme: Literal["https", "http"]
    host: str
    port: int
    target: str
    literal: Address | None

    @property
    def authority(self) -> str:
        """The ``Host`` header: the host (IPv6 in brackets), the port when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as an IPv4 address in any notation ``inet_aton`` or the WHATWG URL
    standard reads: 1 to 4 parts, each decimal, octal (leading ``0``) or hex (``0x``), the
    last filling the remaining bytes; a trailing dot allowed. None when ``host`` is a name;
    ``WebhookUrlRefused`` when its last label is a number but the whole is no address."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _NUMERIC_LABEL.fullmatch(parts[-1]):
        return None
    if len(parts) > 4 or not all(_IPV4_PART.fullmatch(part) for part in parts):
        raise WebhookUrlRefused(f"host {host!r} ends in a number but is not an IPv4 address")
    values = [_ipv4_part(part) for part in parts]
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (5 - len(values)):
        raise WebhookUrlRefused(f"host {host!r} is an IPv4 address out of range")
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _ipv4_part(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


def parse_url(url: str) -> WebhookUrl:
    """A destination URL, its host read as a literal IP address when it is one (in any
    notation) or else checked to be a DNS name; ``WebhookUrlRefused`` saying what is wrong.
    Says nothing yet of the addresses: see ``permitted_addresses``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise WebhookUrlRefused(f"the URL must be https, not {scheme or 'schemeless'}")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("the URL must not carry a user name or password")
    raw_host = parts.hostname
    if not raw_host:
        raise WebhookUrlRefused("the URL has no host")
    if port == 0:
        raise WebhookUrlRefused("port 0 is not a port")
    literal: Address | None
    if parts.netloc.rpartition("@")[2].startswith("["):
        if "%" in raw_host:
            raise WebhookUrlRefused(
                f"IPv6 zone ids are refused ({raw_host}): they name an interface of this machine"
            )
        try:
            literal = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise WebhookUrlRefused(f"[{raw_host}] is not an IPv6 address") from None
        host = str(literal)
    else:
        literal = parse_ipv4_literal(raw_host)
        host = str(literal) if literal is not None else _hostname(raw_host)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return WebhookUrl(
        scheme="https" if scheme == "https" else "http",
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        target=target,
        literal=literal,
    )


def _hostname(raw: str) -> str:
    name = raw.removesuffix(".")  # the root label
    try:
        name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise WebhookUrlRefused(f"host {raw!r} is not a valid DNS name") from None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise WebhookUrlRefused(f"host {raw!r} is not a valid DNS name")
    return name


def permitted_addresses(
    url: WebhookUrl, addresses: Iterable[Address], allowed: Sequence[Network]
) -> tuple[Address, ...]:
    """The addresses a message to ``url`` may connect to, as connected to: every one of
    ``addresses`` must pass ``check_address`` (one refused address refuses the URL), and
    plain ``http`` needs every one inside the allowed networks."""
    checked = tuple(dict.fromkeys(check_address(address, allowed) for address in addresses))
    if not checked:
        raise WebhookUrlRefused(f"host {url.host} has no address")
    if url.scheme == "http":
        for address in checked:
            if not inside(address, allowed):
                raise WebhookUrlRefused(
                    f"plain http to {address} is refused: the URL must be https, or the "
                    f"address inside an allowed network ({ALLOWED_NETWORKS_VARIABLE})"
                )
    return checked


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (``10.0.0.0/8``, ``fd00::/8``, a bare address for one) as networks;
    ``ValueError`` naming the bad one (host bits set included: ``10.0.0.1/8`` is refused
    rather than guessed)."""
    networks: list[Network] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a CIDR network: {exc}") from None
    return tuple(networks)

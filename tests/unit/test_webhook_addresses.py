"""The SSRF policy of outbound webhooks: every refused range, every notation of a literal
address, the allowed networks, and the scheme rule."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.settings import SettingsError, load_settings
from domain.webhooks import addresses
from domain.webhooks.addresses import (
    REFUSED_IPV4,
    REFUSED_IPV6,
    AddressRefused,
    WebhookUrlRefused,
    check_address,
    parse_networks,
    parse_url,
    permitted_addresses,
)

NO_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def refusal(address: str) -> str:
    with pytest.raises(AddressRefused) as caught:
        check_address(ipaddress.ip_address(address), NO_NETWORKS)
    assert caught.value.reason.startswith(f"address {ipaddress.ip_address(address)} is refused")
    return caught.value.reason


# (address, what the reason must name): one or more per range, edges included
REFUSED = [
    ("0.0.0.0", "unspecified 0.0.0.0/32"),  # noqa: S104
    ("0.1.2.3", "'this network' (RFC 791) 0.0.0.0/8"),
    ("10.0.0.0", "private (RFC 1918) 10.0.0.0/8"),
    ("10.255.255.255", "10.0.0.0/8"),
    ("100.64.0.0", "CGNAT (RFC 6598) 100.64.0.0/10"),
    ("100.127.255.255", "100.64.0.0/10"),
    ("127.0.0.1", "loopback 127.0.0.0/8"),
    ("127.255.255.254", "loopback 127.0.0.0/8"),
    ("169.254.169.254", "link-local, where cloud metadata lives (RFC 3927) 169.254.0.0/16"),
    ("169.254.0.1", "169.254.0.0/16"),
    ("172.16.0.1", "private (RFC 1918) 172.16.0.0/12"),
    ("172.31.255.255", "172.16.0.0/12"),
    ("192.0.0.9", "IETF protocol assignments (RFC 6890) 192.0.0.0/24"),
    ("192.0.2.1", "TEST-NET-1 (RFC 5737) 192.0.2.0/24"),
    ("192.88.99.1", "6to4 relay anycast, reserved (RFC 7526) 192.88.99.0/24"),
    ("192.168.1.1", "private (RFC 1918) 192.168.0.0/16"),
    ("198.18.0.1", "benchmarking (RFC 2544) 198.18.0.0/15"),
    ("198.19.255.255", "198.18.0.0/15"),
    ("198.51.100.7", "TEST-NET-2 (RFC 5737) 198.51.100.0/24"),
    ("203.0.113.7", "TEST-NET-3 (RFC 5737) 203.0.113.0/24"),
    ("224.0.0.1", "multicast 224.0.0.0/4"),
    ("239.255.255.250", "multicast 224.0.0.0/4"),
    ("240.0.0.1", "reserved (RFC 1112) 240.0.0.0/4"),
    ("255.255.255.255", "limited broadcast 255.255.255.255/32"),
    ("::", "unspecified ::/128"),
    ("::1", "loopback ::1/128"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, loopback 127.0.0.0/8"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, link-local"),
    ("::ffff:10.1.2.3", "IPv4-mapped form of 10.1.2.3, private (RFC 1918)"),
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1 (deprecated, RFC 4291), loopback"),
    ("::8.8.8.8", "IPv4-compatible form of 8.8.8.8 (deprecated, RFC 4291)"),
    ("64:ff9b::127.0.0.1", "NAT64 64:ff9b::/96 form of 127.0.0.1, loopback 127.0.0.0/8"),
    ("64:ff9b::a9fe:a9fe", "NAT64 64:ff9b::/96 form of 169.254.169.254, link-local"),
    ("64:ff9b:1::1", "NAT64 for local use (RFC 8215) 64:ff9b:1::/48"),
    ("100::1", "discard-only (RFC 6666) 100::/64"),
    ("2001:2::1", "benchmarking (RFC 5180) 2001:2::/48"),
    ("2001:db8::1", "documentation (RFC 3849) 2001:db8::/32"),
    ("2001:10::1", "IETF protocol assignments (RFC 2928) 2001::/23"),
    ("2002:7f00:1::1", "6to4 2002::/16 form of 127.0.0.1, loopback"),
    ("2002:a00:1::", "6to4 2002::/16 form of 10.0.0.1, private (RFC 1918)"),
    # Teredo: server 65.54.227.120, client 10.0.0.1 (stored as its complement)
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo client 2001::/32 form of 10.0.0.1"),
    ("2001:0:7f00:1:8000:63bf:f7f6:fe01", "Teredo server 2001::/32 form of 127.0.0.1"),
    ("3fff::1", "documentation (RFC 9637) 3fff::/20"),
    ("5f00::1", "SRv6 segment identifiers (RFC 9602) 5f00::/16"),
    ("fc00::1", "unique-local (RFC 4193) fc00::/7"),
    ("fd12:3456::1", "unique-local (RFC 4193) fc00::/7"),
    ("fe80::1", "link-local fe80::/10"),
    ("febf::1", "link-local fe80::/10"),
    ("fec0::1", "site-local, deprecated (RFC 3879) fec0::/10"),
    ("ff02::1", "multicast ff00::/8"),
    ("4000::1", "reserved, outside the global unicast range 2000::/3"),
    ("fe80::1%eth0", "an IPv6 zone id"),
]

PERMITTED = [
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "192.0.3.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8
]


@pytest.mark.parametrize(("address", "named"), REFUSED)
def test_each_refused_range_is_refused_and_named(address: str, named: str) -> None:
    assert named in refusal(address)


def test_every_row_of_the_tables_is_exercised() -> None:
    tested = [ipaddress.ip_address(a.split("%")[0]) for a, _ in REFUSED]
    for row in (*REFUSED_IPV4, *REFUSED_IPV6):
        assert any(a in row.network for a in tested), row


@pytest.mark.parametrize("address", PERMITTED)
def test_public_addresses_pass(address: str) -> None:
    assert check_address(ipaddress.ip_address(address), NO_NETWORKS) == ipaddress.ip_address(
        address.removeprefix("::ffff:")
    )


def test_where_ipaddress_flags_are_ambiguous_the_table_decides() -> None:
    cgnat = ipaddress.ip_address("100.64.0.1")
    assert not cgnat.is_private  # so ``is_private`` alone would let it through
    assert "CGNAT" in refusal(str(cgnat))
    teredo = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f7f7:f7f7")
    assert teredo.is_private  # so ``is_private`` alone would refuse a public Teredo address
    check_address(teredo, NO_NETWORKS)
    # an allowed IPv6 network allows no IPv4 address, and the other way round
    assert "'this network'" in refusal("0.0.0.1")
    with pytest.raises(AddressRefused):
        check_address(ipaddress.ip_address("0.0.0.1"), parse_networks(["::/96"]))
    with pytest.raises(AddressRefused):
        check_address(ipaddress.ip_address("::1"), parse_networks(["0.0.0.0/0"]))


LOOPBACK_NOTATIONS = [
    "https://127.0.0.1/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://0X7F000001/",
    "https://0177.0.0.1/",
    "https://0177.0.0.01/",
    "https://127.1/",
    "https://127.0.1/",
    "https://0x7f.1/",
    "https://0x7f.0.0.0x1/",
    "https://017700000001/",
    "https://127.0.0.1./",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[0:0:0:0:0:ffff:127.0.0.1]/",
    "https://[::127.0.0.1]/",
    "https://[64:ff9b::127.0.0.1]/",
    "https://[2002:7f00:1::]/",
]


@pytest.mark.parametrize("url", LOOPBACK_NOTATIONS)
def test_literal_loopback_in_every_notation_is_refused(url: str) -> None:
    parsed = parse_url(url)
    assert parsed.literal is not None
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1.*loopback|loopback"):
        permitted_addresses(parsed, [parsed.literal], NO_NETWORKS)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://[fe80::1%25eth0]/", "zone id"),
        ("https://[fe80::1%eth0]/", "zone id"),
        ("https://256.0.0.1/", "out of range"),
        ("https://1.2.3.4.5/", "ends in a number"),
        ("https://example.123/", "ends in a number"),
        ("https://4294967296/", "out of range"),
        ("https://08.0.0.1/", "ends in a number"),
        ("https://user:pw@example.com/", "user name or password"),
        ("ftp://example.com/", "must be https"),
        ("example.com/hook", "must be https"),
        ("https:///hook", "no host"),
        ("https://exa mple.com/", "not a valid DNS name"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://[::1/", "not a valid URL"),
    ],
)
def test_malformed_and_ambiguous_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(WebhookUrlRefused, match=message):
        parse_url(url)


def test_a_url_keeps_its_host_port_and_target() -> None:
    url = parse_url("https://Hooks.Example.COM.:8443/in/bound?a=1#frag")
    assert (url.host, url.port, url.target, url.literal) == (
        "hooks.example.com",
        8443,
        "/in/bound?a=1",
        None,
    )
    assert url.authority == "hooks.example.com:8443"
    assert parse_url("https://example.com").authority == "example.com"
    assert parse_url("http://[2606:4700::1]:80/").authority == "[2606:4700::1]"
    assert parse_url("https://bücher.example/").host == "xn--bcher-kva.example"


def test_one_refused_address_among_public_ones_refuses_the_host() -> None:
    url = parse_url("https://mixed.example/")
    public, inside = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.5")
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.5"):
        permitted_addresses(url, [public, inside], NO_NETWORKS)
    assert permitted_addresses(url, [public, public], NO_NETWORKS) == (public,)


def test_no_address_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused, match="no address"):
        permitted_addresses(parse_url("https://nowhere.example/"), [], NO_NETWORKS)


def test_allowed_networks_override_the_refused_ranges() -> None:
    allowed = parse_networks(["127.0.0.0/8", "fd00::/8", "169.254.169.0/24"])
    url = parse_url("https://receiver.internal/")
    for address in ("127.0.0.1", "fd00::5", "169.254.169.254"):
        ip = ipaddress.ip_address(address)
        assert permitted_addresses(url, [ip], allowed) == (ip,)
    # the mapped form reaches the IPv4 address, which is allowed, and is connected to as it
    mapped = ipaddress.ip_address("::ffff:127.0.0.1")
    assert permitted_addresses(url, [mapped], allowed) == (ipaddress.ip_address("127.0.0.1"),)
    # outside them, the rest of the same ranges stays refused
    for address in ("10.0.0.1", "fc00::1", "169.254.1.1", "::127.0.0.1"):
        with pytest.raises(AddressRefused):
            permitted_addresses(url, [ipaddress.ip_address(address)], allowed)


def test_plain_http_only_when_every_address_is_inside_the_allowed_networks() -> None:
    allowed = parse_networks(["127.0.0.0/8"])
    http = parse_url("http://receiver.internal:8080/hook")
    loopback, public = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("8.8.8.8")
    assert permitted_addresses(http, [loopback], allowed) == (loopback,)
    with pytest.raises(WebhookUrlRefused, match=r"plain http to 8\.8\.8\.8 is refused"):
        permitted_addresses(http, [public], allowed)
    with pytest.raises(WebhookUrlRefused, match="plain http"):
        permitted_addresses(http, [loopback, public], allowed)
    https = parse_url("https://example.com/")
    assert permitted_addresses(https, [public], NO_NETWORKS) == (public,)


def test_allowed_networks_are_strict_cidrs() -> None:
    assert parse_networks(["10.0.0.0/8", " fd00::/8 ", "", "192.0.2.7"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.0.2.7/32"),
    )
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        parse_networks(["10.0.0.1/8"])
    with pytest.raises(ValueError, match="not-a-cidr"):
        parse_networks(["not-a-cidr"])


# -- the property: a refused IPv4 address is refused in every notation ------------------

REFUSED_V4_NETWORKS = [row.network for row in REFUSED_IPV4]


@st.composite
def refused_ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    network = draw(st.sampled_from(REFUSED_V4_NETWORKS))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return ipaddress.IPv4Address(int(network.network_address) + offset)


def notations(address: ipaddress.IPv4Address) -> list[str]:
    n = int(address)
    a, b, c, d = address.packed
    return [
        str(address),
        str(n),
        hex(n),
        "0" + oct(n)[2:],
        f"{a}.{b}.{c}.{d}.",
        ".".join("0" + oct(x)[2:] for x in (a, b, c, d)),
        ".".join(hex(x) for x in (a, b, c, d)),
        f"{a}.{n & 0xFFFFFF}",
        f"{hex(a)}.{oct(b).replace('0o', '0')}.{n & 0xFFFF}",
        f"[::ffff:{address}]",
        f"[::ffff:{n >> 16:x}:{n & 0xFFFF:x}]",
        f"[::{address}]",
        f"[64:ff9b::{address}]",
        f"[2002:{n >> 16:x}:{n & 0xFFFF:x}::1]",
    ]


@given(refused_ipv4())
def test_a_refused_ipv4_address_is_refused_in_every_notation(
    address: ipaddress.IPv4Address,
) -> None:
    for host in notations(address):
        url = parse_url(f"https://{host}/hook")
        assert url.literal is not None, host
        with pytest.raises(AddressRefused):
            permitted_addresses(url, [url.literal], NO_NETWORKS)


@given(st.integers(0, 2**32 - 1))
def test_every_ipv4_notation_reads_as_the_same_address(number: int) -> None:
    address = ipaddress.IPv4Address(number)
    for host in notations(address)[:9]:
        assert parse_url(f"https://{host}/").literal == address, host


def test_a_zone_id_is_refused_even_inside_an_allowed_network() -> None:
    allowed = parse_networks(["fe80::/10"])
    check_address(ipaddress.ip_address("fe80::1"), allowed)
    with pytest.raises(AddressRefused, match="zone id"):
        check_address(ipaddress.ip_address("fe80::1%eth0"), allowed)


@pytest.mark.parametrize(
    ("table", "address"), [("REFUSED_IPV4", "10.0.0.1"), ("REFUSED_IPV6", "2001:db8::1")]
)
def test_what_the_table_misses_ipaddress_still_refuses_as_not_global(
    monkeypatch: pytest.MonkeyPatch, table: str, address: str
) -> None:
    monkeypatch.setattr(addresses, table, ())
    assert refusal(address).endswith("not globally reachable")


def test_the_allowed_networks_setting_reads_comma_separated_cidrs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, fd00::/8")
    assert load_settings(_env_file=None).webhook_allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    monkeypatch.setenv("METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS", "")
    assert load_settings(_env_file=None).webhook_allowed_networks == ()
    monkeypatch.delenv("METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS")
    assert load_settings(_env_file=None).webhook_allowed_networks == ()


@pytest.mark.parametrize("value", ["10.0.0.1/8", "10.0.0.0/33", "intranet", "10.0.0.0/8;fd00::/8"])
def test_a_bad_allowed_network_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS", value)
    with pytest.raises(SettingsError, match=r"METERBRIDGE_WEBHOOK_ALLOWED_NETWORKS:.*not a CIDR"):
        load_settings(_env_file=None)

"""The http executor's outbound policy, judged offline: no address here is connected to."""

from __future__ import annotations

import pytest

from schedd.executors.netpolicy import OutboundPolicy, check_allow_entry, parse_address

DEFAULT = OutboundPolicy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.100.100.200", "shared (CGNAT)"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd00:ec2::254", "unique-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        # IPv4-mapped: judged as the IPv4 address it is.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        # IPv4-compatible, NAT64, 6to4 and Teredo forms are refused as ranges.
        ("::169.254.169.254", "IPv4-compatible"),
        ("::8.8.8.8", "IPv4-compatible"),
        ("64:ff9b::169.254.169.254", "NAT64"),
        ("64:ff9b::8.8.8.8", "NAT64"),
        ("64:ff9b:1::a9fe:a9fe", "NAT64"),
        ("2002:a9fe:a9fe::1", "6to4"),
        ("2002:0808:0808::1", "6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
def test_refused_by_default(address: str, kind: str) -> None:
    refusal = DEFAULT.judge(parse_address(address))
    assert refusal is not None
    assert refusal.kind == kind


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "2606:4700::1111"],
)
def test_public_addresses_are_allowed_by_default(address: str) -> None:
    assert DEFAULT.judge(parse_address(address)) is None


@pytest.mark.parametrize(
    ("allow", "address"),
    [
        (["127.0.0.2/32"], "127.0.0.2"),
        (["127.0.0.2"], "127.0.0.2"),
        (["10.0.0.0/8"], "10.200.0.1"),
        (["10.0.0.0/8"], "::ffff:10.200.0.1"),
        (["fd00::/8"], "fd00:ec2::254"),
        (["64:ff9b::/96"], "64:ff9b::8.8.8.8"),
        (["2002::/16"], "2002:0808:0808::1"),
        (["64:ff9b::/96", "169.254.169.254/32"], "64:ff9b::169.254.169.254"),
    ],
)
def test_http_allow_opens_what_it_names(allow: list[str], address: str) -> None:
    assert OutboundPolicy(allow).judge(parse_address(address)) is None


@pytest.mark.parametrize(
    ("allow", "address", "via"),
    [
        (["64:ff9b::/96"], "64:ff9b::169.254.169.254", "link-local 169.254.169.254"),
        (["64:ff9b:1::/48"], "64:ff9b:1:a9fe:a9:fe00::", "link-local 169.254.169.254"),
        (["2002::/16"], "2002:7f00:1::1", "loopback 127.0.0.1"),
        (["::/96"], "::10.0.0.1", "private 10.0.0.1"),
        # Teredo stores its client address inverted: ~0x80ff:fffe is 127.0.0.1.
        (["2001::/32"], "2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback 127.0.0.1"),
        (["2001::/32"], "2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2", "link-local 169.254.169.254"),
    ],
)
def test_an_opened_ipv6_form_is_still_judged_on_the_ipv4_it_carries(
    allow: list[str], address: str, via: str
) -> None:
    refusal = OutboundPolicy(allow).judge(parse_address(address))
    assert refusal is not None
    assert refusal.via == via


def test_opening_one_address_leaves_its_neighbours_refused() -> None:
    policy = OutboundPolicy(["127.0.0.2/32"])
    assert policy.judge(parse_address("127.0.0.2")) is None
    assert policy.judge(parse_address("127.0.0.1")) is not None


def test_choose_takes_the_first_allowed_address_and_names_the_first_refused() -> None:
    assert DEFAULT.choose("example", ["10.0.0.1", "8.8.8.8"]) == "8.8.8.8"
    with pytest.raises(PermissionError) as caught:
        DEFAULT.choose("example", ["10.0.0.1", "127.0.0.1"])
    message = str(caught.value)
    assert "private address 10.0.0.1" in message
    assert "worker.http_allow" in message


def test_an_allowed_host_name_opens_every_address_it_resolves_to() -> None:
    policy = OutboundPolicy(["Internal.Example.com"])
    assert policy.choose("internal.example.com.", ["10.0.0.1"]) == "10.0.0.1"
    with pytest.raises(PermissionError):
        policy.choose("other.example.com", ["10.0.0.1"])


@pytest.mark.parametrize("entry", ["10.0.0.0/8", "fd00::/8", "127.0.0.2", "host.example", "db-1"])
def test_allow_entries_may_be_networks_or_host_names(entry: str) -> None:
    assert check_allow_entry(entry) == entry


@pytest.mark.parametrize("entry", ["", "10.0.0.0/33", "not a host", "http://x/", "a..b"])
def test_bad_allow_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        check_allow_entry(entry)

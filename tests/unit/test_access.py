"""Unit tests for the kernel's allow/deny lists."""

from __future__ import annotations

import ipaddress
import re

import pytest

from ipython_parallel_kernel.kernel.access import AccessList, parse_network


def test_defaults_allow_only_localhost() -> None:
    """A fresh list allows 127.0.0.1 and ::1 and nothing else."""
    access = AccessList()
    assert access.allowed("127.0.0.1") and access.allowed("::1")
    assert not access.allowed("10.0.0.7")
    assert not access.allowed("127.0.0.2")
    assert not access.allowed("192.168.1.1")
    assert not access.allowed("fe80::1")


def test_cidr_allow() -> None:
    """Allowing a network admits every address inside it and none outside."""
    access = AccessList()
    access.allow("10.0.0.0/8")
    assert access.allowed("10.0.0.7") and access.allowed("10.255.255.254")
    assert not access.allowed("11.0.0.1")


def test_constructor_lists() -> None:
    """allow= and deny= given at construction behave like allow() and deny()."""
    access = AccessList(allow=["192.168.0.0/16"], deny=["192.168.1.0/24"])
    assert access.allowed("192.168.2.3")
    assert not access.allowed("192.168.1.3")


def test_deny_wins_over_allow() -> None:
    """A denied address inside an allowed network is refused."""
    access = AccessList()
    access.allow("10.0.0.0/8")
    access.deny("10.0.0.7")
    assert access.allowed("10.0.0.8")
    assert not access.allowed("10.0.0.7")


def test_deny_localhost() -> None:
    """Even the default localhost entry can be denied."""
    access = AccessList()
    access.deny("127.0.0.1")
    assert not access.allowed("127.0.0.1")
    assert access.allowed("::1")


def test_allow_lifts_exactly_that_deny() -> None:
    """allow(spec) removes the identical deny entry, but not a covering one."""
    access = AccessList()
    access.deny("10.0.0.7")
    access.allow("10.0.0.7")
    assert access.allowed("10.0.0.7")
    access.deny("10.0.0.0/8")
    access.allow("10.0.0.9")
    assert not access.allowed("10.0.0.9")


def test_ipv4_mapped_ipv6_follows_the_ipv4_rules() -> None:
    """An IPv4-mapped IPv6 peer (dual-stack socket) is judged by its IPv4 address."""
    access = AccessList()
    assert access.allowed("::ffff:127.0.0.1")
    assert not access.allowed("::ffff:10.0.0.7")
    access.allow("10.0.0.0/8")
    access.deny("10.0.0.7")
    assert access.allowed("::ffff:10.0.0.8")
    assert not access.allowed("::ffff:10.0.0.7")


def test_ipv6_network_and_scope_id() -> None:
    """IPv6 networks work, and a scope id (%eth0) is ignored when matching."""
    access = AccessList()
    access.allow("fe80::/10")
    assert access.allowed("fe80::1%eth0")
    assert not access.allowed("2001:db8::1")


def test_unparsable_host_is_refused() -> None:
    """A peer host that is not an IP address is never allowed."""
    access = AccessList(allow=["0.0.0.0/0"])
    assert not access.allowed("localhost")
    assert not access.allowed("")


@pytest.mark.parametrize("spec", ["10.0.0", "not-an-ip", "10.0.0.0/33", "", "::1/129"])
def test_bad_spec_error_shows_an_example(spec: str) -> None:
    """A bad spec raises ValueError whose message quotes it and gives valid examples."""
    with pytest.raises(ValueError, match=re.escape("examples: 10.0.0.7, 10.0.0.0/8")) as info:
        parse_network(spec)
    assert repr(spec) in str(info.value)


def test_bad_spec_in_allow_and_deny() -> None:
    """allow() and deny() refuse bad specs and leave the lists unchanged."""
    access = AccessList()
    before = access.describe()
    for method in (access.allow, access.deny):
        with pytest.raises(ValueError, match="example"):
            method("10.0.0.300")
    assert access.describe() == before


def test_parse_network_forms() -> None:
    """Single addresses, CIDR (host bits ignored) and whitespace all parse."""
    assert parse_network("10.0.0.7") == ipaddress.ip_network("10.0.0.7/32")
    assert parse_network(" 10.1.2.3/8 ") == ipaddress.ip_network("10.0.0.0/8")
    assert parse_network("::1") == ipaddress.ip_network("::1/128")


def test_describe_lists_entries() -> None:
    """describe() reports both lists as text, localhost first."""
    access = AccessList(allow=["10.0.0.0/8"], deny=["10.0.0.7"])
    assert access.describe() == {
        "allow": ["127.0.0.1/32", "::1/128", "10.0.0.0/8"],
        "deny": ["10.0.0.7/32"],
    }

"""The egress policy's rules: which addresses are refused, which hosts are checked before
any lookup, and how a name's answers are judged."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from models.net.egress import DestinationForbidden, EgressPolicy, address_allowed


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # link-local: AWS, GCP and Azure metadata
        "100.64.0.1",  # CGNAT
        "100.100.100.200",  # Alibaba Cloud metadata, inside CGNAT
        "0.0.0.0",
        "198.18.0.1",
        "192.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:a00:1::1",  # Teredo
        "ff02::1",
        "::127.0.0.1",  # IPv4-compatible
        "::a9fe:a9fe",
        "::ffff:0:7f00:1",  # SIIT
        "fec0::1",  # site-local
        "not-an-address",
    ],
)
def test_addresses_that_are_not_global_are_refused(address: str) -> None:
    assert address_allowed(address) is False


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address) is True


@pytest.mark.parametrize("host", ["127.1", "2130706433", "10.0.0.1", "[::1]", "::ffff:7f00:1"])
def test_hosts_that_look_like_addresses_are_checked_before_any_lookup(host: str) -> None:
    # aiohttp connects to anything made of digits and dots without asking a resolver
    with pytest.raises(DestinationForbidden):
        EgressPolicy().check_host(host)


def test_names_and_public_literals_pass_the_host_check() -> None:
    EgressPolicy().check_host("api.example.com")
    EgressPolicy().check_host("93.184.216.34")
    EgressPolicy(allow_private=True).check_host("127.0.0.1")
    EgressPolicy(trusted_hosts=frozenset({"127.0.0.1"})).check_host("127.0.0.1")


def _info(address: str) -> Any:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockaddr = (address, 443, 0, 0) if family == socket.AF_INET6 else (address, 443)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


def test_one_private_answer_among_public_ones_refuses_the_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A rebinding name answers a public and a private address: the client might pick either
    with pytest.raises(DestinationForbidden) as refused:
        EgressPolicy().checked("rebind.example", [_info("93.184.216.34"), _info("10.0.0.7")])
    # (the refusal, which the tenant sees, names the host; only the operator's log has the
    # address, which would map passthru's own network)
    assert "rebind.example resolves to an address that is not public" in str(refused.value)
    assert "10.0.0.7" not in str(refused.value)
    assert "rebind.example resolves to 10.0.0.7" in caplog.text
    with pytest.raises(DestinationForbidden):
        EgressPolicy().checked("empty.example", [])
    assert EgressPolicy().checked("ok.example", [_info("93.184.216.34")]) == [
        (socket.AF_INET, "93.184.216.34", 0)
    ]


def test_localhost_names_are_refused_without_a_lookup() -> None:
    for host in ("localhost", "api.localhost", "LOCALHOST"):
        with pytest.raises(DestinationForbidden):
            EgressPolicy().check_host(host)
    EgressPolicy(allow_private=True).check_host("localhost")

"""The egress policy as pure rules: which addresses passthru may connect to, for onward
calls, token refreshes and webhooks alike.

An address passes when it is global (`ipaddress`'s is_global) and outside every range that
reaches a private one: private, loopback, link-local, CGNAT (100.64.0.0/10, where cloud
metadata services live), unspecified, multicast, reserved, IPv4-mapped, 6to4, NAT64,
Teredo. A name passes when every address it resolves to does: one private answer among
public ones is a rebinding attempt. The worker applies these rules inside its connections
(worker/net/egress.py), resolving each name once; the API applies `check_host` to webhook URLs
when they are given, so an address literal is refused with a clear 400 at once.

`allow_private` lifts the rule (development and tests); `trusted_hosts` exempts the
operator's upstream override targets (PASSTHRU_UPSTREAM_OVERRIDES), for onward calls only.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.settings import Settings

log = logging.getLogger("passthru.egress")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, address, scope id) of one resolved address
Resolved = tuple[int, str, int]

_REFUSED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


class DestinationForbidden(Exception):
    """The destination is, or resolves to, an address the policy refuses. Not an OSError on
    purpose: the HTTP libraries pass it through untouched instead of wrapping it as a
    connection error that would be retried."""


def address_allowed(address: str) -> bool:
    """True for a global unicast address outside every range that reaches a private one."""
    try:
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip not in _GLOBAL_UNICAST_V6:
            # Only 2000::/3 is global unicast: IPv4-compatible (::a.b.c.d), SIIT
            # (::ffff:0:a.b.c.d), site-local and every other form are refused.
            return False
    if not ip.is_global or ip.is_multicast:
        return False
    return not any(ip.version == net.version and ip in net for net in _REFUSED)


def _looks_like_address(host: str) -> bool:
    """What aiohttp takes for an address without resolving it: digits and dots, or a colon."""
    return ":" in host or host.replace(".", "").isdigit()


@dataclass(frozen=True)
class EgressPolicy:
    allow_private: bool = False
    # The operator's override targets: exempt, since the operator chose them.
    trusted_hosts: frozenset[str] = frozenset()
    # The setting that lifts the rule, named in refusals.
    setting: str = "PASSTHRU_ALLOW_PRIVATE_NETWORKS"

    def exempt(self, host: str) -> bool:
        return self.allow_private or host.lower().strip("[]") in self.trusted_hosts

    def refusal(self, host: str, address: str) -> DestinationForbidden:
        """The refusal of `host` at `address`. The address a name resolves to is logged for
        the operator, never put in the refusal: it is stored and shown to the tenant, who
        could otherwise map passthru's own network by naming its hosts."""
        if host == address:
            shown = f"{host} is not a public address"
        else:
            log.warning("%s resolves to %s, not a public address: refused", host, address)
            shown = f"{host} resolves to an address that is not public"
        return DestinationForbidden(
            f"{shown} (private, loopback, link-local or reserved); "
            f"the operator's {self.setting}=true allows it"
        )

    def check_host(self, host: str) -> None:
        """Refuse a host that is, or looks to a connector like, a refused address, or a
        `localhost` name (RFC 6761: always loopback). Other names are checked when they
        are resolved, by the connection."""
        literal = host.strip("[]").lower()
        if self.exempt(literal):
            return
        if literal == "localhost" or literal.endswith(".localhost"):
            raise self.refusal(host, host)  # loopback by definition
        if not _looks_like_address(literal):
            return
        try:
            canonical = str(ipaddress.ip_address(literal.split("%", 1)[0]))
        except ValueError:
            raise DestinationForbidden(
                f"{host} is not a canonical IP address; write the address in full"
            ) from None
        if not address_allowed(canonical):
            raise self.refusal(host, canonical)

    def checked(self, host: str, infos: Iterable[Any]) -> list[Resolved]:
        """The addresses of `getaddrinfo` answers, or DestinationForbidden if any is refused
        (a name with one private answer among public ones is a rebinding attempt)."""
        found: list[Resolved] = []
        for family, _, _, _, sockaddr in infos:
            scope = int(sockaddr[3]) if family == socket.AF_INET6 and len(sockaddr) > 3 else 0
            found.append((int(family), str(sockaddr[0]), scope))
        if not found:
            raise DestinationForbidden(f"{host} resolves to no address")
        if not self.exempt(host):
            for _, address, _ in found:
                if not address_allowed(address):
                    raise self.refusal(host, address)
        return found


def trusted_hosts(override_targets: Sequence[str]) -> frozenset[str]:
    """The hosts of the operator's override target origins."""
    import httpx

    return frozenset(httpx.URL(origin).host.lower() for origin in override_targets)


def onward_policy(settings: Settings) -> EgressPolicy:
    """Onward calls and token endpoints: the operator's override targets are exempt."""
    return EgressPolicy(
        allow_private=settings.allow_private_networks,
        trusted_hosts=trusted_hosts(list(settings.upstream_overrides.values())),
    )

"""Addresses this host depends on, so a route the local clusters add never shadows one.

The real nodes make the load-balancer addresses answer with a host route into a node (the
profile's ``simulation.load_balancer_pool``). A pool that holds an address the host itself uses
would cut the host off it: on one machine of this kind every package registry resolves (in
/etc/hosts) to a TEST-NET-3 address, inside the pool Monaco's stand-in had, and `make clusters`
took apt, PyPI and the Go proxy away. So before routing a pool, look at what the host uses:
its interfaces' addresses, its gateways, its name servers and the addresses /etc/hosts names.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOSTS = Path("/etc/hosts")
RESOLV_CONF = Path("/etc/resolv.conf")


@dataclass(frozen=True)
class UsedAddress:
    address: ipaddress.IPv4Address
    why: str
    """Where the host uses it: "eth0's address", "gateway of ...", "/etc/hosts: pypi.org"."""


def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    return address if isinstance(address, ipaddress.IPv4Address) else None


def from_hosts_file(text: str, source: str = str(HOSTS)) -> list[UsedAddress]:
    used = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and (address := _ipv4(fields[0])) and not address.is_loopback:
            used.append(UsedAddress(address, f"{source}: {' '.join(fields[1:])}"))
    return used


def from_resolv_conf(text: str, source: str = str(RESOLV_CONF)) -> list[UsedAddress]:
    used = []
    for line in text.splitlines():
        fields = line.split()
        address = _ipv4(fields[1]) if len(fields) >= 2 and fields[0] == "nameserver" else None
        if address and not address.is_loopback:
            used.append(UsedAddress(address, f"{source}: name server"))
    return used


def from_ip_output(addresses: str, routes: str, ours: tuple[str, ...] = ("snveth",)) -> list[UsedAddress]:
    """``ip -4 -o addr`` and ``ip -4 route`` output: interface addresses and gateways, except on
    the project's own links (its veths, whose prefix is ``ours``)."""
    used = []
    for line in addresses.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet" and not fields[1].startswith(ours):
            address = _ipv4(fields[3].split("/")[0])
            if address and not address.is_loopback:
                used.append(UsedAddress(address, f"{fields[1]}'s address"))
    for line in routes.splitlines():
        fields = line.split()
        if "via" in fields and "dev" in fields and not fields[fields.index("dev") + 1].startswith(ours):
            gateway = _ipv4(fields[fields.index("via") + 1])
            if gateway:
                used.append(UsedAddress(gateway, f"gateway of the route `{line.strip()}`"))
    return used


def addresses_in_use() -> list[UsedAddress]:
    def ip(*args: str) -> str:
        return subprocess.run(["ip", "-4", *args], capture_output=True, text=True).stdout

    used = from_ip_output(ip("-o", "addr"), ip("route"))
    for path, parse in ((HOSTS, from_hosts_file), (RESOLV_CONF, from_resolv_conf)):
        with contextlib.suppress(OSError):
            used += parse(path.read_text())
    return used


def shadowed(network: ipaddress.IPv4Network, used: list[UsedAddress]) -> list[UsedAddress]:
    """The host's addresses a route for ``network`` would take away from it."""
    return [u for u in used if u.address in network]

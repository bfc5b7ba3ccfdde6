"""Who may connect to a kernel: an allow list and a deny list of addresses and networks.

>>> access = AccessList()
>>> access.allowed("127.0.0.1"), access.allowed("10.0.0.7")
(True, False)
>>> access.allow("10.0.0.0/8")
>>> access.deny("10.0.0.7")
>>> access.allowed("10.0.0.8"), access.allowed("10.0.0.7")
(True, False)
"""

from __future__ import annotations

import ipaddress
import threading

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOCALHOST = ("127.0.0.1", "::1")


def parse_network(spec: str) -> Network:
    """``"10.0.0.7"``, ``"10.0.0.0/8"`` or ``"::1"`` as a network; ValueError says why not."""
    try:
        return ipaddress.ip_network(spec.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{spec!r} is not an IP address or network (examples: 10.0.0.7, 10.0.0.0/8, ::1)"
        ) from None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


class AccessList:
    """Allowed and denied networks; deny wins. Thread-safe."""

    def __init__(self, allow: list[str] = (), deny: list[str] = ()) -> None:  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._allow = [parse_network(a) for a in (*LOCALHOST, *allow)]
        self._deny = [parse_network(d) for d in deny]

    def allow(self, spec: str) -> None:
        """Accept clients from ``spec`` (and stop denying exactly that network)."""
        network = parse_network(spec)
        with self._lock:
            if network not in self._allow:
                self._allow.append(network)
            if network in self._deny:
                self._deny.remove(network)

    def deny(self, spec: str) -> None:
        """Refuse clients from ``spec`` even where an allowed network covers them."""
        network = parse_network(spec)
        with self._lock:
            if network not in self._deny:
                self._deny.append(network)

    def allowed(self, host: str) -> bool:
        """True if a client at ``host`` may connect."""
        try:
            address = _address(host)
        except ValueError:
            return False
        with self._lock:
            if any(address in net for net in self._deny if net.version == address.version):
                return False
            return any(address in net for net in self._allow if net.version == address.version)

    def describe(self) -> dict[str, list[str]]:
        """The lists as text, for status reports."""
        with self._lock:
            return {"allow": [str(n) for n in self._allow], "deny": [str(n) for n in self._deny]}

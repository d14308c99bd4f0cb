"""The address guard of the web fetcher: which URLs a model-chosen browse may reach.

The browse tool fetches URLs a model picked, so by default it refuses anything but public
internet hosts over http(s): loopback, private, link-local, carrier-grade NAT, multicast,
unspecified, reserved and cloud-metadata addresses are blocked. The check runs on the addresses a
host name *resolves to* (a name pointing at 127.0.0.1 is loopback), and the fetcher connects to the
address that was checked, so a second DNS answer cannot swap in another one (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from deepresearcher.errors import FetchBlocked, FetchNetworkError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
# Instance-metadata endpoints hand out cloud credentials: blocked even when private addresses are
# allowed, unless a network listed in ``allow_networks`` names them explicitly.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ALLOW_HINT = (
    "the browse tool only reaches public http(s) hosts; to allow others, use the allow-list "
    "(--allow-host / --allow-network / --allow-private, or allow_hosts / allow_networks / "
    "allow_private in settings)"
)


@dataclass(frozen=True)
class Target:
    """A URL that passed the static checks: where to connect, before DNS."""

    url: str
    scheme: str
    host: str  # lower-case, without brackets
    port: int


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address, or ``None`` when it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return blocked_reason(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved (non-public) address"
    return None


@dataclass(frozen=True)
class AddressGuard:
    """Decides which URLs and addresses the fetcher may reach.

    Args:
        allow_private: also allow loopback, private, link-local and other non-public addresses
            (never the cloud-metadata ones, unless listed in ``allow_networks``).
        allow_hosts: host names (or literal addresses) allowed whatever they resolve to, except
            cloud-metadata addresses.
        allow_networks: CIDR blocks whose addresses are allowed (``"127.0.0.0/8"``, ``"::1/128"``).
    """

    allow_private: bool = False
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        allow_private: bool = False,
        allow_hosts: Iterable[str] = (),
        allow_networks: Iterable[str] = (),
    ) -> AddressGuard:
        """A guard from plain settings (CIDR strings are parsed here; a bad one is a ValueError)."""
        return cls(
            allow_private=allow_private,
            allow_hosts=frozenset(h.strip().lower().strip("[]") for h in allow_hosts if h.strip()),
            allow_networks=tuple(ipaddress.ip_network(n.strip(), strict=False)
                                 for n in allow_networks if n.strip()),
        )

    def check_url(self, url: str) -> Target:
        """The URL's scheme, host and port, or ``FetchBlocked`` for a scheme other
        than http(s) or a URL without a host. Literal IP hosts are checked here too."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise FetchBlocked(f"blocked URL {url!r}: {exc}", url=url) from exc
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise FetchBlocked(
                f"blocked URL {url!r}: scheme {scheme or '(none)'!r} is not http or https",
                url=url, hint=_ALLOW_HINT,
            )
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise FetchBlocked(f"blocked URL {url!r}: no host", url=url)
        target = Target(url=url, scheme=scheme, host=host,
                        port=port or (443 if scheme == "https" else 80))
        literal = _literal_ip(host)
        if literal is not None:
            self.check_address(target, literal)
        return target

    def check_address(self, target: Target, address: IPAddress) -> None:
        """Raise ``FetchBlocked`` unless ``target`` may connect to ``address``."""
        if any(address in net for net in self.allow_networks if net.version == address.version):
            return
        reason = blocked_reason(address)
        if reason is None:
            return
        if address in METADATA_ADDRESSES or (
            isinstance(address, ipaddress.IPv6Address)
            and address.ipv4_mapped in METADATA_ADDRESSES
        ):
            pass  # only an explicit network (above) lets these through
        elif target.host in self.allow_hosts or self.allow_private:
            return
        shown = target.host if target.host == str(address) else f"{target.host} ({address})"
        raise FetchBlocked(
            f"blocked URL {target.url!r}: {shown} is {reason}", url=target.url, hint=_ALLOW_HINT,
        )

    async def resolve(self, target: Target) -> IPAddress:
        """The address to connect to: the host's first resolved address, after checking *every*
        address it resolves to (one bad answer blocks the URL; a resolver may rotate them)."""
        literal = _literal_ip(target.host)
        if literal is not None:
            return literal  # already checked by check_url
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchNetworkError(
                f"cannot resolve {target.host!r}: {exc}", url=target.url,
                hint="check the host name and this machine's DNS",
            ) from exc
        addresses: list[IPAddress] = []
        for info in infos:
            # the scope suffix (fe80::1%eth0) is not part of the address
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise FetchNetworkError(f"{target.host!r} resolves to no address",
                                    url=target.url)
        for address in addresses:
            self.check_address(target, address)
        return addresses[0]


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None

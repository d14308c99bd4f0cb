"""The address guard: what a model-chosen URL may reach, checked after DNS resolution."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from deepresearcher.errors import FetchBlocked, FetchError, FetchNetworkError
from deepresearcher.tools.netguard import AddressGuard, blocked_reason


def _blocked(guard: AddressGuard, url: str) -> FetchError:
    async def go() -> None:
        target = guard.check_url(url)
        await guard.resolve(target)

    with pytest.raises(FetchError) as caught:
        asyncio.run(go())
    return caught.value


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/x", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://10.255.1.2/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.5/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.10.10/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://localhost/", "loopback"),  # a name, blocked for what it resolves to
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as a decimal number
    ],
)
def test_non_public_addresses_are_blocked_by_default(url: str, why: str) -> None:
    error = _blocked(AddressGuard(), url)
    assert isinstance(error, FetchBlocked)
    assert why in str(error)
    assert error.hint and "allow" in error.hint


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://a/",
                                 "javascript:alert(1)", "data:text/html,hi", "//no-scheme"])
def test_only_http_and_https_schemes(url: str) -> None:
    error = _blocked(AddressGuard(), url)
    assert isinstance(error, FetchBlocked)


def test_public_addresses_pass() -> None:
    guard = AddressGuard()
    target = guard.check_url("https://93.184.215.14/page")
    assert asyncio.run(guard.resolve(target)) == ipaddress.ip_address("93.184.215.14")
    assert target.port == 443
    assert blocked_reason(ipaddress.ip_address("2606:4700::1111")) is None


def test_allow_list_opts_in_explicitly() -> None:
    networks = AddressGuard.build(allow_networks=["127.0.0.0/8"])
    target = networks.check_url("http://localhost:9/")
    assert str(asyncio.run(networks.resolve(target))).startswith("127.")
    assert isinstance(_blocked(networks, "http://10.0.0.1/"), FetchBlocked)

    hosts = AddressGuard.build(allow_hosts=["127.0.0.1"])
    hosts.check_url("http://127.0.0.1:9/")
    # The allow-list names a host, not what other names resolve to.
    assert isinstance(_blocked(hosts, "http://localhost:9/"), FetchBlocked)

    private = AddressGuard(allow_private=True)
    private.check_url("http://10.1.2.3/")
    private.check_url("http://[::1]/")
    # Metadata endpoints stay blocked unless a network names them.
    assert "metadata" in str(_blocked(private, "http://169.254.169.254/"))
    explicit = AddressGuard.build(allow_networks=["169.254.169.254/32"])
    explicit.check_url("http://169.254.169.254/")


def test_unresolvable_host_is_a_network_error() -> None:
    error = _blocked(AddressGuard(), "http://no-such-host.invalid/")
    assert isinstance(error, FetchNetworkError)

"""Trusted networks: the proxies (`trusted_proxies`) believed when they say who the client is.

Apart from connections.py (uvicorn's protocols) so that checking the setting at start and the
trusted header's check import no HTTP server: an app started from a script serves nothing."""

from __future__ import annotations

import ipaddress

from .errors import ConfigError
from .i18n import _

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated `trusted_proxies` ("10.0.0.5, 10.1.0.0/16"); empty: none."""
    networks = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                _(
                    "%(setting)s: %(entry)s is not an IP address or network (host names are not resolved)",
                    setting="trusted_proxies",
                    entry=repr(entry),
                )
            ) from None
    return tuple(networks)


def is_trusted(host: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)

"""Users an authenticating proxy names (IIS with Windows authentication, nginx with auth_request):
the header `trusted_user_header` (e.g. X-Remote-User) is believed only on connections coming
straight from `trusted_proxies`; from any other address it is ignored.

    proxied = ProxyUsers(settings, accounts, directory)
    user = proxied.user(header_value, peer_address)    # None: not believed, or refused

A user is made at first sight (source 'proxy') with `trusted_user_role`; with a directory too, the
directory says whether the user exists and which groups (and role) they have, as at a login.

uvicorn's X-Forwarded-For handling replaces the connection's address by the client's; `KeepPeer`,
put in front of it, keeps the address the connection really came from (`peer_of`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..core.access import Role, parse_role
from ..errors import MierukaError, NotFoundError
from ..networks import is_trusted, trusted_networks
from ..settings import Settings
from .accounts import Accounts, User, check_name

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .directory import Directory

logger = logging.getLogger("mieruka.proxy_auth")

SOURCE = "proxy"
PEER_KEY = "mieruka.peer"
FRESH_FOR = 60.0  # seconds a user found is used without asking the database (or directory) again


class KeepPeer:
    """ASGI middleware: note the connection's own address before a proxy-headers middleware
    replaces it with X-Forwarded-For."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if client:
            scope[PEER_KEY] = client[0]
        await self.app(scope, receive, send)


def peer_of(scope: Scope) -> str:
    """The address of the connection itself (the proxy's, behind one)."""
    found = scope.get(PEER_KEY)
    if found is not None:
        return str(found)
    client = scope.get("client")
    return str(client[0]) if client else ""


def header_name(value: str, strip_domain: bool) -> str:
    """`DOMAIN\\ada` and `ada@EXAMPLE.ORG` as `ada` (when stripping), spaces trimmed."""
    name = value.strip()
    if strip_domain:
        name = name.rsplit("\\", 1)[-1].split("@", 1)[0]
    return name.strip()


class ProxyUsers:
    def __init__(self, settings: Settings, accounts: Accounts, directory: Directory | None = None) -> None:
        self.header = settings.trusted_user_header.strip().lower()
        self.strip_domain = settings.trusted_user_strip_domain
        self.trusted = trusted_networks(settings.trusted_proxies)
        self.role: Role = parse_role(settings.trusted_user_role)
        self.accounts = accounts
        self.directory = directory
        self.fresh_for = min(FRESH_FOR, directory.config.recheck) if directory is not None else FRESH_FOR
        self._fresh: dict[str, tuple[User, float]] = {}
        self._lock = threading.Lock()
        if self.header and not self.trusted:
            logger.warning(
                "trusted_user_header %s is set but trusted_proxies is empty: it is never believed", self.header
            )

    def believed(self, peer: str) -> bool:
        return bool(self.header) and is_trusted(peer, self.trusted)

    def user(self, value: str, peer: str, address: str = "") -> User | None:
        """The user the proxy names in `value`, when `peer` is a trusted proxy; else None."""
        if not self.believed(peer):
            return None
        name = header_name(value, self.strip_domain)
        try:
            check_name(name)
        except MierukaError:
            logger.warning("%s from %s names %r, which is no valid user name: ignored", self.header, peer, name[:100])
            return None
        now = time.monotonic()
        cached = self._fresh.get(name)
        if cached is not None and cached[1] > now:
            return cached[0]
        user = self._find(name, address)
        if user is not None:
            with self._lock:
                if len(self._fresh) > 10_000:
                    self._fresh.clear()
                self._fresh[name] = (user, now + self.fresh_for)
        return user

    def _find(self, name: str, address: str) -> User | None:
        try:
            known: User | None = self.accounts.get_user(name)
        except NotFoundError:
            known = None
        if known is not None and known.source != SOURCE:
            logger.warning("the proxy names %s, a %s user: refused (proxy users are their own)", name, known.source)
            return None
        if self.directory is not None:
            return self.directory.vouch(self.accounts, name, address, SOURCE, known)
        if known is not None:
            return known  # its role is what an admin made it
        user = self.accounts.sign_in_external(name, SOURCE, self.role, (), address=address)
        logger.info("%s first seen through the proxy: made a %s", name, user.role.value)
        return user

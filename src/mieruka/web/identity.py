"""Who is asking: `Authorization: Bearer <token>` (API clients), else the session cookie (browsers),
else anonymous. With no user configured, a request from this machine is the local admin (the open
single-user mode) and the server answers only to its own host names (DNS rebinding).

The security middleware identifies each request once and keeps the answer in the request's state;
routes read it with `principal(request)`, templates with `current_user()`.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jinja2 import pass_context
from starlette.requests import Request
from starlette.types import Scope

from ..auth.proxy_auth import peer_of
from ..core.access import Principal, Role
from .limits import Refused

if TYPE_CHECKING:
    from ..auth.proxy_auth import ProxyUsers
    from ..runtime import Runtime

SESSION_COOKIE = "mieruka_session"
STATE_KEY = "mieruka_principal"
HIDDEN_KEY = "mieruka_hidden_tasks"
LOCAL = Principal("local", Role.ADMIN, "local")
ADD_USER = "`mieruka users add NAME --role admin`"


class Denied(Refused):
    """Refused by the security rules: who is asking (401), may they (403), CSRF, host names."""


def principal(request: Request) -> Principal:
    """Who is making this request (set by the middleware for every route)."""
    found: Principal | None = getattr(request.state, STATE_KEY, None)
    if found is None:
        raise RuntimeError("the security middleware is not installed")
    return found


def hidden(request: Request) -> frozenset[str]:
    """The tasks whose jobs this request's user may not see (policy.hidden_tasks)."""
    found: frozenset[str] | None = getattr(request.state, HIDDEN_KEY, None)
    if found is None:
        raise RuntimeError("the security middleware is not installed")
    return found


def owner_name(request: Request) -> str | None:
    """The name jobs submitted by this request belong to (none in the open single-user mode)."""
    who = principal(request)
    return None if who.via == "local" else who.name


def address(request: Request) -> str:
    return request.client.host if request.client else ""


@pass_context
def current_user(context: Any) -> Principal | None:
    """`{{ current_user() }}`: the reader of the page, None when anonymous."""
    request = context.get("request")
    return getattr(request.state, STATE_KEY, None) if request is not None else None


class Identifier:
    """Identifies requests against the runtime's accounts. Whether there are users at all is asked
    at most once a second while there are none (once there are, they do not all go away)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._users_checked = 0.0
        self._has_users = False
        self.allowed_hosts = tuple(
            h.strip().lower().removeprefix("*") for h in runtime.settings.allowed_hosts.split(",") if h.strip()
        )

    def has_users(self) -> bool:
        now = time.monotonic()
        if not self._has_users and now - self._users_checked > 1.0:
            self._has_users = self.runtime.auth.accounts.has_users()
            self._users_checked = now
        return self._has_users

    def users_due(self) -> bool:
        """Whether has_users() would look in the database now (while there are none, once a second)."""
        return not self._has_users and time.monotonic() - self._users_checked > 1.0

    @functools.cached_property
    def proxied(self) -> ProxyUsers | None:
        """The users an authenticating proxy names (trusted_user_header), when configured."""
        if not self.runtime.settings.trusted_user_header.strip():
            return None
        from ..auth.proxy_auth import ProxyUsers

        auth = self.runtime.auth
        return ProxyUsers(self.runtime.settings, auth.accounts, auth.directory)

    def needs_db(self, request: Request) -> bool:
        """Whether identifying `request` asks the database (else it need not leave the event loop)."""
        return bool(
            request.headers.get("authorization")
            or request.cookies.get(SESSION_COOKIE)
            or self.users_due()
            or (self.proxied is not None and request.headers.get(self.proxied.header))
        )

    def identify(self, request: Request) -> Principal | None:
        """The user of the token or session, LOCAL in the open mode, None when anonymous; Denied (401)
        for a bad token, or for a stranger while there are no users."""
        header = request.headers.get("authorization", "")
        if header:
            return self._bearer(header)
        if self.proxied is not None:
            named = request.headers.get(self.proxied.header)
            if named and self.proxied.believed(peer_of(request.scope)):
                user = self.proxied.user(named, peer_of(request.scope), address(request))
                if user is None:
                    raise Denied(401, "not_authenticated", "the user the proxy names may not use this server")
                return user.principal("proxy")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            found = self.runtime.auth.accounts.session_user(cookie)
            if found is not None:
                found = self._recheck(found)
            if found is not None:
                return found
        if self.has_users():
            return None
        if not _local_connection(request.scope):
            raise Denied(
                401,
                "not_authenticated",
                f"this server has no users yet and trusts only requests from its own machine: add one with {ADD_USER}",
            )
        if request.headers.get("x-forwarded-for") or request.headers.get("forwarded"):
            raise Denied(
                401,
                "not_authenticated",
                f"this server has no users yet and a proxy forwards to it: add one with {ADD_USER}",
            )
        return LOCAL

    def _bearer(self, header: str) -> Principal:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Denied(401, "not_authenticated", "Authorization must be 'Bearer <token>'")
        user = self.runtime.auth.accounts.check_token(secret.strip())
        if user is None:
            raise Denied(401, "not_authenticated", "the token is unknown, revoked or expired")
        found = self._recheck(user.principal("token"))
        if found is None:
            raise Denied(401, "not_authenticated", "the token's user is no longer let in by the directory")
        return found

    def _recheck(self, who: Principal) -> Principal | None:
        """A directory user as the directory sees them now (asked again after ldap_recheck)."""
        directory = self.runtime.auth.directory
        return who if directory is None else directory.recheck(self.runtime.auth.accounts, who)

    def check_host(self, scope: Scope) -> None:
        """DNS rebinding: another site's name pointed at this machine reaches the server with its own
        Host; a server that trusts its machine (no users) answers only to its own names."""
        if self.allowed_hosts == ("*",) or (not self.allowed_hosts and self._has_users):
            return
        host = _host_of(scope)
        if host is None:
            return  # HTTP/1.0 without Host: no browser sends that
        names = self.allowed_hosts or self.own_names(scope)
        if not any(host == name or (name.startswith(".") and host.endswith(name)) for name in names):
            raise Denied(
                400,
                "bad_host",
                f"this server does not answer to the host name {host[:100]!r}: add it to the setting allowed_hosts",
            )

    def own_names(self, scope: Scope) -> tuple[str, ...]:
        server = scope.get("server") or ("", None)
        return ("localhost", "127.0.0.1", "::1", self.runtime.settings.host.lower(), str(server[0]).lower())


def _local_connection(scope: Scope) -> bool:
    """Both ends of the connection on this machine (not a Unix socket: a proxy may stand behind it)."""
    server, client = scope.get("server"), scope.get("client")
    return bool(server and client and is_loopback(str(server[0])) and is_loopback(str(client[0])))


def _host_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"host":
            text = bytes(value).decode("latin-1")
            try:
                return urlsplit("//" + text).hostname or ""
            except ValueError:
                return text.lower()
    return None


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

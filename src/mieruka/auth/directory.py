"""Directory login (LDAP, Active Directory) with ldap3: find the user with the service account,
bind as the user with the password given, read their groups (nested ones too) and map them to a
role; re-check a signed-in directory user now and then so that one removed or disabled there loses
their sessions and tokens within `ldap_recheck`.

    directory = Directory.from_settings(settings)       # None when ldap_url is empty
    found = directory.login("ada", "secret")            # Entry | None; DirectoryUnavailable when unreachable
    user = directory.sign_in(accounts, "ada", "secret", "10.0.0.5")   # the mieruka User | None

Passwords go to the directory only, over TLS (ldaps:// or StartTLS) unless `ldap_allow_plain` says
otherwise, and never into a log. User names enter filters escaped (escape_filter_chars).
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ldap3 import BASE, DSA, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from ..core.access import Principal, Role, parse_role
from ..core.clock import utcnow
from ..errors import ConfigError, DirectoryUnavailable, NotFoundError, ValidationError
from ..i18n import _
from ..settings import Settings
from .accounts import Accounts, User, check_name

logger = logging.getLogger("mieruka.directory")

SOURCE = "ldap"
PROXY = "proxy"  # the source of the users an authenticating proxy names (auth/proxy_auth.py)
IN_CHAIN = "1.2.840.113556.1.4.1941"  # AD's LDAP_MATCHING_RULE_IN_CHAIN: every group, however deep
AD_CAPABILITY = "1.2.840.113556.1.4.800"  # the root DSE of an Active Directory domain controller
ACCOUNT_DISABLE = 2  # userAccountControl bit
NESTED = ("auto", "in_chain", "walk", "off")
# StartTLS refused for now, worth one more try on a fresh connection: operationsError (slapd counts
# other operations on the connection; seen on a loaded machine right after connecting), busy.
STARTTLS_AGAIN = frozenset({1, 51})
STARTTLS_PAUSE = 0.1
USER_ATTRIBUTES = ("displayName", "cn", "userAccountControl", "pwdAccountLockedTime", "nsAccountLock")


@dataclass(frozen=True)
class Entry:
    """A directory user as found: `name` as the directory spells it, the names (cn) and DNs of
    every group they are in, directly or through other groups."""

    dn: str
    name: str
    display_name: str | None
    groups: frozenset[str]
    group_dns: frozenset[str]
    disabled: bool


@dataclass(frozen=True)
class DirectoryConfig:
    url: str
    urls: tuple[str, ...]  # tried in order: several domain controllers
    starttls: bool
    allow_plain: bool
    ca_file: str
    bind_dn: str
    bind_password: str
    user_base: str
    user_attribute: str
    user_filter: str
    group_base: str
    group_filter: str
    member_attribute: str
    nested: str
    nested_depth: int
    roles: Mapping[str, Role]  # lower-cased group DN or name -> role
    default_role: Role | None
    disabled_filter: str
    recheck: float
    grace: float
    timeout: float

    @classmethod
    def from_settings(cls, s: Settings) -> DirectoryConfig:
        urls = tuple(part.strip() for part in s.ldap_url.split(",") if part.strip())
        url = ", ".join(urls)
        for one in urls:
            scheme = one.split("://", 1)[0].lower()
            if scheme not in ("ldap", "ldaps"):
                raise ConfigError(
                    _("%(setting)s: %(url)s is not an ldap:// or ldaps:// URL", setting="ldap_url", url=repr(one))
                )
            try:
                Server(one)
            except (LDAPException, ValueError) as exc:
                raise ConfigError(f"ldap_url: {one!r}: {exc}") from None
            if scheme == "ldap" and not s.ldap_starttls and not s.ldap_allow_plain:
                raise ConfigError(
                    _(
                        "ldap_url %(url)s would send passwords unencrypted: use ldaps://, set ldap_starttls = true, "
                        "or (on a network you trust) ldap_allow_plain = true",
                        url=one,
                    )
                )
        if not s.ldap_user_base.strip():
            raise ConfigError(
                _(
                    "%(setting)s: the DN under which users are searched (e.g. %(example)s)",
                    setting="ldap_user_base",
                    example="ou=people,dc=example,dc=org",
                )
            )
        for name in ("ldap_timeout", "ldap_recheck"):
            if getattr(s, name) <= 0:
                raise ConfigError(
                    _("setting %(name)s must be positive, got %(value)s", name=name, value=getattr(s, name))
                )
        if s.ldap_grace < 0 or s.ldap_nested_depth < 1:
            raise ConfigError(
                _("%(grace)s must be >= 0 and %(depth)s >= 1", grace="ldap_grace", depth="ldap_nested_depth")
            )
        if s.ldap_nested not in NESTED:
            raise ConfigError(
                _(
                    "setting %(name)s must be one of %(choices)s, got %(value)s",
                    name="ldap_nested",
                    choices=", ".join(NESTED),
                    value=repr(s.ldap_nested),
                )
            )
        for name in ("ldap_user_filter", "ldap_group_filter", "ldap_disabled_filter"):
            text = str(getattr(s, name)).strip()
            if text and not (text.startswith("(") and text.endswith(")")):
                raise ConfigError(
                    _("%(setting)s: an LDAP filter in parentheses, got %(value)s", setting=name, value=repr(text))
                )
        return cls(
            url=url,
            urls=urls,
            starttls=s.ldap_starttls,
            allow_plain=s.ldap_allow_plain,
            ca_file=s.ldap_ca_file,
            bind_dn=s.ldap_bind_dn,
            bind_password=s.ldap_bind_password,
            user_base=s.ldap_user_base.strip(),
            user_attribute=s.ldap_user_attribute.strip() or "uid",
            user_filter=s.ldap_user_filter.strip(),
            group_base=s.ldap_group_base.strip() or s.ldap_user_base.strip(),
            group_filter=s.ldap_group_filter.strip(),
            member_attribute=s.ldap_member_attribute.strip() or "member",
            nested=s.ldap_nested,
            nested_depth=s.ldap_nested_depth,
            roles=parse_roles(s.ldap_roles),
            default_role=parse_role(s.ldap_default_role) if s.ldap_default_role.strip() else None,
            disabled_filter=s.ldap_disabled_filter.strip(),
            recheck=s.ldap_recheck,
            grace=s.ldap_grace,
            timeout=s.ldap_timeout,
        )


def parse_roles(text: str) -> dict[str, Role]:
    """`{"cn=lab-admins,ou=groups,dc=example,dc=org": "admin", "lab-ops": "operator"}` (JSON, or a
    TOML table): keys are group DNs or names, compared without regard to case."""
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise ConfigError(
            _(
                "%(setting)s: a JSON object of group -> role, got %(value)s",
                setting="ldap_roles",
                value=repr(text[:100]),
            )
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(_("%(setting)s: a JSON object of group -> role", setting="ldap_roles"))
    try:
        return {_key(str(group)): parse_role(str(role)) for group, role in raw.items()}
    except ValueError as exc:
        raise ConfigError(f"ldap_roles: {exc}") from None


def _key(group: str) -> str:
    """A group as mapping keys name it: a DN normalised (no spaces around separators), or a name."""
    text = group.strip()
    if "=" in text:
        try:
            return ",".join(f"{attr.strip()}={value.strip()}" for attr, value, _ in parse_dn(text)).lower()
        except LDAPException:
            pass
    return text.lower()


class Directory:
    VOUCHES_FOR = (SOURCE, PROXY)  # the users whose word is the directory's

    def __init__(self, config: DirectoryConfig) -> None:
        self.config = config
        self.tls = None
        if config.starttls or any(u.lower().startswith("ldaps://") for u in config.urls):
            self.tls = Tls(
                validate=ssl.CERT_REQUIRED, ca_certs_file=config.ca_file or None, version=ssl.PROTOCOL_TLS_CLIENT
            )
        self._in_chain: bool | None = {"in_chain": True, "walk": False, "off": False}.get(config.nested)
        self._fresh: dict[str, float] = {}  # user name -> monotonic time until which nothing is asked
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Directory | None:
        return cls(DirectoryConfig.from_settings(settings)) if settings.ldap_url.strip() else None

    # -- the directory ------------------------------------------------------------------------------
    def login(self, name: str, password: str) -> Entry | None:
        """The user when the directory knows them, they are not disabled and the password binds;
        else None. DirectoryUnavailable when it cannot be asked."""
        if not name or not password:
            return None  # an empty password is an anonymous bind, which "succeeds"
        with self._service() as conn:
            entry = self._find(conn, name)
            if entry is None:
                logger.info("directory login of %r refused: no such user", name[:100])
                return None
            if entry.disabled:
                logger.info("directory login of %r refused: the account is disabled", entry.name)
                return None
            # The same connection, bound again as the user: one TLS handshake per login, not two.
            if not conn.rebind(entry.dn, password, read_server_info=False):
                logger.info("directory login of %r refused: %s", entry.name, conn.result.get("description"))
                return None
        return entry

    def lookup(self, name: str) -> Entry | None:
        """The user named `name` as the service account sees them (None: no such user)."""
        with self._service() as conn:
            return self._find(conn, name)

    def _find(self, conn: Connection, name: str) -> Entry | None:
        c = self.config
        wanted = f"({c.user_attribute}={escape_filter_chars(name)})"
        query = f"(&{c.user_filter}{wanted})" if c.user_filter else wanted
        attributes = [c.user_attribute, *USER_ATTRIBUTES]
        if not conn.search(c.user_base, query, SUBTREE, attributes=attributes, size_limit=2):
            if conn.result.get("result") not in (0, 32):  # 32: no such object (the base)
                logger.warning("directory search for a user failed: %s", conn.result.get("description"))
            return None
        if len(conn.entries) != 1:
            logger.warning("directory search for %r found %d entries: refused", name[:100], len(conn.entries))
            return None
        found = conn.entries[0]
        attrs = found.entry_attributes_as_dict
        spelled = _first(attrs.get(c.user_attribute)) or name
        disabled = _disabled(attrs) or (bool(c.disabled_filter) and self._matches(conn, found.entry_dn))
        group_dns = self._groups(conn, found.entry_dn)
        return Entry(
            dn=found.entry_dn,
            name=str(spelled),
            display_name=_first(attrs.get("displayName")) or _first(attrs.get("cn")),
            groups=frozenset(_cn(dn) for dn in group_dns),
            group_dns=frozenset(group_dns),
            disabled=disabled,
        )

    def _matches(self, conn: Connection, dn: str) -> bool:
        conn.search(dn, self.config.disabled_filter, BASE, attributes=["1.1"])
        return bool(conn.entries)

    def _groups(self, conn: Connection, dn: str) -> set[str]:
        c = self.config
        if c.nested != "off" and self._uses_in_chain(conn):
            query = f"({c.member_attribute}:{IN_CHAIN}:={escape_filter_chars(dn)})"
            return self._group_search(conn, f"(&{c.group_filter}{query})" if c.group_filter else query)
        found: set[str] = set()
        frontier = [dn]
        for _level in range(c.nested_depth if c.nested != "off" else 1):
            members = "".join(f"({c.member_attribute}={escape_filter_chars(d)})" for d in frontier)
            query = f"(|{members})"
            new = self._group_search(conn, f"(&{c.group_filter}{query})" if c.group_filter else query) - found
            if not new:
                break
            found |= new
            frontier = sorted(new)
        return found

    def _group_search(self, conn: Connection, query: str) -> set[str]:
        entries = conn.extend.standard.paged_search(
            self.config.group_base, query, SUBTREE, attributes=["1.1"], paged_size=500, generator=True
        )
        return {e["dn"] for e in entries if e.get("type") == "searchResEntry"}

    def _uses_in_chain(self, conn: Connection) -> bool:
        if self._in_chain is None:
            info = conn.server.info
            capabilities = [str(v) for v in (info.other.get("supportedCapabilities") or [])] if info else []
            self._in_chain = AD_CAPABILITY in capabilities
        return self._in_chain

    def _connection(self, user: str | None, password: str | None) -> Connection:
        """An open connection (StartTLS done) to the first of ldap_url's servers that answers."""
        c = self.config
        failures = []
        for url in c.urls:
            starttls = c.starttls and not url.lower().startswith("ldaps://")
            conn: Connection | None = None
            try:
                conn = self._open(url, user, password, starttls)
                if starttls and not _start_tls(conn):
                    if (conn.result or {}).get("result") in STARTTLS_AGAIN:
                        _close(conn)
                        time.sleep(STARTTLS_PAUSE)
                        conn = self._open(url, user, password, starttls)
                        if _start_tls(conn):
                            return conn
                    raise DirectoryUnavailable(url, f"StartTLS failed: {(conn.result or {}).get('description')}")
                return conn
            except (LDAPException, DirectoryUnavailable) as exc:
                if conn is not None:
                    _close(conn)
                reason = exc.reason if isinstance(exc, DirectoryUnavailable) else f"{type(exc).__name__}: {exc}"
                failures.append(f"{url}: {reason}" if len(c.urls) > 1 else reason)
        error = DirectoryUnavailable(c.url, "; ".join(failures))
        error.add_note(f"why: {error.reason}")  # shown in tracebacks and logs, never on the login page
        raise error

    def _open(self, url: str, user: str | None, password: str | None, starttls: bool) -> Connection:
        """A connection with its socket open; with StartTLS to come, nothing sent yet (the root DSE
        is read after StartTLS, which must be the connection's first operation: slapd refuses it
        while it still counts an earlier one, as it may for a moment after answering it)."""
        c = self.config
        # A Server per connection: ldap3's Server remembers an address that failed and skips it
        # for a while, which would keep the directory "down" for seconds after it came back.
        info = DSA if self._in_chain is None else NONE  # the root DSE says whether it is AD: read once
        server = Server(url, tls=self.tls, get_info=info, connect_timeout=c.timeout)
        conn = Connection(
            server,
            user=user,
            password=password,
            receive_timeout=max(1, math.ceil(c.timeout)),  # ldap3 packs it as a whole number
            raise_exceptions=False,
            check_names=False,
            read_only=True,
            auto_referrals=False,
        )
        try:
            conn.open(read_server_info=not starttls)
        except LDAPException:
            _close(conn)
            raise
        return conn

    def _service(self) -> _Service:
        return _Service(self)

    def _down(self, exc: Exception) -> DirectoryUnavailable:
        return DirectoryUnavailable(self.config.url, f"{type(exc).__name__}: {exc}")

    # -- mieruka's users -----------------------------------------------------------------------------
    def role_of(self, entry: Entry) -> Role | None:
        """The highest role of the user's groups in ldap_roles (by DN or name), else ldap_default_role."""
        roles = self.config.roles
        found = [roles[k] for k in (*map(_key, entry.group_dns), *(g.lower() for g in entry.groups)) if k in roles]
        return max(found, key=lambda r: r.rank) if found else self.config.default_role

    def sign_in(self, accounts: Accounts, name: str, password: str, address: str) -> User | None:
        """Check the password with the directory and make or update the mieruka user (its role and
        groups as the directory says now). None: not known there, disabled, wrong password, or in
        no group that gives a role."""
        entry = self.login(name, password)
        return self._user(accounts, entry, address) if entry is not None else None

    def vouch(self, accounts: Accounts, name: str, address: str, source: str, known: User | None) -> User | None:
        """A user another party (an authenticating proxy) names, as the directory sees them: made or
        updated like at a login, asked again after ldap_recheck; not there or disabled: None (and
        the known user's sessions and tokens end). While the directory cannot be reached, a known
        user is kept for ldap_grace past ldap_recheck."""
        c = self.config
        age = (utcnow() - known.synced_at).total_seconds() if known and known.synced_at else float("inf")
        if known is not None and age < c.recheck:
            return known
        try:
            entry = self.lookup(name)
        except DirectoryUnavailable as down:
            if known is not None and age < c.recheck + c.grace:
                logger.warning("%s (%s): keeping %s for ldap_grace", down, down.reason, name)
                return known
            logger.warning("%s (%s): %s cannot be let in", down, down.reason, name)
            return None
        if entry is None or entry.disabled:
            logger.info("%s is %s in the directory: refused", name, "disabled" if entry else "not")
            if known is not None:
                accounts.cut_off(name)
            return None
        return self._user(accounts, entry, address, source)

    def _user(self, accounts: Accounts, entry: Entry, address: str, source: str = SOURCE) -> User | None:
        role = self.role_of(entry)
        if role is None:
            logger.info("directory login of %r refused: in no group of ldap_roles, no ldap_default_role", entry.name)
            return None
        try:
            check_name(entry.name)
        except ValidationError:
            logger.warning("directory user %r has a name mieruka cannot take", entry.name[:100])
            return None
        try:
            user = accounts.sign_in_external(
                entry.name, source, role, entry.groups, display_name=entry.display_name, address=address
            )
        except ValidationError as exc:  # the name is another source's user's
            logger.warning("directory user %s refused: %s", entry.name, exc)
            return None
        self._forget(user.name)
        return user

    def recheck(self, accounts: Accounts, who: Principal) -> Principal | None:
        """`who` (from a session or token) as the directory sees them now: unchanged while their
        last confirmation is younger than ldap_recheck; else asked again: gone, disabled or in no
        role's group, their sessions end and tokens are revoked (None); a directory that cannot be
        reached is waited out for ldap_grace after that (logged), then None too."""
        now = time.monotonic()
        if self._fresh.get(who.name, 0.0) > now:
            return who
        try:
            user = accounts.get_user(who.name)
        except NotFoundError:
            return None
        c = self.config
        if user.source != SOURCE:
            self._remember(user.name, now + c.recheck)
            return who
        age = (utcnow() - user.synced_at).total_seconds() if user.synced_at else float("inf")
        if age < c.recheck:
            self._remember(user.name, now + c.recheck - age)
            return user.principal(who.via, who.session_csrf)
        try:
            with self._service() as conn:
                entry = self._find(conn, user.name)
        except DirectoryUnavailable as down:
            if age < c.recheck + c.grace:
                if user.name not in self._warned:
                    self._warned.add(user.name)
                    until = utcnow() + timedelta(seconds=c.recheck + c.grace - age)
                    logger.warning(
                        "%s (%s): keeping %s signed in until %s UTC (ldap_grace)",
                        down,
                        down.reason,
                        user.name,
                        until.strftime("%Y-%m-%d %H:%M"),
                    )
                self._remember(user.name, now + min(60.0, c.recheck, c.recheck + c.grace - age))
                return user.principal(who.via, who.session_csrf)
            logger.warning("%s for longer than ldap_grace: %s is refused until it answers", down, user.name)
            return None
        self._warned.discard(user.name)
        renewed = self._user(accounts, entry, "") if entry is not None and not entry.disabled else None
        if renewed is None:
            ended = accounts.cut_off(user.name)
            accounts.audit.record(
                SOURCE,
                "user.cut_off",
                f"user:{user.name}",
                "",
                {
                    "reason": "disabled" if entry is not None and entry.disabled else "not in the directory or no role",
                    "sessions": ended,
                },
            )
            logger.warning(
                "directory user %s is gone, disabled or without a role: sessions and tokens ended", user.name
            )
            return None
        self._remember(renewed.name, now + c.recheck)
        return renewed.principal(who.via, who.session_csrf)

    def confirm(self, accounts: Accounts, user: User) -> Principal | None:
        """`user` as the directory lets them in now, for one who is not making a request (a
        subscription's owner): a directory user re-checked as at a request, a proxy user looked
        up again after ldap_recheck (the users of VOUCHES_FOR)."""
        if user.source == SOURCE:
            return self.recheck(accounts, user.principal("notify"))
        found = self.vouch(accounts, user.name, "", PROXY, user)
        return found.principal("notify") if found is not None else None

    def _remember(self, name: str, until: float) -> None:
        with self._lock:
            if len(self._fresh) > 10_000:
                self._fresh.clear()
            self._fresh[name] = until

    def _forget(self, name: str) -> None:
        with self._lock:
            self._fresh.pop(name, None)


class _Service:
    """A connection bound as the service account (ldap_bind_dn; anonymous when empty)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        d = self.directory
        c = d.config
        conn = d._connection(c.bind_dn or None, c.bind_password or None)
        try:
            if not conn.bind(read_server_info=False):  # read when the connection opened
                conn.unbind()
                raise DirectoryUnavailable(c.url, f"the service account was refused: {conn.result.get('description')}")
        except LDAPException as exc:
            raise d._down(exc) from None
        self.conn = conn
        return conn

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.unbind()
            except LDAPException:
                pass
        if exc and isinstance(exc[1], LDAPException):
            raise self.directory._down(exc[1]) from None


def _start_tls(conn: Connection) -> bool:
    """Whether StartTLS went through; if not, conn.result says why (ldap3 raises for some refusals
    and answers False for others)."""
    try:
        return bool(conn.start_tls())
    except LDAPStartTLSError:
        if (conn.result or {}).get("result", 0) == 0:
            raise  # the directory agreed; the handshake failed (a certificate, say): its own reason
        return False


def _close(conn: Connection) -> None:
    try:
        conn.unbind()
    except LDAPException:
        pass
    sock = getattr(conn, "socket", None)  # ldap3 leaves the socket of a connection that failed to open
    if sock is not None:
        sock.close()


def _first(values: Any) -> str | None:
    if isinstance(values, list | tuple):
        return str(values[0]) if values else None
    return str(values) if values not in (None, "") else None


def _disabled(attrs: Mapping[str, Any]) -> bool:
    """AD's userAccountControl ACCOUNTDISABLE bit, OpenLDAP ppolicy's pwdAccountLockedTime, 389's nsAccountLock."""
    control = _first(attrs.get("userAccountControl"))
    if control is not None and control.lstrip("-").isdigit() and int(control) & ACCOUNT_DISABLE:
        return True
    if _first(attrs.get("pwdAccountLockedTime")):
        return True
    return str(_first(attrs.get("nsAccountLock")) or "").lower() == "true"


def _cn(dn: str) -> str:
    """The name of a group: its first RDN's value (cn=lab-admins,ou=groups,... -> lab-admins)."""
    try:
        return str(parse_dn(dn)[0][1])
    except (LDAPException, IndexError):
        return dn
